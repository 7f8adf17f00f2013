//! Compares the float64 reference (tests/reference) with x-transformers outputs recorded by
//! `tools/make_fixtures.py` in `tests/fixtures` (manifest.json + safetensors).
//!
//! The fixture directory is `tests/fixtures` of this crate, or `$PICOFORMER_FIXTURES` if set. When
//! neither exists the test prints a notice and passes (the fixtures live on another branch).
//! Checks per fixture: `param_shapes` equals the torch state_dict key set and shapes exactly, the
//! stored `inv_freq` is within 1 f32 ulp of our formula, and the reference matches torch's
//! whole-sequence output (`full`) and cached decoding output (`stepwise`).

mod reference;

use reference::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- minimal JSON

#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(k),
            _ => None,
        }
    }
    fn num(&self) -> f64 {
        match self {
            Json::Num(v) => *v,
            other => panic!("expected a number, got {other:?}"),
        }
    }
    fn usize(&self) -> usize {
        let v = self.num();
        assert!(v >= 0.0 && v.fract() == 0.0, "expected an integer, got {v}");
        v as usize
    }
    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }
    fn obj(&self) -> &BTreeMap<String, Json> {
        match self {
            Json::Obj(m) => m,
            other => panic!("expected an object, got {other:?}"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Json {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing JSON");
        v
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(
            self.s[self.i], c,
            "JSON: expected `{}` at {}",
            c as char, self.i
        );
        self.i += 1;
    }
    fn lit(&mut self, word: &str, v: Json) -> Json {
        assert!(
            self.s[self.i..].starts_with(word.as_bytes()),
            "JSON literal at {}",
            self.i
        );
        self.i += word.len();
        v
    }
    fn value(&mut self) -> Json {
        self.ws();
        match self.s[self.i] {
            b'{' => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.s[self.i] == b'}' {
                    self.i += 1;
                    return Json::Obj(m);
                }
                loop {
                    self.ws();
                    let k = self.string();
                    self.eat(b':');
                    let v = self.value();
                    m.insert(k, v);
                    self.ws();
                    let c = self.s[self.i];
                    self.i += 1;
                    match c {
                        b',' => continue,
                        b'}' => return Json::Obj(m),
                        _ => panic!("JSON object at {}", self.i),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.s[self.i] == b']' {
                    self.i += 1;
                    return Json::Arr(a);
                }
                loop {
                    a.push(self.value());
                    self.ws();
                    let c = self.s[self.i];
                    self.i += 1;
                    match c {
                        b',' => continue,
                        b']' => return Json::Arr(a),
                        _ => panic!("JSON array at {}", self.i),
                    }
                }
            }
            b'"' => Json::Str(self.string()),
            b't' => self.lit("true", Json::Bool(true)),
            b'f' => self.lit("false", Json::Bool(false)),
            b'n' => self.lit("null", Json::Null),
            _ => {
                let st = self.i;
                while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[st..self.i]).unwrap();
                Json::Num(t.parse().unwrap_or_else(|_| panic!("JSON number `{t}`")))
            }
        }
    }
    fn string(&mut self) -> String {
        self.eat(b'"');
        let mut out = String::new();
        loop {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    match e {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let h = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                            self.i += 4;
                            out.push(
                                char::from_u32(u32::from_str_radix(h, 16).unwrap()).unwrap_or('?'),
                            );
                        }
                        other => out.push(other as char),
                    }
                }
                _ => {
                    // copy a whole UTF-8 sequence
                    let st = self.i - 1;
                    let len = match c {
                        0x00..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    self.i = st + len;
                    out.push_str(std::str::from_utf8(&self.s[st..self.i]).unwrap());
                }
            }
        }
    }
}

// ---------------------------------------------------------------- safetensors

struct Tensor {
    dtype: String,
    shape: Vec<usize>,
    data: Vec<f64>,
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let e = i32::from((h >> 10) & 0x1f);
    let m = f64::from(h & 0x3ff);
    sign * match e {
        0 => m * 2f64.powi(-24),
        31 if m == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + m / 1024.0) * 2f64.powi(e - 15),
    }
}

