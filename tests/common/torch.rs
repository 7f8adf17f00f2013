//! Shared by the tests against torch fixtures: files read into 8-byte-aligned memory (so the
//! loader can view tensors in place) and the fixture tolerance and distance.
#![allow(dead_code)] // each test file uses part of it

/// Largest |ours − torch| accepted on the fixtures (f32).
pub const TOLERANCE: f32 = 1e-5;

/// The bytes of `path` in 8-byte-aligned words, and their length.
pub fn aligned(path: &str) -> (Vec<u64>, usize) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    (words, bytes.len())
}

/// `tests/fixtures/NAME.KIND.safetensors`, aligned.
pub fn fixture(name: &str, kind: &str) -> (Vec<u64>, usize) {
    aligned(&format!(
        "{}/tests/fixtures/{name}.{kind}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    ))
}

/// Largest |a − b|, infinite where `a` is not finite.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x.is_finite() {
                (x - y).abs()
            } else {
                f32::INFINITY
            }
        })
        .fold(0.0, f32::max)
}
