//! Matrix-vector speed of the dispatched kernels, in GFLOP/s (median of 15 timings), for
//! comparing builds where criterion does not run: `wasm32-wasip1` under Node, plain and with
//! `+simd128` (see `.ci/arch-tests.sh`). Prints one line per shape and weight type.

use std::time::Instant;

#[path = "../tests/common/values.rs"]
mod values;

use picoformer::kernels;
use picoformer::q8_0::{quantize_q8_0, BlockQ8_0};
use picoformer::{f16, Tensor};
use values::values;

fn median_gflops(flops: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut reps = 1;
    loop {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        if t.elapsed().as_secs_f64() > 0.02 {
            break;
        }
        reps *= 2;
    }
    let mut g: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    g.sort_by(|a, b| a.partial_cmp(b).unwrap());
    g[7]
}

fn main() {
    println!("kernels: {:?}", kernels::active_isa());
    for (k, n) in [(128usize, 128usize), (512, 512), (512, 2048), (2048, 512)] {
        let w = values(1, n * k);
        let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let mut wq: Vec<BlockQ8_0> = vec![[0; 34]; n * k / 32];
        quantize_q8_0(&w, &mut wq).unwrap();
        let x = values(2, k);
        let mut y = vec![0.0f32; n];
        let flops = 2.0 * (n * k) as f64;
        let f32g = median_gflops(flops, || {
            kernels::matvec(Tensor::F32(&w), &x, &mut y).unwrap()
        });
        let f16g = median_gflops(flops, || {
            kernels::matvec(Tensor::F16(&w16), &x, &mut y).unwrap()
        });
        let q8g = median_gflops(flops, || {
            kernels::matvec(Tensor::Q8_0(&wq), &x, &mut y).unwrap()
        });
        println!("gemv 1,{k},{n}: f32 {f32g:.2} f16 {f16g:.2} q8_0 {q8g:.2} GFLOP/s");
    }
}
