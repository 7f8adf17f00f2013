//! What the alignment of the weights and activations costs the f32 matrix-vector product.
//!
//! `cargo run --release --example align_probe [N]` (N×N, default 128) times `kernels::matvec`
//! (best of 50 runs of 1000 calls) with the weights and the activations at several float
//! offsets from a 64-byte cache line. Offset 0 is aligned; any other offset makes vector loads
//! span two lines unless the kernel aligns them (README, Performance, alignment).

use picoformer::kernels;
use picoformer::Tensor;
use std::time::Instant;

fn main() {
    let n = match std::env::args().nth(1).map(|s| s.parse::<usize>()) {
        None => 128,
        Some(Ok(n)) if (1..=8192).contains(&n) => n,
        _ => {
            eprintln!("usage: align_probe [N]   (1 <= N <= 8192)");
            std::process::exit(2);
        }
    };
    let wbuf = vec![0.5f32; n * n + 32];
    let xbuf = vec![0.25f32; n + 32];
    // The first element of each buffer on a cache line (a Vec<f32> is at least 4-aligned).
    let w0 = wbuf.as_ptr().align_offset(64).min(16);
    let x0 = xbuf.as_ptr().align_offset(64).min(16);
    let mut y = vec![0.0f32; n];
    println!("{n}x{n} f32 matrix-vector product, best of 50 x 1000 calls");
    for (wo, xo) in [(0, 0), (4, 0), (2, 0), (0, 4), (4, 4), (1, 1)] {
        let w = &wbuf[w0 + wo..w0 + wo + n * n];
        let x = &xbuf[x0 + xo..x0 + xo + n];
        let mut best = f64::MAX;
        for _ in 0..50 {
            let t = Instant::now();
            for _ in 0..1000 {
                let r = kernels::matvec(
                    Tensor::F32(std::hint::black_box(w)),
                    std::hint::black_box(x),
                    &mut y,
                );
                if let Err(e) = r {
                    eprintln!("align_probe: {e}");
                    std::process::exit(1);
                }
            }
            best = best.min(t.elapsed().as_secs_f64() * 1e6);
        }
        println!("weights at float offset {wo:2}, activations at {xo:2}: {best:8.0} ns");
    }
}
