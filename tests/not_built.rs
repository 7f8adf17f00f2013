//! A build without picoformer's Cargo feature `q8_0`, as a firmware whose model has no Q8_0
//! weights links it: `cargo test --release --no-default-features --features std --test
//! not_built` (`.ci/run` runs it; in a default build this file is empty). Q8_0 weights get
//! `Error::NotBuilt` naming the feature, from the loader (with the weight's name) and from every
//! kernel that would compute with them (writing nothing), and f32 models run as before.
#![cfg(not(feature = "q8_0"))]

mod common;
mod reference;
#[path = "common/safetensors_file.rs"]
mod safetensors_file;

use common::*;
use picoformer::kernels::{self, Int8Panels, Panels};
use picoformer::q8_0::{quantize_q8_0, BlockQ8_0};
use picoformer::safetensors::{Dtype, SafeTensors};
use picoformer::{
    Decoder, DecoderConfig, Error, KvCache, LoadError, Model, Scratch, Tensor, WeightName,
};
use safetensors_file::safetensors_bytes;

fn not_built(weight: Option<WeightName>) -> Error {
    Error::NotBuilt {
        feature: "q8_0",
        weight,
    }
}

/// The first matrix the decoder looks up: the first block's query projection.
fn first_matrix() -> WeightName {
    WeightName {
        prefix: "",
        sublayer: Some(0),
        suffix: "1.to_q.weight",
    }
}

#[test]
fn q8_0_tables_are_refused_and_f32_ones_run() {
    let cfg = DecoderConfig::new(32, 2).heads(2).attn_dim_head(16);
    let rcfg = ref_config(&cfg, None);
    let mut rw = reference::random_weights(&rcfg, 7);
    let table = Table::from_ref(&rcfg, &mut rw);
    let quantized = table.quantized();
    let refused: Result<Decoder<'_>, Error> = Decoder::from_source(cfg, &&quantized);
    let err = refused.unwrap_err();
    assert_eq!(err, not_built(Some(first_matrix())));
    let text = err.to_string();
    assert!(
        text.contains("layers.0.1.to_q.weight") && text.contains("feature `q8_0`"),
        "{text}"
    );

    // The same model in f32 runs, and agrees with the f64 reference.
    let dec: Decoder = Decoder::from_source(cfg, &&table).unwrap();
    let n = 3;
    let x = values(1, n * cfg.dim);
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&cfg, n)];
    let mut sb = vec![0.0f32; Scratch::elements(&cfg, n)];
    let mut cache = KvCache::new(&cfg, n, &mut kv).unwrap();
    let mut scratch = Scratch::new(&cfg, n, &mut sb).unwrap();
    let mut out = vec![f32::NAN; n * cfg.dim];
    dec.forward(&mut cache, &mut scratch, &x, None, &mut out)
        .unwrap();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let want = reference::decoder_forward(&rcfg, &rw, &x64, None);
    let e = max_diff_f64(&out, &want);
    assert!(e < 1e-4, "f32 pass vs the f64 reference: {e}");
}

#[test]
fn every_kernel_refuses_q8_0_and_writes_nothing() {
    let (rows, cols) = (4, 64);
    let w: Vec<f32> = values(3, rows * cols);
    let mut q: Vec<BlockQ8_0> = vec![[0u8; 34]; rows * cols / 32];
    quantize_q8_0(&w, &mut q).unwrap();
    let t = Tensor::Q8_0(&q);
    let x = values(4, 2 * cols);
    let mut y = vec![f32::NAN; 2 * rows];
    let untouched = |y: &[f32]| y.iter().all(|v| v.is_nan());
    let refused = |r: Result<(), Error>| assert_eq!(r, Err(not_built(None)));

    refused(kernels::matvec(t, &x[..cols], &mut y[..rows]));
    refused(kernels::matmul(t, cols, &x, &mut y));
    refused(kernels::matvec_q8_portable(&q, &x[..cols], &mut y[..rows]));
    refused(kernels::matvec_int8(&q, &x[..cols], &mut y[..rows]));
    refused(kernels::matmul_int8(&q, cols, &x, &mut y));
    assert!(untouched(&y));
    let mut row = vec![f32::NAN; cols];
    refused(kernels::load(&mut row, Tensor::Q8_0(&q[..2])));
    refused(kernels::add_scaled(&mut row, Tensor::Q8_0(&q[..2]), 0.5));
    assert!(untouched(&row));

    let mut arena = vec![f32::NAN; rows * cols + 64];
    assert_eq!(
        Panels::pack(t, cols, &mut arena).err(),
        Some(not_built(None))
    );
    let mut bytes = vec![0u8; 4 * rows * cols];
    assert_eq!(
        Int8Panels::pack(&q, cols, &mut bytes).err(),
        Some(not_built(None))
    );
}

/// A fixture's model file with its matrices (rows a multiple of 32 values) as Q8_0, written as
/// `picoformer quantize` writes them (U8 `[rows, cols / 32, 34]`), after the other tensors.
fn quantized_file(name: &str) -> (Vec<u64>, usize) {
    let file = std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let st = SafeTensors::parse(&file).unwrap();
    let mut plain: Vec<(String, String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut quant = Vec::new();
    for t in st.tensors() {
        let shape = t.shape().to_vec();
        if t.dtype() == Dtype::F32 && shape.len() == 2 && shape[1] % 32 == 0 {
            let mut b: Vec<BlockQ8_0> = vec![[0u8; 34]; shape[0] * shape[1] / 32];
            quantize_q8_0(t.as_f32().unwrap(), &mut b).unwrap();
            let s = vec![shape[0], shape[1] / 32, 34];
            quant.push((t.name().to_string(), "U8".to_string(), s, b.concat()));
        } else {
            let dtype = t.dtype().name().to_string();
            plain.push((t.name().to_string(), dtype, shape, t.data().to_vec()));
        }
    }
    assert!(!quant.is_empty());
    let meta: Vec<(String, String)> = st
        .metadata_entries()
        .map(|(k, v)| (k.raw().to_string(), v.raw().to_string()))
        .collect();
    let tensors: Vec<_> = plain.into_iter().chain(quant).collect();
    let out = safetensors_bytes(&meta, &tensors);
    let mut words = vec![0u64; out.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..out.len()].copy_from_slice(&out);
    (words, out.len())
}

#[test]
fn q8_0_model_files_are_refused_naming_the_feature() {
    for name in [
        "wrap_tied.model.safetensors",
        "cross_wrap.model.safetensors",
    ] {
        let (words, len) = quantized_file(name);
        let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..len];
        let model: Result<Model<'_>, LoadError<'_>> = Model::from_safetensors(bytes);
        match model {
            Err(LoadError::Model(
                e @ Error::NotBuilt {
                    feature: "q8_0",
                    weight: Some(_),
                },
            )) => {
                let text = LoadError::Model(e).to_string();
                assert!(text.contains("feature `q8_0`"), "{name}: {text}");
            }
            other => panic!("{name}: {:?}", other.map(|_| "a model")),
        }
    }
}
