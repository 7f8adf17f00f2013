//! Runs on the host before the firmware is compiled:
//!
//! 1. reads the model file (`PICOFORMER_MODEL`, default `../../models/demo.safetensors`) with
//!    picoformer itself, so a file the firmware could not load fails here, at build time;
//! 2. writes its configuration to `OUT_DIR/model.rs` as Rust constants: the firmware sizes every
//!    buffer from them, so swapping the model resizes the statics (and the linker says if they no
//!    longer fit the RAM);
//! 3. writes the file to embed, `OUT_DIR/model.safetensors`: its weight matrices as Q8_0 (one byte
//!    per weight plus a scale per 32, the same format as `picoformer quantize`), unless the file
//!    is already quantised or `PICOFORMER_QUANTIZE=0`;
//! 4. hands `memory.x` and the linker scripts (`link.x` from cortex-m-rt, `defmt.x`) to the linker.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

// picoformer's API in one place (paths may move between versions: update them here).
use picoformer::options::METADATA_KEY;
use picoformer::q8_0::{quantize_q8_0, BlockQ8_0, Q8_0_BLOCK, Q8_0_BYTES};
use picoformer::safetensors::{Dtype, SafeTensors};
use picoformer::{DecoderConfig, Model, WrapperConfig};

/// Marks a quantised file (the key `picoformer quantize` writes).
const QUANTIZATION_KEY: &str = "picoformer_quantization";
/// Tensor data starts on a multiple of this (a cache line), as `tools/export.py` writes it.
const ALIGN: usize = 64;

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());

    // ---- linker: memory.x where cortex-m-rt's link.x finds it; link.x and defmt.x for the bins.
    fs::copy(dir.join("memory.x"), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    for arg in ["--nmagic", "-Tlink.x", "-Tdefmt.x"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }

    // ---- the model
    println!("cargo:rerun-if-env-changed=PICOFORMER_MODEL");
    println!("cargo:rerun-if-env-changed=PICOFORMER_QUANTIZE");
    let path = match env::var_os("PICOFORMER_MODEL") {
        Some(p) => dir.join(p), // relative to this folder (an absolute path stays as it is)
        None => dir.join("../../models/demo.safetensors"),
    };
    println!("cargo:rerun-if-changed={}", path.display());
    let original = Aligned::read(&path);
    let cfg = match Model::<64>::from_safetensors(original.bytes()) {
        Ok(Model::Wrapper(w)) => *w.config(),
        Ok(Model::Decoder(_)) => fail(
            &path,
            "holds a raw Decoder; the template runs a TransformerWrapper (tokens in, logits out)",
        ),
        Err(e) => fail(&path, &format!("does not load: {e}")),
    };
    if cfg.attn_layers.cross_attend {
        fail(
            &path,
            "cross-attends: the template has no context to give it (see KvCache::with_context)",
        );
    }
    let st = SafeTensors::parse(original.bytes()).unwrap();
    let quantise = env::var("PICOFORMER_QUANTIZE").map_or(true, |v| v != "0")
        && st.metadata(QUANTIZATION_KEY).is_none();
    let embedded = if quantise {
        quantised(&st)
    } else {
        original.bytes().to_vec()
    };
    // What is embedded must load, with the same configuration.
    let check = Aligned::new(&embedded);
    match Model::<64>::from_safetensors(check.bytes()) {
        Ok(Model::Wrapper(w)) if *w.config() == cfg => {}
        Ok(_) => fail(&path, "changed its configuration when quantised"),
        Err(e) => fail(&path, &format!("does not load once quantised: {e}")),
    }
    fs::write(out.join("model.safetensors"), &embedded).unwrap();

    let dtype = if quantise || st.metadata(QUANTIZATION_KEY).is_some() {
        "q8_0".to_string()
    } else {
        largest_dtype(&st)
    };
    let mut rs = String::new();
    writeln!(
        rs,
        "// Written by build.rs from {}: do not edit.",
        path.display()
    )
    .unwrap();
    writeln!(rs, "/// The model's configuration, read from its metadata.").unwrap();
    writeln!(
        rs,
        "pub const CONFIG: WrapperConfig = {};",
        wrapper_rust(&cfg)
    )
    .unwrap();
    writeln!(rs, "/// Its weights' type.").unwrap();
    writeln!(rs, "pub const DTYPE: &str = {dtype:?};").unwrap();
    writeln!(rs, "/// Where it came from.").unwrap();
    let name = path.file_name().unwrap().to_string_lossy();
    writeln!(rs, "pub const SOURCE: &str = {name:?};").unwrap();
    fs::write(out.join("model.rs"), rs).unwrap();
}

fn fail(path: &Path, why: &str) -> ! {
    panic!("{}: {why}", path.display())
}

/// Bytes in 8-byte words, so that picoformer can view the tensors in place.
struct Aligned {
    words: Vec<u64>,
    len: usize,
}

impl Aligned {
    fn new(b: &[u8]) -> Self {
        let mut words = vec![0u64; b.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..b.len()].copy_from_slice(b);
        Self {
            words,
            len: b.len(),
        }
    }

