//! Writes a deterministic model as a picoformer-1 safetensors file, the format `tools/export.py`
//! writes for an x-transformers module: the `state_dict` keys of a `TransformerWrapper`, the
//! constructor kwargs as JSON in the metadata, tensors ordered by element size, data aligned.

use picoformer::layers::Kind;
use picoformer::q8_0::{quantize_q8_0, Q8_0_BLOCK, Q8_0_BYTES};
use picoformer::{bf16, f16, DecoderConfig, WrapperConfig};

use crate::boards::Dtype;

/// How a tensor's deterministic values are drawn.
#[derive(Clone, Copy)]
enum Init {
    /// Uniform in ±1/√fan_in (an `nn.Linear` weight).
    Linear(usize),
    /// Uniform in ±0.1 (norm gains are stored as gain − 1, biases).
    Small,
    /// Uniform in ±1 (embeddings).
    Embedding,
    /// Uniform in 1 ± 0.1 (a gain used as stored, such as `residual_scale`).
    Gain,
    /// The rotary buffer 1/10000^(2m/r) (stays f32, like the exporter keeps it).
    InvFreq(usize),
}

/// The `state_dict` keys of `TransformerWrapper(attn_layers=Decoder(...))` with their shapes
/// (x-transformers 2.31.10; sublayer ℓ counts 'a', ('c'), 'f' of every block).
fn layout(cfg: &WrapperConfig) -> Vec<(String, Vec<usize>, Init)> {
    let c = &cfg.attn_layers;
    let (d, q, kv, f, p) = (c.dim, c.q_dim(), c.kv_dim(), c.ff_inner(), c.ff_proj_rows());
    let mut t = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, init: Init| t.push((name, shape, init));
    push(
        "token_emb.emb.weight".into(),
        vec![cfg.num_tokens, d],
        Init::Embedding,
    );
    if cfg.has_abs_pos_emb() {
        push(
            "pos_emb.emb.weight".into(),
            vec![cfg.max_seq_len, d],
            Init::Embedding,
        );
    }
    let a = "attn_layers.layers";
    let norm = |c: &DecoderConfig| if c.use_rmsnorm { "g" } else { "gamma" };
    // Every stored sublayer (`layers.l`), of the kind the plan gives it.
    for l in 0..c.stored_layers() {
        let kind = c.stored_kind(l);
        if let Kind::Attention | Kind::Cross = kind {
            let d_in = if kind == Kind::Cross {
                c.dim_context()
            } else {
                d
            };
            if !c.use_simple_rmsnorm {
                push(format!("{a}.{l}.0.0.{}", norm(c)), vec![d], Init::Small);
            }
            push(
                format!("{a}.{l}.1.to_q.weight"),
                vec![q, d],
                Init::Linear(d),
            );
            push(
                format!("{a}.{l}.1.to_k.weight"),
                vec![kv, d_in],
                Init::Linear(d_in),
            );
            push(
                format!("{a}.{l}.1.to_v.weight"),
                vec![kv, d_in],
                Init::Linear(d_in),
            );
            if c.has_to_out() {
                push(
                    format!("{a}.{l}.1.to_out.weight"),
                    vec![d, q],
                    Init::Linear(q),
                );
            }
            continue;
        }
        if !c.use_simple_rmsnorm {
            push(format!("{a}.{l}.0.0.{}", norm(c)), vec![d], Init::Small);
        }
        if c.ff_glu {
            push(
                format!("{a}.{l}.1.ff.0.proj.weight"),
                vec![p, d],
                Init::Linear(d),
            );
            push(format!("{a}.{l}.1.ff.0.proj.bias"), vec![p], Init::Small);
        } else {
            push(
                format!("{a}.{l}.1.ff.0.0.weight"),
                vec![p, d],
                Init::Linear(d),
            );
            if !c.ff_no_bias {
                push(format!("{a}.{l}.1.ff.0.0.bias"), vec![p], Init::Small);
            }
        }
        push(
            format!("{a}.{l}.1.ff.2.weight"),
            vec![d, f],
            Init::Linear(f),
        );
        if !c.ff_no_bias {
            push(format!("{a}.{l}.1.ff.2.bias"), vec![d], Init::Small);
        }
    }
    // Per sublayer, besides its pre-norm: the sandwich norm on the branch output and the
    // residual path's gain.
    for l in 0..c.stored_layers() {
        if c.sandwich_norm {
            push(format!("{a}.{l}.0.1.{}", norm(c)), vec![d], Init::Small);
        }
        if c.scale_residual {
            push(format!("{a}.{l}.2.residual_scale"), vec![d], Init::Gain);
        }
    }
    if !c.use_simple_rmsnorm && c.has_final_norm() {
        push(
            format!("attn_layers.final_norm.{}", norm(c)),
            vec![d],
            Init::Small,
        );
    }
    if c.rotary_pos_emb {
        let r = c.rotary_dim();
        push(
            "attn_layers.rotary_pos_emb.inv_freq".into(),
            vec![r / 2],
            Init::InvFreq(r),
        );
    }
    if !cfg.tie_embedding {
        push(
            "to_logits.weight".into(),
            vec![cfg.num_tokens, d],
            Init::Linear(d),
        );
    }
    t
}

