//! Borrowed weight views and the element types picoformer reads.
//!
//! Weights are never copied: a [`Tensor`] borrows the bytes where they live (flash, a
//! memory-mapped file, a `static`), in x-transformers' own layout (`nn.Linear` weights are
//! `[out, in]`, row-major).

use half::{bf16, f16};

use crate::error::{Dims, Error, WeightName};
use crate::q8_0::{self, q8_0_quants, q8_0_scale, BlockQ8_0, Q8_0_BLOCK};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// An element type that weights or the KV cache can be stored in: `f32`, `f16` or `bf16`.
pub trait Element:
    Copy + Default + PartialEq + core::fmt::Debug + Send + Sync + sealed::Sealed + 'static
{
    /// Converts to `f32` (exact for every type here).
    fn to_f32(self) -> f32;
    /// Rounds an `f32` to this type (round to nearest even).
    fn from_f32(x: f32) -> Self;
    /// A quiet NaN, for tests that poison buffers.
    const NAN: Self;
    /// The slice as a [`Tensor`] (how the kernels find the element type of a KV cache).
    #[doc(hidden)]
    fn as_tensor(s: &[Self]) -> Tensor<'_>;
}

impl Element for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        x
    }
    const NAN: Self = f32::NAN;
    #[inline(always)]
    fn as_tensor(s: &[Self]) -> Tensor<'_> {
        Tensor::F32(s)
    }
}

impl Element for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        // Cortex-M with an FPU: its half-precision conversion (the same value).
        #[cfg(picoformer_cortexm)]
        return crate::kernels::cortexm::f16_to_f32(self);
        #[allow(unreachable_code)]
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    const NAN: Self = f16::NAN;
    #[inline(always)]
    fn as_tensor(s: &[Self]) -> Tensor<'_> {
        Tensor::F16(s)
    }
}

impl Element for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    const NAN: Self = bf16::NAN;
    #[inline(always)]
    fn as_tensor(s: &[Self]) -> Tensor<'_> {
        Tensor::Bf16(s)
    }
}

/// A borrowed, typed run of weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tensor<'w> {
    /// 32-bit floats.
    F32(&'w [f32]),
    /// IEEE half floats.
    F16(&'w [f16]),
    /// bfloat16.
    Bf16(&'w [bf16]),
    /// Int8 block-quantised weights ([`BlockQ8_0`]: 32 values per block with one f16 scale).
    /// Lengths and offsets count values, always a multiple of [`Q8_0_BLOCK`].
    Q8_0(&'w [BlockQ8_0]),
}

impl<'w> Tensor<'w> {
    /// An empty tensor (a placeholder for absent weights).
    pub const EMPTY: Tensor<'static> = Tensor::F32(&[]);

    /// Number of elements.
    pub const fn len(&self) -> usize {
        match self {
            Tensor::F32(s) => s.len(),
            Tensor::F16(s) => s.len(),
            Tensor::Bf16(s) => s.len(),
            Tensor::Q8_0(s) => s.len() * Q8_0_BLOCK,
        }
    }

    /// Whether there are no elements.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as `f32`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<f32> {
        match self {
            Tensor::F32(s) => s.get(i).copied(),
            Tensor::F16(s) => s.get(i).map(|v| Element::to_f32(*v)),
            Tensor::Bf16(s) => s.get(i).map(|v| v.to_f32()),
            Tensor::Q8_0(s) => s
                .get(i / Q8_0_BLOCK)
                .map(|b| Element::to_f32(q8_0_scale(b)) * q8_0_quants(b)[i % Q8_0_BLOCK] as f32),
        }
    }

    /// Size of one element in bytes (Q8_0: 1, not counting the 2-byte scale of every 32
    /// values; [`Self::bytes`] is exact).
    pub const fn element_bytes(&self) -> usize {
        match self {
            Tensor::F32(_) => 4,
            Tensor::F16(_) | Tensor::Bf16(_) => 2,
            Tensor::Q8_0(_) => 1,
        }
    }

    /// Size of the whole tensor in bytes (Q8_0: 34 per 32 values).
    pub const fn bytes(&self) -> usize {
        match self {
            Tensor::Q8_0(s) => core::mem::size_of_val(*s),
            _ => self.len() * self.element_bytes(),
        }
    }

    /// The elements `start..start + len` (a sub-view, e.g. one embedding row). Callers check the
    /// range. Out of bounds, and for Q8_0 a `start` or `len` that is not a multiple of
    /// [`Q8_0_BLOCK`], give an empty view, which every kernel rejects as a shape error: no panic
    /// path (issue 28).
    pub(crate) fn slice(&self, start: usize, len: usize) -> Tensor<'w> {
        fn part<T>(s: &[T], start: usize, len: usize) -> &[T] {
            s.get(start..).and_then(|s| s.get(..len)).unwrap_or(&[])
        }
        match *self {
            Tensor::F32(s) => Tensor::F32(part(s, start, len)),
            Tensor::F16(s) => Tensor::F16(part(s, start, len)),
            Tensor::Bf16(s) => Tensor::Bf16(part(s, start, len)),
            Tensor::Q8_0(s) => Tensor::Q8_0(
                if start.is_multiple_of(Q8_0_BLOCK) && len.is_multiple_of(Q8_0_BLOCK) {
                    part(s, start / Q8_0_BLOCK, len / Q8_0_BLOCK)
                } else {
                    &[]
                },
            ),
        }
    }
}

impl<'w> From<&'w [f32]> for Tensor<'w> {
    fn from(s: &'w [f32]) -> Self {
        Tensor::F32(s)
    }
}
impl<'w> From<&'w [f16]> for Tensor<'w> {
    fn from(s: &'w [f16]) -> Self {
        Tensor::F16(s)
    }
}
impl<'w> From<&'w [BlockQ8_0]> for Tensor<'w> {
    fn from(s: &'w [BlockQ8_0]) -> Self {
        Tensor::Q8_0(s)
    }
}
impl<'w> From<&'w [bf16]> for Tensor<'w> {
    fn from(s: &'w [bf16]) -> Self {
        Tensor::Bf16(s)
    }
}

