//! Model files memory-mapped (or, where mapping fails, read into aligned memory, as a flash
//! section would give them), other files read into aligned memory, aligned working buffers, and
//! writing small safetensors files.

use std::fmt::Write as _;

use crate::args::CliError;

/// Where the CLI puts model files and working buffers: at the start of a 64-byte cache line.
/// The loader needs each tensor aligned to its element type (8 bytes covers every type); the
/// kernels run faster still when a row's vector loads do not span two cache lines (f32
/// matrix-vector products 1.3–1.4× on AVX-512, `examples/align_probe.rs`), and the exporter
/// writes every matrix at a multiple of 64 bytes into the file.
pub const ALIGN: usize = 64;

/// The largest file the tool reads (model, inputs, text): 64 GiB.
pub const MAX_FILE: u64 = 64 << 30;

/// The largest buffer the tool allocates at once (a larger `--capacity` is refused): 64 GiB.
pub const MAX_ALLOCATION: u64 = 64 << 30;

/// `len` values of `T` starting on a 64-byte boundary, in a vector a line longer.
pub struct AlignedVec<T> {
    v: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> AlignedVec<T> {
    /// `len` default values (zeros), or an error naming `what` if the memory cannot be had.
    pub fn zeroed(len: usize, what: &str) -> Result<AlignedVec<T>, CliError> {
        let v = filled(
            len.saturating_add(ALIGN / core::mem::size_of::<T>().max(1)),
            T::default(),
            what,
        )?;
        // align_offset of a slice's pointer is always below ALIGN / size for these types.
        let start = v.as_ptr().align_offset(ALIGN).min(v.len() - len);
        Ok(AlignedVec { v, start, len })
    }
}

/// `len` copies of `value` in a vector, or an error naming `what` (and the bytes it would take)
/// when the allocation fails, instead of the process aborting.
pub fn filled<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>, CliError> {
    let mut v = Vec::new();
    let bytes = (len as u64).saturating_mul(core::mem::size_of::<T>() as u64);
    if bytes > MAX_ALLOCATION || v.try_reserve_exact(len).is_err() {
        return Err(CliError::Failed(format!(
            "cannot allocate {} for {what}",
            human(bytes)
        )));
    }
    v.resize(len, value);
    Ok(v)
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
    /// Reads `path`: a regular file of at most [`MAX_FILE`] bytes.
    pub fn read(path: &str) -> Result<Aligned, CliError> {
        use std::io::Read as _;
        let fail = |e: std::io::Error| CliError::Failed(format!("cannot read {path}: {e}"));
        let mut file = std::fs::File::open(path).map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        check_file(path, &meta)?;
        // Read straight into the aligned buffer (one copy of the file in memory, not two).
        let len = meta.len() as usize;
        let mut words = AlignedVec::<u64>::zeroed(len.div_ceil(8), path)?;
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len];
        file.read_exact(bytes).map_err(fail)?;
        if file.read(&mut [0u8; 1]).map_err(fail)? != 0 {
            return Err(CliError::Failed(format!(
                "cannot read {path}: it grew while being read"
            )));
        }
        Ok(Aligned { words, len })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

/// A model file's bytes: the file mapped read-only (page-aligned, so every tensor can be viewed
/// in place, and the weights are the page cache's pages: one copy of the file in memory, none on
/// the heap), or, where the system cannot map it, read into an [`Aligned`] buffer.
///
/// The hazard of a map: its bytes are the file's, so a file changed or truncated by another
/// program while this one runs changes the weights under it, and a truncated page kills the
/// process with SIGBUS when it is touched. The tool never writes a file it has mapped
/// (`quantize` drops its input's map before it writes, in case OUT is MODEL). Set
/// `PICOFORMER_MMAP=0` to read the file instead (a private copy, twice the memory at peak).
pub enum ModelFile {
    Mapped(memmap2::Mmap),
    Read(Aligned),
}

impl ModelFile {
    /// Opens `path` (a regular file of at most [`MAX_FILE`] bytes, as [`Aligned::read`]) and
    /// maps it; reads it if mapping fails (or is turned off).
    pub fn open(path: &str) -> Result<ModelFile, CliError> {
        let fail = |e: std::io::Error| CliError::Failed(format!("cannot read {path}: {e}"));
        if std::env::var_os("PICOFORMER_MMAP").is_some_and(|v| v == "0") {
            return Aligned::read(path).map(ModelFile::Read);
        }
        let file = std::fs::File::open(path).map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        check_file(path, &meta)?;
        match map(&file) {
            // The map is as long as the file was when it was mapped.
            Ok(map) if map.len() as u64 == meta.len() && map.as_ptr().align_offset(ALIGN) == 0 => {
                Ok(ModelFile::Mapped(map))
            }
            // An empty file, a file system without mmap, a file that changed size...
            _ => Aligned::read(path).map(ModelFile::Read),
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ModelFile::Mapped(m) => m,
            ModelFile::Read(a) => a.bytes(),
        }
    }
}

/// Maps `file` read-only.
///
/// `unsafe` is allowed here alone in the tool (the crate denies it outside the kernels): a
/// memory map is the only way to view a file's bytes without copying them.
#[allow(unsafe_code)]
fn map(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the mapped bytes are shared with the file: if another
    // process modifies or truncates it, the `&[u8]` this tool holds changes (or faults with
    // SIGBUS) under it. The map is read-only (PROT_READ), this process never writes a file while
    // it holds the file's map (`quantize` drops its input's map before writing OUT), and the
    // risk of another program rewriting a model file in place during a run is documented
    // (README, docs/cli.md) with `PICOFORMER_MMAP=0` as the way out.
    unsafe { memmap2::Mmap::map(file) }
}

/// A regular file of at most [`MAX_FILE`] bytes.
fn check_file(path: &str, meta: &std::fs::Metadata) -> Result<(), CliError> {
    if !meta.is_file() {
        return Err(CliError::Failed(format!(
            "cannot read {path}: not a regular file"
        )));
    }
    if meta.len() > MAX_FILE {
        return Err(CliError::Failed(format!(
            "cannot read {path}: {} bytes, more than the {} this tool reads",
            meta.len(),
            human(MAX_FILE)
        )));
    }
    Ok(())
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
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 40 {
        format!("{:.2} TiB", bytes as f64 / (1u64 << 40) as f64)
    } else if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}
