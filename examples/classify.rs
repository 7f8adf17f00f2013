//! Classify a sequence with an encoder: a `ContinuousTransformerWrapper` around an `Encoder`
//! with `average_pool_embed` (49 frames of 10 features in, 12 class scores out), the starting
//! point of a keyword spotter or a sensor classifier. The model and the input are test fixtures
//! (`tests/fixtures/cont_enc_pool.*`, made by `tools/make_continuous_fixtures.py`); PyTorch's
//! scores for the same input are printed beside picoformer's.
//!
//!     cargo run --release --example classify

use picoformer::safetensors::SafeTensors;
use picoformer::{ContinuousModel, KvCache, Masks, Scratch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (words, len) = read_aligned("tests/fixtures/cont_enc_pool.model.safetensors")?;
    let file = &bytemuck::cast_slice::<u64, u8>(&words)[..len];
    let ContinuousModel::Encoder(model) = ContinuousModel::<16>::from_safetensors(file)? else {
        return Err("expected an encoder".into());
    };
    let (cfg, n) = (*model.config(), model.config().max_seq_len); // one window of n frames
    let d = cfg.attn_layers;
    // The window runs in one chunk: the cache and the arena hold n positions.
    let mut kv = vec![0.0f32; KvCache::<f32>::elements(&d, n)];
    let mut arena = vec![0.0f32; Scratch::elements(&d, n)];
    let mut cache = KvCache::new(&d, n, &mut kv)?;
    let mut scratch = Scratch::new(&d, n, &mut arena)?;

    // The fixture's second example (n frames, no padding) and PyTorch's scores for it.
    let (words, len) = read_aligned("tests/fixtures/cont_enc_pool.io.safetensors")?;
    let io = SafeTensors::parse(&bytemuck::cast_slice::<u64, u8>(&words)[..len])
        .map_err(|e| e.into_owned())?;
    let tensor = |name| -> Result<&[f32], Box<dyn std::error::Error>> {
        let t = io.tensor(name).ok_or("missing tensor")?;
        Ok(t.as_f32().map_err(|e| e.into_owned())?)
    };
    let (x, torch) = (
        &tensor("x")?[n * cfg.input_width()..],
        &tensor("full")?[cfg.output_width()..],
    );

    let mut scores = vec![0.0f32; cfg.output_width()];
    model.encode(&mut cache, &mut scratch, x, None, Masks::NONE, &mut scores)?;
    let class = (0..scores.len())
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap_or(0);
    println!("class {class}\npicoformer {scores:.4?}\nPyTorch    {torch:.4?}");
    Ok(())
}

/// A file's bytes in `u64`s (the tensors are viewed in place, so they must be aligned), and its
/// length. A firmware has them in flash: `include_bytes!` in an aligned `static`.
fn read_aligned(path: &str) -> std::io::Result<(Vec<u64>, usize)> {
    let bytes = std::fs::read(path)?;
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    Ok((words, bytes.len()))
}