    fn read(path: &Path) -> Self {
        match fs::read(path) {
            Ok(b) => Self::new(&b),
            Err(e) => fail(
                path,
                &format!("cannot read it ({e}); set PICOFORMER_MODEL to your model file"),
            ),
        }
    }

    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

/// The dtype of most of the file's bytes (f32, f16 or bf16), for the log.
fn largest_dtype(st: &SafeTensors<'_>) -> String {
    let mut by: Vec<(&'static str, usize)> = Vec::new();
    for t in st.tensors() {
        let name = t.dtype().name();
        match by.iter_mut().find(|(n, _)| *n == name) {
            Some((_, n)) => *n += t.data().len(),
            None => by.push((name, t.data().len())),
        }
    }
    by.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    by.first().map_or("?", |&(n, _)| n).to_ascii_lowercase()
}

/// The file with every matrix whose rows split into 32-value blocks as Q8_0; norms, biases and
/// rotary frequencies stay as they are. Metadata is kept and the quantisation marked in it.
fn quantised(st: &SafeTensors<'_>) -> Vec<u8> {
    struct Entry {
        name: String,
        dtype: Dtype,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    }
    let mut entries = Vec::new();
    for t in st.tensors() {
        let s = t.shape().to_vec();
        let values: Option<Vec<f32>> = match t.dtype() {
            Dtype::F32 => Some(t.as_f32().unwrap().to_vec()),
            Dtype::F16 => Some(t.as_f16().unwrap().iter().map(|v| v.to_f32()).collect()),
            Dtype::BF16 => Some(t.as_bf16().unwrap().iter().map(|v| v.to_f32()).collect()),
            _ => None,
        };
        let entry = match values {
            Some(v) if s.len() == 2 && s[1] > 0 && s[1] % Q8_0_BLOCK == 0 => {
                let mut blocks: Vec<BlockQ8_0> = vec![[0u8; Q8_0_BYTES]; v.len() / Q8_0_BLOCK];
                quantize_q8_0(&v, &mut blocks).unwrap();
                Entry {
                    name: t.name().to_string(),
                    dtype: Dtype::U8,
                    shape: vec![s[0], s[1] / Q8_0_BLOCK, Q8_0_BYTES],
                    bytes: blocks.concat(),
                }
            }
            _ => Entry {
                name: t.name().to_string(),
                dtype: t.dtype(),
                shape: s,
                bytes: t.data().to_vec(),
            },
        };
        entries.push(entry);
    }
    // Largest elements first: every tensor then starts aligned to its element size.
    entries.sort_by_key(|e| std::cmp::Reverse(e.dtype.size()));

    // Metadata values are copied raw (already JSON-escaped in the file).
    let mut header = String::from("{\"__metadata__\":{");
    let mut has_config = false;
    for (k, v) in st.metadata_entries() {
        has_config |= k.raw() == METADATA_KEY;
        write!(header, "\"{}\":\"{}\",", k.raw(), v.raw()).unwrap();
    }
    assert!(
        has_config,
        "the model file has no `{METADATA_KEY}` metadata"
    );
    write!(header, "\"{QUANTIZATION_KEY}\":\"q8_0\"}}").unwrap();
    let mut offset = 0;
    for e in &entries {
        let shape: Vec<String> = e.shape.iter().map(usize::to_string).collect();
        write!(
            header,
            ",\"{}\":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            e.name,
            e.dtype.name(),
            shape.join(","),
            offset + e.bytes.len()
        )
        .unwrap();
        offset += e.bytes.len();
    }
    header.push('}');
    while (8 + header.len()) % ALIGN != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    for e in &entries {
        file.extend_from_slice(&e.bytes);
    }
    file
}

/// `cfg` as a Rust expression of picoformer's `const` builders; checked to rebuild `cfg` exactly.
fn wrapper_rust(cfg: &WrapperConfig) -> String {
    let c = &cfg.attn_layers;
    let def = DecoderConfig::new(c.dim, c.depth);
    let mut d = def;
    let mut s = format!(
        "WrapperConfig::new({}, {}, DecoderConfig::new({}, {})",
        cfg.num_tokens, cfg.max_seq_len, c.dim, c.depth
    );
    // One line per builder: the value is rebuilt alongside the text, then compared.
    macro_rules! set {
        ($field:ident, $method:ident) => {
            if c.$field != def.$field {
                d = d.$method(c.$field);
                write!(s, ".{}({:?})", stringify!($method), c.$field).unwrap();
            }
        };
        ($field:ident, $method:ident, option) => {
            if let Some(v) = c.$field {
                d = d.$method(v);
                write!(s, ".{}({v:?})", stringify!($method)).unwrap();
            }
        };
    }
    set!(heads, heads);
    set!(attn_dim_head, attn_dim_head);
    set!(attn_kv_heads, attn_kv_heads, option);
    set!(attn_one_kv_head, attn_one_kv_head);
    set!(rotary_pos_emb, rotary_pos_emb);
    set!(rotary_emb_dim, rotary_emb_dim, option);
    set!(rotary_base_rescale_factor, rotary_base_rescale_factor);
    set!(rotary_interpolation_factor, rotary_interpolation_factor);
    set!(use_rmsnorm, use_rmsnorm);
    set!(use_simple_rmsnorm, use_simple_rmsnorm);
    set!(ff_mult, ff_mult);
    set!(ff_glu, ff_glu);
    set!(ff_swish, ff_swish);
    set!(ff_relu_squared, ff_relu_squared);
    set!(ff_no_bias, ff_no_bias);
    s.push(')');
    let mut w = WrapperConfig::new(cfg.num_tokens, cfg.max_seq_len, d);
    let base = w;
    if cfg.use_abs_pos_emb != base.use_abs_pos_emb {
        w = w.use_abs_pos_emb(cfg.use_abs_pos_emb);
        write!(s, ".use_abs_pos_emb({})", cfg.use_abs_pos_emb).unwrap();
    }
    if cfg.tie_embedding != base.tie_embedding {
        w = w.tie_embedding(cfg.tie_embedding);
        write!(s, ".tie_embedding({})", cfg.tie_embedding).unwrap();
    }
    assert!(
        w == *cfg,
        "build.rs does not write every option of this configuration: {cfg:?}"
    );
    s
}
