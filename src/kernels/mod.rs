//! Kernel dispatch: the one place that picks an implementation for a call.
//!
//! Every function here is safe, takes slices, and chooses the body for the weight type (and,
//! later, the instruction set) once per call. The bodies live in [`portable`] (always
//! available, the reference) and in per-architecture files.

pub mod portable;

pub use portable::{gelu, relu_squared, rotary, silu, softmax};

use crate::tensor::{Element, Tensor};

/// `y = x·Wᵀ` for one position: `W` is `[y.len(), x.len()]` row-major.
///
/// # Panics
/// If `w.len() != y.len() * x.len()`.
pub fn matvec(w: Tensor<'_>, x: &[f32], y: &mut [f32]) {
    let cols = x.len();
    match w {
        Tensor::F32(w) => portable::matvec(w, cols, x, y),
        Tensor::F16(w) => portable::matvec(w, cols, x, y),
        Tensor::Bf16(w) => portable::matvec(w, cols, x, y),
    }
}

/// `Y = X·Wᵀ` for `n` positions: `X[n, cols]`, `W[rows, cols]`, `Y[n, rows]`, all row-major.
///
/// # Panics
/// If the lengths do not describe those shapes.
pub fn matmul(w: Tensor<'_>, cols: usize, x: &[f32], y: &mut [f32]) {
    if x.len() == cols {
        return matvec(w, x, y);
    }
    match w {
        Tensor::F32(w) => portable::matmul(w, cols, x, y),
        Tensor::F16(w) => portable::matmul(w, cols, x, y),
        Tensor::Bf16(w) => portable::matmul(w, cols, x, y),
    }
}

/// Adds a bias to every row of `y` (`[n, bias.len()]`).
///
/// # Panics
/// If `y.len()` is not a multiple of `bias.len()`.
pub fn add_bias(y: &mut [f32], bias: Tensor<'_>) {
    let n = bias.len();
    assert!(n > 0 && y.len() % n == 0);
    for row in y.chunks_exact_mut(n) {
        match bias {
            Tensor::F32(b) => row.iter_mut().zip(b).for_each(|(v, b)| *v += b),
            Tensor::F16(b) => row.iter_mut().zip(b).for_each(|(v, b)| *v += b.to_f32()),
            Tensor::Bf16(b) => row.iter_mut().zip(b).for_each(|(v, b)| *v += b.to_f32()),
        }
    }
}

/// LayerNorm of one row with gain `g + offset` (see [`portable::layer_norm`]).
pub fn layer_norm(x: &[f32], g: Option<Tensor<'_>>, offset: f32, out: &mut [f32]) {
    match g {
        None => portable::layer_norm::<f32>(x, None, offset, out),
        Some(Tensor::F32(g)) => portable::layer_norm(x, Some(g), offset, out),
        Some(Tensor::F16(g)) => portable::layer_norm(x, Some(g), offset, out),
        Some(Tensor::Bf16(g)) => portable::layer_norm(x, Some(g), offset, out),
    }
}

/// RMSNorm of one row with gain `g + offset`, or no gain (see [`portable::rms_norm`]).
pub fn rms_norm(x: &[f32], g: Option<Tensor<'_>>, offset: f32, out: &mut [f32]) {
    match g {
        None => portable::rms_norm::<f32>(x, None, offset, out),
        Some(Tensor::F32(g)) => portable::rms_norm(x, Some(g), offset, out),
        Some(Tensor::F16(g)) => portable::rms_norm(x, Some(g), offset, out),
        Some(Tensor::Bf16(g)) => portable::rms_norm(x, Some(g), offset, out),
    }
}

/// One query head over one cached kv head (see [`portable::attention`]).
pub fn attention<K: Element>(q: &[f32], keys: &[K], values: &[K], scale: f32, out: &mut [f32]) {
    portable::attention(q, keys, values, scale, out)
}

/// `y = t` for a row of weights (an embedding row), converted to `f32`.
///
/// # Panics
/// If the lengths differ.
pub fn load(y: &mut [f32], t: Tensor<'_>) {
    assert_eq!(y.len(), t.len());
    match t {
        Tensor::F32(s) => y.copy_from_slice(s),
        Tensor::F16(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y = s.to_f32()),
        Tensor::Bf16(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y = s.to_f32()),
    }
}

/// `y += a·t` for a row of weights.
///
/// # Panics
/// If the lengths differ.
pub fn add_scaled(y: &mut [f32], t: Tensor<'_>, a: f32) {
    assert_eq!(y.len(), t.len());
    match t {
        Tensor::F32(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y += a * s),
        Tensor::F16(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y += a * s.to_f32()),
        Tensor::Bf16(s) => y.iter_mut().zip(s).for_each(|(y, s)| *y += a * s.to_f32()),
    }
}

/// `y += x`, element-wise (the residual add).
///
/// # Panics
/// If the lengths differ.
pub fn add(y: &mut [f32], x: &[f32]) {
    assert_eq!(y.len(), x.len());
    y.iter_mut().zip(x).for_each(|(y, x)| *y += x);
}