/// splitmix64: a small deterministic generator (the same bytes on every machine).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A deterministic token sequence of length `n` below `vocab`.
pub fn tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut rng = Rng(seed ^ 0x5EED_0000_7011_0000);
    (0..n).map(|_| rng.below(vocab) as u32).collect()
}

fn encode(values: &[f32], dtype: Dtype) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.size());
    for &v in values {
        match dtype {
            Dtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
            Dtype::F16 => out.extend_from_slice(&f16::from_f32(v).to_bits().to_le_bytes()),
            Dtype::Bf16 => out.extend_from_slice(&bf16::from_f32(v).to_bits().to_le_bytes()),
            Dtype::Q8_0 => unreachable!("Q8_0 is encoded by blocks"),
        }
    }
    out
}

/// The constructor kwargs as the exporter stores them: `{"decoder": {...}, "wrapper": {...}}`,
/// sorted keys, only what differs from x-transformers' defaults.
pub fn kwargs_json(cfg: &WrapperConfig) -> String {
    let c = &cfg.attn_layers;
    let def = DecoderConfig::new(c.dim, c.depth);
    let mut dec: Vec<(&str, String)> =
        vec![("depth", c.depth.to_string()), ("dim", c.dim.to_string())];
    let mut opt = |key: &'static str, differs: bool, value: String| {
        if differs {
            dec.push((key, value));
        }
    };
    opt("heads", c.heads != def.heads, c.heads.to_string());
    opt(
        "attn_dim_head",
        c.attn_dim_head != def.attn_dim_head,
        c.attn_dim_head.to_string(),
    );
    opt(
        "attn_kv_heads",
        c.attn_kv_heads.is_some(),
        c.attn_kv_heads.unwrap_or(0).to_string(),
    );
    opt("attn_one_kv_head", c.attn_one_kv_head, "true".into());
    opt("cross_attend", c.cross_attend, "true".into());
    opt(
        "cross_attn_dim_context",
        c.cross_attn_dim_context.is_some(),
        c.cross_attn_dim_context.unwrap_or(0).to_string(),
    );
    opt("rotary_pos_emb", c.rotary_pos_emb, "true".into());
    opt(
        "rotary_emb_dim",
        c.rotary_emb_dim.is_some(),
        c.rotary_emb_dim.unwrap_or(0).to_string(),
    );
    opt(
        "rotary_base_rescale_factor",
        c.rotary_base_rescale_factor != 1.0,
        format!("{:?}", c.rotary_base_rescale_factor),
    );
    opt(
        "rotary_interpolation_factor",
        c.rotary_interpolation_factor != 1.0,
        format!("{:?}", c.rotary_interpolation_factor),
    );
    opt("use_rmsnorm", c.use_rmsnorm, "true".into());
    opt("use_simple_rmsnorm", c.use_simple_rmsnorm, "true".into());
    opt(
        "ff_mult",
        c.ff_mult != def.ff_mult,
        format!("{:?}", c.ff_mult),
    );
    opt("ff_glu", c.ff_glu, "true".into());
    opt("ff_swish", c.ff_swish, "true".into());
    opt("ff_relu_squared", c.ff_relu_squared, "true".into());
    opt("ff_no_bias", c.ff_no_bias, "true".into());
    opt("sandwich_norm", c.sandwich_norm, "true".into());
    opt("scale_residual", c.scale_residual, "true".into());
    opt("softclamp_output", c.softclamp_output, "true".into());
    opt(
        "softclamp_output_value",
        c.softclamp_output,
        format!("{:?}", c.softclamp_output_value),
    );
    dec.sort();
    let mut wrap = vec![
        ("max_seq_len", cfg.max_seq_len.to_string()),
        ("num_tokens", cfg.num_tokens.to_string()),
    ];
    if !cfg.use_abs_pos_emb {
        wrap.push(("use_abs_pos_emb", "false".into()));
    }
    if cfg.tie_embedding {
        wrap.push(("tie_embedding", "true".into()));
    }
    wrap.sort();
    let obj = |kv: &[(&str, String)]| {
        let items: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        format!("{{{}}}", items.join(", "))
    };
    format!(
        "{{\"decoder\": {}, \"wrapper\": {}}}",
        obj(&dec),
        obj(&wrap)
    )
}

