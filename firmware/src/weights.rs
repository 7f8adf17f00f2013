//! Zero-copy views of the embedded model file's tensors, from the table of contents build.rs
//! wrote (until `picoformer::model` parses the safetensors header itself). Compiled into the
//! firmware and into build.rs.

use picoformer::{bf16, f16, Tensor, TensorView};

/// Element type tags (the safetensors `dtype`).
pub const F32: u8 = 0;
/// IEEE half.
pub const F16: u8 = 1;
/// bfloat16.
pub const BF16: u8 = 2;

/// One tensor of the file: its key, element type, shape and byte range in the data section.
pub struct Entry {
    pub name: &'static str,
    pub dtype: u8,
    pub shape: &'static [usize],
    pub start: usize,
    pub end: usize,
}

/// The bytes `start..end` of `data` seen as a tensor of `dtype` and `shape`, without copying.
/// `None` if they are misaligned or do not fill the shape.
pub fn view<'a>(data: &'a [u8], dtype: u8, shape: &[usize], start: usize, end: usize) -> Option<TensorView<'a>> {
    let bytes = data.get(start..end)?;
    let tensor = match dtype {
        F32 => Tensor::F32(bytemuck::try_cast_slice::<u8, f32>(bytes).ok()?),
        F16 => Tensor::F16(bytemuck::try_cast_slice::<u8, f16>(bytes).ok()?),
        BF16 => Tensor::Bf16(bytemuck::try_cast_slice::<u8, bf16>(bytes).ok()?),
        _ => return None,
    };
    (tensor.len() == shape.iter().product::<usize>()).then(|| TensorView::new(tensor, shape))
}