/// A tensor with its shape, as a [`TensorSource`] hands it out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorView<'w> {
    /// The elements, row-major.
    pub data: Tensor<'w>,
    /// The shape; only the first `ndim` entries are used.
    pub shape: [usize; 4],
    /// Number of dimensions (0 to 4).
    pub ndim: usize,
}

impl<'w> TensorView<'w> {
    /// A view with the given shape (up to 4 dimensions; extra ones are ignored).
    pub fn new(data: Tensor<'w>, shape: &[usize]) -> Self {
        let mut s = [0usize; 4];
        let ndim = shape.len().min(4);
        s[..ndim].copy_from_slice(&shape[..ndim]);
        Self {
            data,
            shape: s,
            ndim,
        }
    }

    /// The used part of the shape.
    pub fn dims(&self) -> &[usize] {
        &self.shape[..self.ndim]
    }

    /// The data of weight `name`, which must have `shape` and an element type this build has.
    /// (Inlined: called, it made the wasm module 3.4 KB larger, its error passed back through
    /// memory at every call site.)
    #[inline(always)]
    pub(crate) fn weight(self, name: WeightName, shape: &[usize]) -> Result<Tensor<'w>, Error> {
        let expected: usize = shape.iter().product();
        if self.dims() != shape || self.data.len() != expected {
            return Err(Error::WeightShape {
                name,
                expected: Dims::new(shape),
                found: Dims::new(self.dims()),
            });
        }
        if matches!(self.data, Tensor::Q8_0(_)) && !q8_0::BUILT {
            return Err(q8_0::not_built(Some(name)));
        }
        Ok(self.data)
    }
}

/// Where weights come from: anything that can look a tensor up by its x-transformers
/// `state_dict` key (a parsed safetensors file, a table of `static`s, a test's map).
pub trait TensorSource<'w> {
    /// The tensor stored under `name`, or `None`.
    fn tensor(&self, name: &str) -> Option<TensorView<'w>>;
}

impl<'w, F> TensorSource<'w> for F
where
    F: Fn(&str) -> Option<TensorView<'w>>,
{
    fn tensor(&self, name: &str) -> Option<TensorView<'w>> {
        self(name)
    }
}
