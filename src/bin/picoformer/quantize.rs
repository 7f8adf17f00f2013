//! `picoformer quantize`: rewrites a model file with its weight matrices as Q8_0 (blocks of 32
//! int8 values with one f16 scale), a quarter of the f32 bytes.

use picoformer::options::METADATA_KEY;
use picoformer::q8_0::{quantize_q8_0, BlockQ8_0, Q8_0_BLOCK, Q8_0_BYTES};
use picoformer::safetensors::{Dtype, SafeTensors};
use picoformer::Model;

use crate::args::{Args, CliError};
use crate::files::{human, write_tensors, Entry, ModelFile, ALIGN};
use crate::progress::Progress;

/// The metadata entry that marks a quantised file.
const QUANTIZATION_KEY: &str = "picoformer_quantization";

pub fn main(args: &Args) -> Result<(), CliError> {
    let p = args.positional(&["MODEL", "OUT"])?;
    let (in_path, out_path) = (&p[0], &p[1]);
    let file = ModelFile::open(in_path)?;
    // Only models picoformer can run are quantised, so the result runs too.
    let _: Model = Model::from_safetensors(file.bytes())
        .map_err(|e| CliError::Failed(format!("{in_path}: {e}")))?;
    let st = SafeTensors::parse(file.bytes())?;
    if st.metadata(QUANTIZATION_KEY).is_some() {
        return Err(CliError::Failed(format!("{in_path} is already quantised")));
    }
    let mut metadata: Vec<(String, String)> = Vec::new();
    for (k, v) in st.metadata_entries() {
        metadata.push((k.raw().to_string(), v.raw().to_string()));
    }
    if !metadata.iter().any(|(k, _)| k == METADATA_KEY) {
        return Err(CliError::Failed(format!(
            "{in_path} has no `{METADATA_KEY}` metadata"
        )));
    }
    metadata.push((QUANTIZATION_KEY.to_string(), "q8_0".to_string()));

    let (mut entries, mut quantised) = (Vec::new(), 0usize);
    let mut progress = Progress::new("quantize: tensors");
    let count = st.tensors().count();
    for (i, t) in st.tensors().enumerate() {
        progress.update(i, count);
        let s = t.shape();
        let values: Option<Vec<f32>> = match t.dtype() {
            Dtype::F32 => Some(t.as_f32()?.to_vec()),
            Dtype::F16 => Some(t.as_f16()?.iter().map(|v| v.to_f32()).collect()),
            Dtype::BF16 => Some(t.as_bf16()?.iter().map(|v| v.to_f32()).collect()),
            _ => None,
        };
        // Matrices whose rows split into whole blocks; norms, biases and inv_freq stay as they are.
        match values {
            Some(v) if s.len() == 2 && s[1] % Q8_0_BLOCK == 0 && s[1] > 0 => {
                let mut blocks: Vec<BlockQ8_0> = vec![[0u8; Q8_0_BYTES]; v.len() / Q8_0_BLOCK];
                quantize_q8_0(&v, &mut blocks)?;
                entries.push(Entry {
                    name: t.name().to_string(),
                    dtype: "U8",
                    shape: vec![s[0], s[1] / Q8_0_BLOCK, Q8_0_BYTES],
                    bytes: blocks.concat(),
                });
                quantised += 1;
            }
            _ => entries.push(Entry {
                name: t.name().to_string(),
                dtype: t.dtype().name(),
                shape: s.to_vec(),
                bytes: t.data().to_vec(),
            }),
        }
    }
    // Every tensor is copied into `entries`: the input's map is dropped before OUT is written
    // (OUT may be MODEL itself, and a mapped file must not change under the map).
    progress.clear();
    let in_len = file.bytes().len();
    drop(file);
    // Largest elements first keeps every tensor aligned to its element size; within one size,
    // those of whole cache lines first start on one (the sort is stable).
    entries.sort_by_key(|e| {
        let size = Dtype::from_name(e.dtype).map_or(1, Dtype::size);
        (
            std::cmp::Reverse(size),
            !e.bytes.len().is_multiple_of(ALIGN),
        )
    });
    write_tensors(out_path, &metadata, &entries)?;
    // The result must load.
    let check = ModelFile::open(out_path)?;
    let _: Model = Model::from_safetensors(check.bytes())
        .map_err(|e| CliError::Failed(format!("{out_path} does not load: {e}")))?;
    outln!(
        "wrote {out_path}: {quantised} of {} tensors as Q8_0, {} -> {}",
        entries.len(),
        human(in_len as u64),
        human(check.bytes().len() as u64)
    );
    Ok(())
}