fn load_safetensors(path: &Path) -> BTreeMap<String, Tensor> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header = Parser::parse(std::str::from_utf8(&b[8..8 + n]).unwrap());
    let body = &b[8 + n..];
    let mut out = BTreeMap::new();
    for (name, info) in header.obj() {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info.get("dtype").unwrap().str().to_string();
        let shape: Vec<usize> = info
            .get("shape")
            .unwrap()
            .arr()
            .iter()
            .map(Json::usize)
            .collect();
        let offs = info.get("data_offsets").unwrap().arr();
        let raw = &body[offs[0].usize()..offs[1].usize()];
        let data: Vec<f64> = match dtype.as_str() {
            "F32" => raw
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
            "F64" => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            "F16" => raw
                .chunks_exact(2)
                .map(|c| f16_to_f64(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            "BF16" => raw
                .chunks_exact(2)
                .map(|c| {
                    f64::from(f32::from_bits(
                        u32::from(u16::from_le_bytes([c[0], c[1]])) << 16,
                    ))
                })
                .collect(),
            "I64" => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("unsupported dtype {other}"),
        };
        assert_eq!(data.len(), shape.iter().product::<usize>(), "{name}");
        out.insert(name.clone(), Tensor { dtype, shape, data });
    }
    out
}

// ---------------------------------------------------------------- kwargs → RefConfig

fn flag(kw: &BTreeMap<String, Json>, k: &str) -> bool {
    matches!(kw.get(k), Some(Json::Bool(true)))
}

/// Resolves x-transformers kwargs as the spec describes (§3.1, §3.4, §3.6, §3.9); panics on any
/// kwarg it does not know, so a fixture using an unsupported option fails loudly.
fn resolve(decoder: &Json, wrapper: &Json) -> RefConfig {
    let kw = decoder.obj();
    const KNOWN: &[&str] = &[
        "dim",
        "depth",
        "heads",
        "attn_dim_head",
        "attn_kv_heads",
        "attn_one_kv_head",
        "cross_attend",
        "cross_attn_dim_context",
        "rotary_pos_emb",
        "rotary_emb_dim",
        "rotary_base_rescale_factor",
        "rotary_interpolation_factor",
        "use_rmsnorm",
        "use_simple_rmsnorm",
        "ff_mult",
        "ff_glu",
        "ff_swish",
        "ff_relu_squared",
        "ff_no_bias",
        "attn_flash",          // kernel choice only (§3.10)
        "disable_abs_pos_emb", // read by a TransformerWrapper only (checked below)
        "use_scalenorm",
        "pre_norm",
        "pre_norm_has_final_norm",
        "sandwich_norm",
        "softclamp_output",
        "softclamp_output_value",
        "scale_residual",
        "scale_residual_constant",
        "attn_head_scale",
        "attn_gate_values",
        "ff_softclamp_value",
        "attn_qk_norm",
        "attn_qk_norm_groups",
        "attn_qk_norm_scale",
        "attn_qk_norm_dim_scale",
        "norm_add_unit_offset",
        "ff_glu_mult_bias",
        "ff_post_act_ln",
        "use_layerscale",
        "layerscale_init_value",
        "gate_residual",
        "macaron",
        "attn_value_rmsnorm",
        "alibi_pos_bias",
        "alibi_num_heads",
        "attn_max_attend_past",
        "attn_num_mem_kv",
        "attn_add_zero_kv",
        "attn_softclamp_logits",
        "attn_logit_softclamp_value",
        "rotary_xpos",
        "rotary_xpos_scale_base",
        "weight_tie_layers",
        "add_value_residual",
        "learned_value_residual_mix",
        "custom_layers",
        "par_ratio",
        "sandwich_coef",
        "layers_execute_order",
        "residual_attn",
        "cross_residual_attn",
    ];
    for k in kw.keys() {
        assert!(
            KNOWN.contains(&k.as_str()),
            "decoder kwarg `{k}` not supported by the reference"
        );
    }
    let num = |k: &str, d: f64| kw.get(k).map_or(d, Json::num);
    let dim = kw["dim"].usize();
    let heads = num("heads", 8.0) as usize; // §3.1: default 8
    let dh = num("attn_dim_head", 64.0) as usize; // §3.1: default 64
    let kv = if flag(kw, "attn_one_kv_head") {
        1
    } else {
        num("attn_kv_heads", heads as f64) as usize
    };
    let rotary = flag(kw, "rotary_pos_emb");
    // x_transformers.py AttentionLayers: pre_norm and pre_norm_has_final_norm default True,
    // softclamp_output_value 30.
    let on = |k: &str, d: bool| kw.get(k).map_or(d, |v| matches!(v, Json::Bool(true)));
    let extras = RefExtras {
        pre_norm: on("pre_norm", true),
        final_norm: on("pre_norm_has_final_norm", true),
        sandwich: flag(kw, "sandwich_norm"),
        softclamp_output: flag(kw, "softclamp_output").then(|| num("softclamp_output_value", 30.0)),
        scale_residual: flag(kw, "scale_residual"),
        // Python arithmetic: False is 0.
        scale_residual_constant: match kw.get("scale_residual_constant") {
            Some(Json::Bool(b)) => f64::from(u8::from(*b)),
            _ => num("scale_residual_constant", 1.0),
        },
        head_scale: flag(kw, "attn_head_scale"),
        gate_values: flag(kw, "attn_gate_values"),
        ff_softclamp: kw.get("ff_softclamp_value").map(Json::num),
        unit_offset: on("norm_add_unit_offset", true),
        glu_mult_bias: flag(kw, "ff_glu") && flag(kw, "ff_glu_mult_bias"),
        ff_post_act_ln: flag(kw, "ff_post_act_ln"),
        layerscale: flag(kw, "use_layerscale"),
        gate_residual: flag(kw, "gate_residual"),
        macaron: flag(kw, "macaron"),
        value_rmsnorm: flag(kw, "attn_value_rmsnorm"),
        alibi_heads: if flag(kw, "alibi_pos_bias") {
            num("alibi_num_heads", heads as f64) as usize
        } else {
            0
        },
        max_attend_past: kw
            .get("attn_max_attend_past")
            .filter(|v| !matches!(v, Json::Null))
            .map(|v| v.num() as usize),
        mem_kv: num("attn_num_mem_kv", 0.0) as usize,
        zero_kv: flag(kw, "attn_add_zero_kv"),
        logit_softclamp: flag(kw, "attn_softclamp_logits")
            .then(|| num("attn_logit_softclamp_value", 50.0)),
        weight_tie: flag(kw, "weight_tie_layers"),
        value_residual: flag(kw, "add_value_residual")
            .then(|| on("learned_value_residual_mix", true)),
        xpos: (flag(kw, "rotary_xpos") && rotary)
            .then(|| num("rotary_xpos_scale_base", 512.0) as usize),
        // custom_layers: a string of letters or a list of one-letter strings.
        custom_layers: kw.get("custom_layers").and_then(|v| match v {
            Json::Str(t) => Some(t.clone()),
            Json::Arr(a) => Some(
                a.iter()
                    .map(|e| match e {
                        Json::Str(t) => t.clone(),
                        _ => panic!("custom_layers: letters"),
                    })
                    .collect(),
            ),
            _ => None,
        }),
        residual_attn: flag(kw, "residual_attn"),
        cross_residual_attn: flag(kw, "cross_residual_attn"),
        par_ratio: kw
            .get("par_ratio")
            .filter(|v| !matches!(v, Json::Null))
            .map(Json::usize),
        sandwich_coef: kw
            .get("sandwich_coef")
            .filter(|v| !matches!(v, Json::Null))
            .map(Json::usize),
        execute_order: kw.get("layers_execute_order").and_then(|v| match v {
            Json::Arr(a) => Some(a.iter().map(Json::usize).collect()),
            _ => None,
        }),
        qk_norm: flag(kw, "attn_qk_norm").then(|| {
            (
                num("attn_qk_norm_groups", 1.0) as usize,
                num("attn_qk_norm_scale", 10.0),
                flag(kw, "attn_qk_norm_dim_scale"),
            )
        }),
    };
    let norm = if flag(kw, "use_scalenorm") {
        RefNorm::ScaleNorm
    } else if flag(kw, "use_rmsnorm") {
        RefNorm::RmsNorm
    } else if flag(kw, "use_simple_rmsnorm") {
        RefNorm::SimpleRmsNorm
    } else {
        RefNorm::LayerNorm
    };
    // ReLU² wins over SiLU (`FeedForward`: `elif relu_squared` comes before `elif swish`).
    let act = if flag(kw, "ff_relu_squared") {
        RefAct::ReluSquared
    } else if flag(kw, "ff_swish") {
        RefAct::Silu
    } else {
        RefAct::Gelu
    };
    let wrapper = match wrapper {
        Json::Null => None,
        w => {
            let wk = w.obj();
            for k in wk.keys() {
                assert!(
                    [
                        "num_tokens",
                        "max_seq_len",
                        "tie_embedding",
                        "tie_embedding_scale",
                        "post_emb_norm",
                        "l2norm_embed",
                        "emb_dim",
                        "logits_dim",
                        "scaled_sinu_pos_emb",
                        "num_memory_tokens",
                        "use_abs_pos_emb"
                    ]
                    .contains(&k.as_str()),
                    "wrapper kwarg `{k}` not supported by the reference"
                );
            }
            let max_seq_len = wk["max_seq_len"].usize();
            let use_abs = !matches!(wk.get("use_abs_pos_emb"), Some(Json::Bool(false)));
            let num_tokens = wk["num_tokens"].usize();
            // `default(emb_dim, dim)`, `default(logits_dim, num_tokens)` (None is null)
            let or = |k: &str, d: usize| match wk.get(k) {
                None | Some(Json::Null) => d,
                Some(v) => v.usize(),
            };
            Some(RefWrapper {
                num_tokens,
                max_seq_len,
                // §3.9: `disable_abs_pos_emb` defaults to "rotary is on".
                abs_pos_emb: use_abs
                    && max_seq_len > 0
                    && !kw
                        .get("disable_abs_pos_emb")
                        .and_then(|v| match v {
                            Json::Bool(b) => Some(*b),
                            _ => None,
                        })
                        .unwrap_or(rotary),
                tie_embedding: flag(wk, "tie_embedding"),
                // Python arithmetic: False is 0.
                tie_embedding_scale: match wk.get("tie_embedding_scale") {
                    Some(Json::Bool(b)) => Some(f64::from(u8::from(*b))),
                    Some(Json::Num(x)) => Some(*x),
                    _ => None,
                },
                post_emb_norm: flag(wk, "post_emb_norm"),
                l2norm_embed: flag(wk, "l2norm_embed"),
                emb_dim: or("emb_dim", dim),
                logits_dim: or("logits_dim", num_tokens),
                scaled_sinu: flag(wk, "scaled_sinu_pos_emb"),
                num_memory_tokens: or("num_memory_tokens", 0),
            })
        }
    };
    RefConfig {
        dim,
        // x-transformers does not read `depth` with `custom_layers` (it may be absent).
        depth: kw
            .get("depth")
            .filter(|v| !matches!(v, Json::Null))
            .map_or(0, Json::usize),
        heads,
        attn_dim_head: dh,
        attn_kv_heads: kv,
        cross_attend: flag(kw, "cross_attend"),
        dim_context: num("cross_attn_dim_context", dim as f64) as usize,
        rotary_pos_emb: rotary,
        rotary_emb_dim: num("rotary_emb_dim", (dh / 2) as f64) as usize, // §3.1: default d/2
        rotary_base_rescale_factor: num("rotary_base_rescale_factor", 1.0),
        rotary_interpolation_factor: num("rotary_interpolation_factor", 1.0),
        norm,
        extras,
        ff_inner: (dim as f64 * num("ff_mult", 4.0)) as usize, // int(dim * ff_mult)
        ff_glu: flag(kw, "ff_glu"),
        act,
        ff_no_bias: flag(kw, "ff_no_bias"),
        wrapper,
    }
}

// ---------------------------------------------------------------- the comparison

fn fixture_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PICOFORMER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    dir.join("manifest.json").exists().then_some(dir)
}

