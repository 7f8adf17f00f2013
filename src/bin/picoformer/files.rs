//! Reading files into aligned memory (as a memory map or a flash section would give), aligned
//! working buffers, and writing small safetensors files.

use std::fmt::Write as _;

use crate::args::CliError;

/// Where the CLI puts model files and working buffers: at the start of a 64-byte cache line.
/// The loader needs each tensor aligned to its element type (8 bytes covers every type); the
/// kernels run faster still when a row's vector loads do not span two cache lines (f32
/// matrix-vector products 1.3–1.4× on AVX-512, `examples/align_probe.rs`), and the exporter
/// writes every matrix at a multiple of 64 bytes into the file.
pub const ALIGN: usize = 64;

/// `len` values of `T` starting on a 64-byte boundary, in a vector a line longer.
pub struct AlignedVec<T> {
    v: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> AlignedVec<T> {
    /// `len` default values (zeros).
    pub fn zeroed(len: usize) -> AlignedVec<T> {
        let v = vec![T::default(); len.saturating_add(ALIGN / core::mem::size_of::<T>().max(1))];
        // align_offset of a slice's pointer is always below ALIGN / size for these types.
        let start = v.as_ptr().align_offset(ALIGN).min(v.len() - len);
        AlignedVec { v, start, len }
    }
}

impl<T> core::ops::Deref for AlignedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v[self.start..self.start + self.len]
    }
}

impl<T> core::ops::DerefMut for AlignedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v[self.start..self.start + self.len]
    }
}

/// A file's bytes on a 64-byte boundary, so tensors can be viewed in place.
pub struct Aligned {
    words: AlignedVec<u64>,
    len: usize,
}

impl Aligned {
    /// Reads `path`.
    pub fn read(path: &str) -> Result<Aligned, CliError> {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::Failed(format!("cannot read {path}: {e}")))?;
        let mut words = AlignedVec::zeroed(bytes.len().div_ceil(8));
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
        Ok(Aligned {
            words,
            len: bytes.len(),
        })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

/// One tensor to write: name, safetensors dtype name, shape, little-endian bytes.
pub struct Entry {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Writes a safetensors file. `metadata` values are written as given between quotes, so they
/// must already be JSON-escaped (as `MetaValue::raw` returns them). Tensors are laid out in the
/// given order with no holes; the data section starts at a multiple of 64, so a caller that
/// orders tensors by element size (largest first) gets every tensor aligned for in-place views,
/// and within one size those of whole 64-byte lines first, each of those on a cache line.
pub fn write_tensors(
    path: &str,
    metadata: &[(String, String)],
    tensors: &[Entry],
) -> Result<(), CliError> {
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            let _ = write!(header, "{}\"{k}\":\"{v}\"", if i > 0 { "," } else { "" });
        }
        header.push('}');
    }
    let mut offset = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        if i > 0 || !metadata.is_empty() {
            header.push(',');
        }
        let _ = write!(
            header,
            "\"{}\":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            t.name,
            t.dtype,
            dims.join(","),
            offset + t.bytes.len()
        );
        offset += t.bytes.len();
    }
    header.push('}');
    // The data section on a cache line (as `tools/export.py` writes it).
    while (8 + header.len()) % ALIGN != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for t in tensors {
        out.extend_from_slice(&t.bytes);
    }
    std::fs::write(path, out).map_err(|e| CliError::Failed(format!("cannot write {path}: {e}")))
}

/// Writes f32 tensors as a safetensors file.
pub fn write_f32(path: &str, tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<(), CliError> {
    let entries: Vec<Entry> = tensors
        .iter()
        .map(|(name, shape, data)| Entry {
            name: name.to_string(),
            dtype: "F32",
            shape: shape.clone(),
            bytes: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    write_tensors(path, &[], &entries)
}

/// Bytes in human units.
pub fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}
