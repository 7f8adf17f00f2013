//! Reading files into aligned memory (as a memory map or a flash section would give) and
//! writing small safetensors files.

use std::fmt::Write as _;

use crate::args::CliError;

/// A file's bytes in 8-byte-aligned memory, so tensors can be viewed in place.
pub struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    /// Reads `path`.
    pub fn read(path: &str) -> Result<Aligned, CliError> {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::Failed(format!("cannot read {path}: {e}")))?;
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
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

/// Writes f32 tensors as a safetensors file.
pub fn write_f32(path: &str, tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<(), CliError> {
    let mut header = String::from("{");
    let mut offset = 0usize;
    for (i, (name, shape, data)) in tensors.iter().enumerate() {
        let bytes = data.len() * 4;
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        if i > 0 {
            header.push(',');
        }
        let _ = write!(
            header,
            "\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            dims.join(","),
            offset + bytes
        );
        offset += bytes;
    }
    header.push('}');
    while (8 + header.len()) % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for (_, _, data) in tensors {
        for v in data.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, out).map_err(|e| CliError::Failed(format!("cannot write {path}: {e}")))
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