/// Escapes a string for a JSON string literal (quotes and backslashes are all it needs here).
fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The model file for `cfg` with weights drawn from `seed`.
pub fn generate(cfg: &WrapperConfig, dtype: Dtype, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    // (key, shape, element type, bytes, index in state_dict order)
    type Encoded = (String, Vec<usize>, Dtype, Vec<u8>, usize);
    let mut tensors: Vec<Encoded> = Vec::new();
    for (i, (name, shape, init)) in layout(cfg).into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match init {
            Init::Linear(fan_in) => {
                let a = 1.0 / (fan_in as f32).sqrt();
                (0..n).map(|_| rng.symmetric() * a).collect()
            }
            Init::Small => (0..n).map(|_| rng.symmetric() * 0.1).collect(),
            Init::Embedding => (0..n).map(|_| rng.symmetric()).collect(),
            Init::Gain => (0..n).map(|_| 1.0 + rng.symmetric() * 0.1).collect(),
            Init::InvFreq(r) => (0..n)
                .map(|m| (1.0 / 10000f64.powf((2 * m) as f64 / r as f64)) as f32)
                .collect(),
        };
        let dt = if matches!(init, Init::InvFreq(_)) {
            Dtype::F32
        } else {
            dtype
        };
        if dt == Dtype::Q8_0 {
            // Matrices whose rows split into whole blocks as Q8_0 (as `picoformer quantize`
            // writes them); norms, biases and the rest f32.
            if let [rows, cols] = shape[..] {
                if cols % Q8_0_BLOCK == 0 {
                    let mut blocks = vec![[0u8; Q8_0_BYTES]; n / Q8_0_BLOCK];
                    quantize_q8_0(&values, &mut blocks).expect("host: Q8_0 blocks");
                    let shape = vec![rows, cols / Q8_0_BLOCK, Q8_0_BYTES];
                    tensors.push((name, shape, dt, blocks.concat(), i));
                    continue;
                }
            }
            tensors.push((name, shape, Dtype::F32, encode(&values, Dtype::F32), i));
            continue;
        }
        tensors.push((name, shape, dt, encode(&values, dt), i));
    }
    // Largest elements first; within one size, whole multiples of 8 bytes first (export.py).
    tensors.sort_by_key(|t| (usize::MAX - t.2.size(), t.3.len() % 8 != 0, t.4));

    let mut header = vec![format!(
        "\"__metadata__\":{{\"format\":\"picoformer-1\",\"x_transformers\":{},\"x_transformers_version\":\"2.31.10\"}}",
        json_str(&kwargs_json(cfg))
    )];
    let mut offset = 0;
    for (name, shape, dt, data, _) in &tensors {
        let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
        header.push(format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json_str(name),
            dt.tag(),
            dims.join(","),
            offset,
            offset + data.len()
        ));
        offset += data.len();
    }
    // Padded with spaces so the data section starts at a multiple of 8.
    let mut h = format!("{{{}}}", header.join(",")).into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + h.len() + offset);
    bytes.extend_from_slice(&(h.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&h);
    for t in &tensors {
        bytes.extend_from_slice(&t.3);
    }
    bytes
}