#[test]
fn reference_matches_x_transformers_fixtures() {
    let Some(dir) = fixture_dir() else {
        eprintln!("no fixtures (tests/fixtures or $PICOFORMER_FIXTURES): skipped");
        return;
    };
    let manifest = Parser::parse(&std::fs::read_to_string(dir.join("manifest.json")).unwrap());
    let fixtures = manifest.get("fixtures").unwrap().arr();
    assert!(!fixtures.is_empty());
    for fx in fixtures {
        let name = fx.get("name").unwrap().str();
        let kwargs = fx.get("kwargs").unwrap();
        let cfg = resolve(
            kwargs.get("decoder").unwrap(),
            kwargs.get("wrapper").unwrap(),
        );
        let model = load_safetensors(&dir.join(fx.get("model_file").unwrap().str()));
        let io = load_safetensors(&dir.join(fx.get("io_file").unwrap().str()));

        // 1. state_dict layout: exactly our keys and shapes
        let ours: BTreeMap<String, Vec<usize>> = param_shapes(&cfg).into_iter().collect();
        let theirs: BTreeMap<String, Vec<usize>> = model
            .iter()
            .map(|(k, t)| (k.clone(), t.shape.clone()))
            .collect();
        assert_eq!(
            ours, theirs,
            "{name}: param_shapes differs from the torch state_dict"
        );
        let w: RefWeights = model
            .iter()
            .map(|(k, t)| (k.clone(), t.data.clone()))
            .collect();

        // 2. the stored inv_freq (torch's f32 pow) against our f32 formula
        let mut inv_exact = 0;
        if cfg.rotary_pos_emb {
            let key = if cfg.wrapper.is_some() {
                "attn_layers.rotary_pos_emb.inv_freq"
            } else {
                "rotary_pos_emb.inv_freq"
            };
            let stored = &model[key];
            assert_eq!(stored.dtype, "F32");
            let ours = rotary_inv_freq(cfg.rotary_emb_dim, cfg.rotary_base_rescale_factor);
            for (s, o) in stored.data.iter().zip(&ours) {
                let s = *s as f32;
                assert!(
                    (s - o).abs() <= f32::EPSILON * s,
                    "{name}: inv_freq {s} vs {o}"
                );
                inv_exact += usize::from(s.to_bits() == o.to_bits());
            }
        }

        // 2b. the sinusoids' stored inv_freq (torch's f32 pow, which the exporter adds) against
        // the formula: within 1 f32 ulp (torch's pow is not correctly rounded everywhere)
        let mut sinu_exact = (0, 0);
        if let Some(stored) = model.get("pos_emb.inv_freq") {
            assert_eq!(stored.dtype, "F32");
            let ours = sinusoid_inv_freq(stored.data.len());
            for (s, o) in stored.data.iter().zip(&ours) {
                let (s, o) = (*s as f32, *o as f32);
                assert!(
                    (s.to_bits() as i64 - o.to_bits() as i64).abs() <= 1,
                    "{name}: sinusoid inv_freq {s} vs {o}"
                );
                sinu_exact.0 += usize::from(s.to_bits() == o.to_bits());
                sinu_exact.1 += 1;
            }
            eprintln!(
                "{name}: sinusoid inv_freq bit-exact {}/{}",
                sinu_exact.0, sinu_exact.1
            );
        }

        // 3. outputs, one batch element at a time
        let full = &io["full"];
        let step = &io["stepwise"];
        let (b, n, out_w) = (full.shape[0], full.shape[1], full.shape[2]);
        let ctx = io.get("context");
        let mut err_full: f64 = 0.0;
        let mut err_step: f64 = 0.0;
        let mut mag: f64 = 0.0;
        for bi in 0..b {
            let c = ctx.map(|c| {
                let per = c.shape[1] * c.shape[2];
                &c.data[bi * per..(bi + 1) * per]
            });
            let y = if cfg.wrapper.is_some() {
                let t = &io["tokens"];
                let toks: Vec<usize> = t.data[bi * n..(bi + 1) * n]
                    .iter()
                    .map(|v| *v as usize)
                    .collect();
                wrapper_forward(&cfg, &w, &toks, c)
            } else {
                let x = &io["x"];
                let per = n * cfg.dim;
                decoder_forward(&cfg, &w, &x.data[bi * per..(bi + 1) * per], c)
            };
            let per = n * out_w;
            assert_eq!(y.len(), per);
            for (i, v) in y.iter().enumerate() {
                err_full = err_full.max((v - full.data[bi * per + i]).abs());
                err_step = err_step.max((v - step.data[bi * per + i]).abs());
                mag = mag.max(v.abs());
            }
        }
        eprintln!(
            "{name:12} ({:8}) max|ref-full| {err_full:.2e}  max|ref-stepwise| {err_step:.2e}  max|y| {mag:.2}  inv_freq bit-exact {inv_exact}/{}",
            fx.get("dtype").unwrap().str(),
            cfg.rotary_emb_dim / 2 * usize::from(cfg.rotary_pos_emb),
        );
        // torch runs in float32 (also for the f16/bf16 fixtures, whose weights are pre-rounded and
        // stored rounded, so the reference reads the same values). The spec expects a correct f32
        // port within ~1e-5 of the fixtures (§3.10); the f64 reference measures 0.4e-6 to 2.8e-6.
        let tol = 1e-5;
        assert!(
            err_full <= tol,
            "{name}: reference vs torch full {err_full:e} > {tol:e}"
        );
        assert!(
            err_step <= tol,
            "{name}: reference vs torch stepwise {err_step:e} > {tol:e}"
        );
    }
}
