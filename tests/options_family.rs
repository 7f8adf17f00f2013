//! The arguments of the rest of the family, by the one rule of `picoformer::options` (as
//! `tests/options.rs` checks the `Decoder`'s and the `TransformerWrapper`'s): every argument of
//! x-transformers' `ContinuousTransformerWrapper` and `XTransformer` (groups `continuous` and
//! `xtransformer` of the generated table), and every `Decoder` argument given to an
//! `XTransformer`'s encoder or decoder as `enc_<x>` / `dec_<x>`. Set to its default, each loads
//! with the same numbers as a file without it; set to another value, it is computed (the loaded
//! configuration and numbers are those of the configuration built directly) or refused with an
//! error naming it and its value. Also: which file kinds each loader refuses, and the metadata's
//! shapes.

mod common;
mod reference;

use std::collections::BTreeMap;

use common::*;
use picoformer::options::{Arg, Class, Group, PyDefault, Table as ArgTable, ARGS};
use picoformer::{
    ContinuousConfig, ContinuousModel, ContinuousTransformerWrapper, DecoderConfig, EncoderModel,
    KvCache, LoadError, Masks, Model, Scratch, WrapperConfig, XTransformer,
};

// ------------------------------------------------------------------ files

/// Deterministic small values.
fn wave(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i + 7 * seed) as f32 * 0.731).sin() * 0.3)
        .collect()
}

/// The reference's random weights of `cfg` (in `wcfg`), keys prefixed with `prefix`.
fn layer_tensors(cfg: &DecoderConfig, wcfg: Option<&WrapperConfig>, prefix: &str) -> Table {
    let rc = ref_config(cfg, wcfg);
    let mut w = reference::random_weights(&rc, 7);
    let table = Table::from_ref(&rc, &mut w);
    Table {
        tensors: table
            .tensors
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect(),
    }
}

fn continuous_tensors(c: &ContinuousConfig) -> Table {
    let mut t = layer_tensors(&c.attn_layers, None, "attn_layers.");
    let d = c.attn_layers.dim;
    let mut add = |name: &str, shape: Vec<usize>| {
        let seed = t.tensors.len();
        t.tensors
            .insert(name.into(), (wave(shape.iter().product(), seed), shape));
    };
    if let Some(i) = c.dim_in {
        add("project_in.weight", vec![d, i]);
    }
    if let Some(o) = c.dim_out {
        add("project_out.weight", vec![o, d]);
    }
    if c.has_abs_pos_emb() {
        add("pos_emb.emb.weight", vec![c.max_seq_len, d]);
    }
    if c.post_emb_norm {
        add("post_emb_norm.gamma", vec![d]);
    }
    if c.num_memory_tokens > 0 {
        add("memory_tokens", vec![c.num_memory_tokens, d]);
    }
    t
}

fn xt_tensors(enc: &WrapperConfig, dec: &WrapperConfig) -> Table {
    let mut t = layer_tensors(&enc.attn_layers, Some(&enc.tie_embedding(true)), "encoder.");
    t.tensors.extend(
        layer_tensors(&dec.attn_layers, Some(dec), "decoder.net.")
            .tensors
            .into_iter()
            .map(|(k, (v, s))| (k, (v.iter().map(|x| x * 0.9 + 0.01).collect(), s))),
    );
    t
}

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A safetensors file of `table` with the metadata `x_transformers` = `meta`.
fn file_of(meta: &str, table: &Table) -> (Vec<u64>, usize) {
    let mut names: Vec<&String> = table.tensors.keys().collect();
    names.sort();
    let mut entries = vec![format!(
        "\"__metadata__\":{{\"x_transformers\":{}}}",
        json_str(meta)
    )];
    let mut data: Vec<u8> = Vec::new();
    for name in names {
        let (v, shape) = &table.tensors[name];
        let start = data.len();
        for x in v {
            data.extend_from_slice(&x.to_le_bytes());
        }
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        entries.push(format!(
            "\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{start},{}]}}",
            dims.join(","),
            data.len()
        ));
    }
    let mut header = format!("{{{}}}", entries.join(",")).into_bytes();
    while !(8 + header.len()).is_multiple_of(8) {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    (words, bytes.len())
}

fn bytes(f: &(Vec<u64>, usize)) -> &[u8] {
    &bytemuck::cast_slice::<u64, u8>(&f.0)[..f.1]
}

fn object(kv: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    format!("{{{}}}", items.join(", "))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The default as JSON, or `None` if no JSON value equals it.
fn default_json(d: &PyDefault) -> Option<String> {
    Some(match d {
        PyDefault::None => "null".into(),
        PyDefault::Bool(b) => b.to_string(),
        PyDefault::Int(i) => i.to_string(),
        PyDefault::Float(x) => format!("{x:?}"),
        PyDefault::Str(s) => format!("\"{s}\""),
        PyDefault::EmptyDict => "{}".into(),
        PyDefault::Required | PyDefault::Other(_) => return None,
    })
}

/// A value other than the default.
fn other_value(d: &PyDefault) -> String {
    match d {
        PyDefault::None => "1".into(),
        PyDefault::Bool(b) => (!b).to_string(),
        PyDefault::Int(i) => (i + 1).to_string(),
        PyDefault::Float(x) => format!("{:?}", x + 0.5),
        PyDefault::Str(_) => "\"picoformer\"".into(),
        PyDefault::EmptyDict => "{\"a\": 1}".into(),
        PyDefault::Other(_) => "{\"enable_flash\": false}".into(),
        PyDefault::Required => unreachable!(),
    }
}

/// Asserts `r` is the refusal of `option` = `value` (as written inside the metadata's string).
fn assert_refused<T>(r: Result<T, LoadError<'_>>, option: &str, value: &str) {
    match r {
        Err(
            e @ LoadError::UnsupportedOption {
                option: o,
                value: v,
                ..
            },
        ) => {
            assert_eq!((o, v), (option, value.replace('"', "\\\"").as_str()));
            assert!(
                e.to_string()
                    .starts_with(&format!("unsupported x-transformers option '{option}' = ")),
                "{e}"
            );
        }
        Err(e) => panic!("{option} = {value}: refused with the wrong error {e:?}"),
        Ok(_) => panic!("{option} = {value}: accepted"),
    }
}

// ------------------------------------------------------------------ ContinuousTransformerWrapper

/// `{"encoder" | "decoder": {"dim": 16, "depth": 1}, "continuous_wrapper": {...}}`.
struct CBase {
    wrap: BTreeMap<String, String>,
    cfg: ContinuousConfig,
    encoder: bool,
}

impl CBase {
    fn new(encoder: bool) -> Self {
        CBase {
            wrap: BTreeMap::new(),
            cfg: ContinuousConfig::new(0, DecoderConfig::new(16, 1)),
            encoder,
        }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.wrap.insert(name.into(), value.into());
        self
    }

    fn meta(&self) -> String {
        format!(
            "{{\"{}\": {{\"dim\": 16, \"depth\": 1}}, \"continuous_wrapper\": {}}}",
            if self.encoder { "encoder" } else { "decoder" },
            object(&self.wrap)
        )
    }

    /// The file with the weights of `self.cfg`, loaded; its outputs.
    fn load<R>(
        &self,
        check: impl FnOnce(Result<(ContinuousModel<'_>, Vec<f32>), LoadError<'_>>) -> R,
    ) -> R {
        let f = file_of(&self.meta(), &continuous_tensors(&self.cfg));
        check(ContinuousModel::from_safetensors(bytes(&f)).map(|m| {
            let y = run_continuous(&m);
            (m, y)
        }))
    }
}

/// Three frames through the wrapper.
fn run_continuous(m: &ContinuousModel) -> Vec<f32> {
    let c = *m.config();
    let lc = &c.attn_layers;
    let n = 3;
    let x: Vec<f32> = (0..n * c.input_width())
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let positions = c.cache_positions(n);
    let mut kv = vec![f32::NAN; KvCache::<f32>::elements(lc, positions)];
    let mut sb = vec![f32::NAN; Scratch::elements(lc, positions)];
    let mut cache = KvCache::new(lc, positions, &mut kv).unwrap();
    let mut scratch = Scratch::new(lc, positions, &mut sb).unwrap();
    let wo = c.output_width();
    match m {
        ContinuousModel::Encoder(w) => {
            let rows = if c.average_pool_embed { 1 } else { n };
            let mut y = vec![f32::NAN; rows * wo];
            let mask = [true, true, false];
            w.encode(
                &mut cache,
                &mut scratch,
                &x,
                None,
                Masks::mask(&mask),
                &mut y,
            )
            .unwrap();
            y
        }
        ContinuousModel::Decoder(w) => {
            // In one call: the product of a single position by the weights groups its sums by
            // their address (`kernels::simd::gemv`), which differs from file to file.
            let mut y = vec![f32::NAN; n * wo];
            w.forward(&mut cache, &mut scratch, &x, None, Masks::NONE, &mut y)
                .unwrap();
            y
        }
    }
}

fn continuous_outputs(b: &CBase) -> Vec<f32> {
    b.load(|r| r.unwrap_or_else(|e| panic!("{}: {e}", b.meta())).1)
}

/// A supported argument's test value and what it does to the configuration (`None`: refused).
type CApply = Option<fn(&mut ContinuousConfig)>;

fn continuous_case(name: &str) -> (&'static str, CApply) {
    match name {
        "max_seq_len" => ("8", Some(|c| c.max_seq_len = 8)),
        "dim_in" => ("5", Some(|c| c.dim_in = Some(5))),
        "dim_out" => ("3", Some(|c| c.dim_out = Some(3))),
        "post_emb_norm" => ("true", Some(|c| c.post_emb_norm = true)),
        // Without max_seq_len there are no positions either way: the field changes, not the numbers.
        "use_abs_pos_emb" => ("false", Some(|c| c.use_abs_pos_emb = false)),
        "average_pool_embed" => ("true", Some(|c| c.average_pool_embed = true)),
        // Without dim_in / dim_out there is no projection to drop.
        "use_identity_if_same_dim" => ("true", Some(|_| {})),
        "num_memory_tokens" => ("2", Some(|c| c.num_memory_tokens = 2)),
        other => panic!("supported argument `{other}` has no test case here: add one"),
    }
}

fn continuous_args() -> impl Iterator<Item = &'static Arg> {
    ARGS.iter().filter(|a| a.group == Group::Continuous)
}

#[test]
fn continuous_arguments_at_their_default_change_nothing() {
    for encoder in [true, false] {
        let plain = continuous_outputs(&CBase::new(encoder));
        let mut checked = 0;
        for arg in continuous_args() {
            let Some(value) = default_json(&arg.default) else {
                continue;
            };
            let b = CBase::new(encoder).with(arg.name, &value);
            assert!(continuous_outputs(&b) == plain, "{}", b.meta());
            checked += 1;
        }
        assert!(checked >= 13, "{checked}");
    }
}

#[test]
fn continuous_arguments_at_another_value_are_computed_or_refused_by_name() {
    let plain = continuous_outputs(&CBase::new(true));
    let (mut computed, mut no_effect, mut refused) = (0, 0, 0);
    for arg in continuous_args() {
        let (value, apply) = match arg.class() {
            Class::Supported => {
                let (v, a) = continuous_case(arg.name);
                (v.to_string(), a.map(Some))
            }
            Class::NoEffect(_) => (other_value(&arg.default), Some(None)),
            Class::Refused(_) => (other_value(&arg.default), None),
        };
        let mut b = CBase::new(true).with(arg.name, &value);
        match apply {
            Some(Some(f)) => {
                f(&mut b.cfg);
                let direct = {
                    let t = continuous_tensors(&b.cfg);
                    let w: ContinuousTransformerWrapper =
                        ContinuousTransformerWrapper::from_source(b.cfg, &&t).unwrap();
                    let y = run_continuous(&ContinuousModel::Encoder(w));
                    y
                };
                b.load(|r| {
                    let (m, y) = r.unwrap_or_else(|e| panic!("{} = {value}: {e}", arg.name));
                    assert_eq!(*m.config(), b.cfg, "{}", arg.name);
                    assert!(m.is_encoder());
                    assert!(y == direct, "{} = {value}: numbers differ", arg.name);
                });
                computed += 1;
            }
            Some(None) => {
                assert!(continuous_outputs(&b) == plain, "{}", arg.name);
                no_effect += 1;
            }
            None => {
                b.load(|r| assert_refused(r.map(|_| ()), arg.name, &value));
                refused += 1;
            }
        }
    }
    println!("continuous: {computed} computed, {no_effect} without effect, {refused} refused");
    assert_eq!(computed + no_effect + refused, 14);
}

/// What a continuous wrapper's arguments do together, and what is refused beyond the table.
#[test]
fn continuous_arguments_together() {
    // Everything computed at once, around an Encoder and around a Decoder (streamed).
    for encoder in [true, false] {
        let mut b = CBase::new(encoder)
            .with("dim_in", "5")
            .with("dim_out", "3")
            .with("max_seq_len", "4")
            .with("post_emb_norm", "true")
            .with("emb_dropout", "0.1");
        b.cfg.dim_in = Some(5);
        b.cfg.dim_out = Some(3);
        b.cfg.max_seq_len = 4;
        b.cfg.post_emb_norm = true;
        let t = continuous_tensors(&b.cfg);
        let w: ContinuousTransformerWrapper =
            ContinuousTransformerWrapper::from_source(b.cfg, &&t).unwrap();
        let direct = run_continuous(&if encoder {
            ContinuousModel::Encoder(w)
        } else {
            ContinuousModel::Decoder(w)
        });
        b.load(|r| {
            let (m, y) = r.unwrap();
            assert_eq!((m.is_encoder(), *m.config()), (encoder, b.cfg));
            assert!(y == direct);
        });
    }
    // use_identity_if_same_dim: projections of width `dim` are dropped (no weights stored).
    let mut b = CBase::new(true)
        .with("dim_in", "16")
        .with("dim_out", "3")
        .with("use_identity_if_same_dim", "true");
    b.cfg.dim_out = Some(3);
    b.load(|r| assert_eq!(*r.unwrap().0.config(), b.cfg));
    // ... and kept without it (the file then needs them: here it lacks project_in).
    let b = CBase::new(true).with("dim_in", "16");
    b.load(|r| {
        assert!(
            matches!(
                r,
                Err(LoadError::Model(picoformer::Error::MissingWeight(_)))
            ),
            "{:?}",
            r.err()
        )
    });
    // Pooling a Decoder's outputs: refused by name.
    let b = CBase::new(false).with("average_pool_embed", "true");
    b.load(|r| assert_refused(r.map(|_| ()), "average_pool_embed", "true"));
    // Widths of zero: typed configuration errors.
    let mut b = CBase::new(true).with("dim_in", "0");
    b.cfg.dim_in = Some(0);
    b.load(|r| {
        assert_eq!(
            r.err(),
            Some(LoadError::Model(picoformer::Error::Config(
                picoformer::ConfigError::Zero("dim_in")
            )))
        )
    });
    // A value of the wrong type.
    let b = CBase::new(true).with("dim_out", "\"six\"");
    b.load(|r| {
        assert!(
            matches!(
                r,
                Err(LoadError::InvalidOption {
                    option: "dim_out",
                    ..
                })
            ),
            "{:?}",
            r.err()
        )
    });
    // Arguments of other classes are no arguments of this one.
    for (name, value) in [
        ("num_tokens", "11"),
        ("heads", "2"),
        ("tie_embedding", "true"),
    ] {
        let b = CBase::new(true).with(name, value);
        b.load(|r| assert_refused(r.map(|_| ()), name, value));
    }
    // `causal` in an Encoder's arguments: x-transformers' Encoder asserts it is absent.
    let f = file_of(
        "{\"encoder\": {\"dim\": 16, \"depth\": 1, \"causal\": false}, \"continuous_wrapper\": {}}",
        &continuous_tensors(&CBase::new(true).cfg),
    );
    assert_refused(
        ContinuousModel::<16>::from_safetensors(bytes(&f)),
        "causal",
        "false",
    );
}

// ------------------------------------------------------------------ XTransformer

/// `{"xtransformer": {"dim": 16, "enc_num_tokens": 11, "enc_max_seq_len": 8, "enc_depth": 1,
/// "dec_num_tokens": 13, "dec_max_seq_len": 8, "dec_depth": 1, ...}}`.
struct XBase {
    obj: BTreeMap<String, String>,
    enc: WrapperConfig,
    dec: WrapperConfig,
}

impl XBase {
    fn new() -> Self {
        XBase {
            obj: map(&[
                ("dim", "16"),
                ("enc_num_tokens", "11"),
                ("enc_max_seq_len", "8"),
                ("enc_depth", "1"),
                ("dec_num_tokens", "13"),
                ("dec_max_seq_len", "8"),
                ("dec_depth", "1"),
            ]),
            enc: WrapperConfig::new(11, 8, DecoderConfig::new(16, 1)).tie_embedding(true),
            dec: WrapperConfig::new(13, 8, DecoderConfig::new(16, 1).cross_attend(true)),
        }
    }

    fn with(mut self, name: &str, value: &str) -> Self {
        self.obj.insert(name.into(), value.into());
        self
    }

    fn meta(&self) -> String {
        format!("{{\"xtransformer\": {}}}", object(&self.obj))
    }

    fn load<R>(
        &self,
        check: impl FnOnce(Result<(XTransformer<'_>, Vec<f32>), LoadError<'_>>) -> R,
    ) -> R {
        let f = file_of(&self.meta(), &xt_tensors(&self.enc, &self.dec));
        check(XTransformer::from_safetensors(bytes(&f)).map(|m| {
            let y = run_xt(&m);
            (m, y)
        }))
    }

    /// The outputs of the configuration built directly, or its error.
    fn direct(&self) -> Result<Vec<f32>, picoformer::Error> {
        let t = xt_tensors(&self.enc, &self.dec);
        let xt: XTransformer = XTransformer::from_source(self.enc, self.dec, &&t)?;
        let y = run_xt(&xt);
        Ok(y)
    }
}

/// A padded source of 3, then the decoder's logits for 2 target tokens.
fn run_xt(xt: &XTransformer) -> Vec<f32> {
    let (e, d) = (
        xt.encoder().decoder().config(),
        xt.decoder().decoder().config(),
    );
    let (n, m, dim, v) = (3, 2, e.dim, xt.decoder().config().num_tokens);
    let src_mask = [true, true, false];
    let positions = xt.encoder().config().cache_positions(n);
    let mut ekv = vec![f32::NAN; KvCache::<f32>::elements(e, positions)];
    let mut esb = vec![f32::NAN; Scratch::elements(e, positions)];
    let mut ecache = KvCache::new(e, positions, &mut ekv).unwrap();
    let mut escratch = Scratch::new(e, positions, &mut esb).unwrap();
    let mut memory = vec![f32::NAN; n * dim];
    xt.encode(
        &mut ecache,
        &mut escratch,
        &[1, 2, 3],
        Some(&src_mask),
        &mut memory,
    )
    .unwrap();
    let mut dkv = vec![f32::NAN; KvCache::<f32>::elements(d, m)];
    let mut dkc = vec![f32::NAN; KvCache::<f32>::context_elements(d, n)];
    let mut dsb = vec![f32::NAN; Scratch::elements(d, m)];
    let mut cache = KvCache::with_context(d, m, &mut dkv, n, &mut dkc).unwrap();
    let mut scratch = Scratch::new(d, m, &mut dsb).unwrap();
    let mut logits = vec![f32::NAN; m * v];
    let masks = Masks {
        mask: None,
        context_mask: Some(&src_mask),
    };
    xt.decoder()
        .forward_masked(
            &mut cache,
            &mut scratch,
            &[1, 2],
            Some(&memory),
            masks,
            &mut logits,
        )
        .unwrap();
    memory.extend_from_slice(&logits);
    memory
}

fn xt_outputs(b: &XBase) -> Vec<f32> {
    b.load(|r| r.unwrap_or_else(|e| panic!("{}: {e}", b.meta())).1)
}

type XApply = Option<fn(&mut WrapperConfig, &mut WrapperConfig)>;

fn xt_case(name: &str) -> (&'static str, XApply) {
    match name {
        "enc_use_abs_pos_emb" => ("false", Some(|e, _| e.use_abs_pos_emb = false)),
        "dec_use_abs_pos_emb" => ("false", Some(|_, d| d.use_abs_pos_emb = false)),
        "enc_num_memory_tokens" => ("2", Some(|e, _| e.num_memory_tokens = 2)),
        // The base's vocabularies differ (11, 13): refused (equal ones: `xt_arguments_together`).
        "tie_token_emb" => ("true", None),
        other => panic!("supported argument `{other}` has no test case here: add one"),
    }
}

#[test]
fn xtransformer_arguments_at_their_default_change_nothing() {
    let plain = xt_outputs(&XBase::new());
    let mut checked = 0;
    for arg in ARGS.iter().filter(|a| a.group == Group::XTransformer) {
        let Some(value) = default_json(&arg.default) else {
            continue;
        };
        let b = XBase::new().with(arg.name, &value);
        assert!(xt_outputs(&b) == plain, "{}", b.meta());
        checked += 1;
    }
    assert_eq!(checked, 11);
}

#[test]
fn xtransformer_arguments_at_another_value_are_computed_or_refused_by_name() {
    let plain = xt_outputs(&XBase::new());
    let (mut computed, mut no_effect, mut refused) = (0, 0, 0);
    for arg in ARGS.iter().filter(|a| a.group == Group::XTransformer) {
        if arg.default == PyDefault::Required {
            // dim, enc_/dec_num_tokens, enc_/dec_max_seq_len: in every file; missing: below
            let mut b = XBase::new();
            b.obj.remove(arg.name);
            b.load(|r| assert_eq!(r.err(), Some(LoadError::MissingMetadata(arg.name))));
            continue;
        }
        let (value, apply) = match arg.class() {
            Class::Supported => {
                let (v, a) = xt_case(arg.name);
                (v.to_string(), a.map(Some))
            }
            Class::NoEffect(_) => (other_value(&arg.default), Some(None)),
            Class::Refused(_) => (other_value(&arg.default), None),
        };
        let mut b = XBase::new().with(arg.name, &value);
        match apply {
            Some(Some(f)) => {
                f(&mut b.enc, &mut b.dec);
                let direct = b.direct().unwrap();
                b.load(|r| {
                    let (m, y) = r.unwrap_or_else(|e| panic!("{} = {value}: {e}", arg.name));
                    assert_eq!(
                        (m.config().encoder, m.config().decoder),
                        (b.enc, b.dec),
                        "{}",
                        arg.name
                    );
                    assert!(y == direct, "{} = {value}: numbers differ", arg.name);
                });
                computed += 1;
            }
            Some(None) => {
                assert!(xt_outputs(&b) == plain, "{}", arg.name);
                no_effect += 1;
            }
            None => {
                b.load(|r| assert_refused(r.map(|_| ()), arg.name, &value));
                refused += 1;
            }
        }
    }
    println!("xtransformer: {computed} computed, {no_effect} without effect, {refused} refused");
    assert_eq!((computed, no_effect, refused), (3, 5, 3));
}

/// `enc_<x>` / `dec_<x>` of every `Decoder` argument: at its default the same numbers; another
/// value computed (as the configuration built directly, or the same typed error), without
/// effect, or refused naming the prefixed argument.
#[test]
fn xtransformer_layers_arguments_by_prefix() {
    let plain = xt_outputs(&XBase::new());
    let mut checked = 0;
    for arg in ARGS.iter().filter(|a| a.group.table() == ArgTable::Layers) {
        for (prefix, encoder) in [("enc_", true), ("dec_", false)] {
            let key = format!("{prefix}{}", arg.name);
            // What x-transformers fails on whatever the value: refused by name.
            let always_refused = matches!(arg.name, "dim" | "causal")
                || (!encoder && matches!(arg.name, "cross_attend"));
            if always_refused {
                let value = default_json(&arg.default).unwrap_or("16".into());
                XBase::new()
                    .with(&key, &value)
                    .load(|r| assert_refused(r.map(|_| ()), &key, &value));
                continue;
            }
            if let Some(value) = default_json(&arg.default) {
                if arg.name != "depth" {
                    let b = XBase::new().with(&key, &value);
                    assert!(xt_outputs(&b) == plain, "{}", b.meta());
                    checked += 1;
                }
            }
            if arg.default == PyDefault::Required {
                continue;
            }
            let value = other_value(&arg.default);
            match arg.class() {
                Class::NoEffect(_) => {
                    let b = XBase::new().with(&key, &value);
                    assert!(xt_outputs(&b) == plain, "{}", b.meta());
                }
                Class::Refused(_) => {
                    XBase::new()
                        .with(&key, &value)
                        .load(|r| assert_refused(r.map(|_| ()), &key, &value));
                }
                Class::Supported => {} // a selection below
            }
            checked += 1;
        }
    }
    assert!(checked > 500, "{checked}");

    // Supported arguments through the prefixes, computed as built directly.
    type Side = fn(&mut DecoderConfig);
    let cases: &[(&str, &str, Side)] = &[
        ("heads", "2", |c| c.heads = 2),
        ("attn_dim_head", "8", |c| c.attn_dim_head = 8),
        ("attn_kv_heads", "2", |c| c.attn_kv_heads = Some(2)),
        ("rotary_pos_emb", "true", |c| c.rotary_pos_emb = true),
        ("ff_glu", "true", |c| c.ff_glu = true),
        ("use_rmsnorm", "true", |c| c.use_rmsnorm = true),
        ("depth", "2", |c| c.depth = 2),
        ("attn_qk_norm", "true", |c| c.attn_qk_norm = true),
        ("alibi_pos_bias", "true", |c| c.alibi_pos_bias = true),
    ];
    for &(name, value, f) in cases {
        for encoder in [true, false] {
            let prefix = if encoder { "enc_" } else { "dec_" };
            let mut b = XBase::new().with(&format!("{prefix}{name}"), value);
            f(if encoder {
                &mut b.enc.attn_layers
            } else {
                &mut b.dec.attn_layers
            });
            let direct = b.direct().unwrap();
            b.load(|r| {
                let (m, y) = r.unwrap_or_else(|e| panic!("{prefix}{name}: {e}"));
                assert_eq!((m.config().encoder, m.config().decoder), (b.enc, b.dec));
                assert!(y == direct, "{prefix}{name}");
            });
        }
    }
    // Configurations x-transformers rejects (or picoformer does not compute) in the decoder:
    // the same typed error as built directly.
    for (key, value, f) in [
        (
            "dec_add_value_residual",
            "true",
            (|c| c.add_value_residual = true) as Side,
        ),
        ("dec_attn_max_attend_past", "2", |c| {
            c.attn_max_attend_past = Some(2)
        }),
    ] {
        let mut b = XBase::new().with(key, value);
        f(&mut b.dec.attn_layers);
        let e = b.direct().unwrap_err();
        b.load(|r| assert_eq!(r.err(), Some(LoadError::Model(e))));
    }
}

/// `tie_token_emb`, the encoder's cross-attention, the decoder's context width, keys outside
/// every group.
#[test]
fn xtransformer_arguments_together() {
    // tie_token_emb with equal vocabularies: computed (the shared table stored under both keys).
    let mut b = XBase::new()
        .with("tie_token_emb", "true")
        .with("dec_num_tokens", "11");
    b.dec.num_tokens = 11;
    let t = {
        let mut t = xt_tensors(&b.enc, &b.dec);
        let shared = t.tensors["encoder.token_emb.emb.weight"].clone();
        t.tensors
            .insert("decoder.net.token_emb.emb.weight".into(), shared);
        t
    };
    let f = file_of(&b.meta(), &t);
    let xt: XTransformer = XTransformer::from_safetensors(bytes(&f)).unwrap();
    assert!(xt.config().tie_token_emb);
    let direct: XTransformer = XTransformer::from_source(b.enc, b.dec, &&t).unwrap();
    assert!(run_xt(&xt) == run_xt(&direct));
    // The encoder cross-attends: refused (x-transformers runs it without a context).
    let mut b = XBase::new().with("enc_cross_attend", "true");
    b.enc.attn_layers.cross_attend = true;
    b.load(|r| assert_refused(r.map(|_| ()), "enc_cross_attend", "true"));
    // The decoder's context is the encoder's output, `dim` wide.
    let b = XBase::new().with("dec_cross_attn_dim_context", "8");
    b.load(|r| assert_refused(r.map(|_| ()), "dec_cross_attn_dim_context", "8"));
    let b = XBase::new().with("dec_cross_attn_dim_context", "16");
    assert!(xt_outputs(&b) == xt_outputs(&XBase::new()));
    // An argument without a prefix that is not XTransformer's own (x-transformers drops it
    // silently), and a prefixed one that neither wrapper nor layers take.
    for (key, value) in [("heads", "4"), ("num_tokens", "11")] {
        XBase::new()
            .with(key, value)
            .load(|r| assert_refused(r.map(|_| ()), key, value));
    }
    XBase::new()
        .with("enc_tie_embedding", "true")
        .load(|r| assert_refused(r.map(|_| ()), "enc_tie_embedding", "true"));
    // The same key twice.
    let b = XBase::new();
    let meta = b
        .meta()
        .replace("\"dec_depth\": 1", "\"dec_depth\": 1, \"dec_depth\": 2");
    let f = file_of(&meta, &xt_tensors(&b.enc, &b.dec));
    assert_refused(
        XTransformer::<16>::from_safetensors(bytes(&f)),
        "dec_depth",
        "2",
    );
    // cross_attn_<x> of the decoder compared with its attn_<x>.
    let mut b = XBase::new()
        .with("dec_attn_kv_heads", "2")
        .with("dec_cross_attn_kv_heads", "2");
    b.dec.attn_layers.attn_kv_heads = Some(2);
    assert!(b.load(|r| r.is_ok()));
    XBase::new()
        .with("dec_cross_attn_kv_heads", "2")
        .load(|r| assert_refused(r.map(|_| ()), "dec_cross_attn_kv_heads", "2"));
}

// ------------------------------------------------------------------ file kinds

/// Every loader takes its own kind and refuses the others, naming the loader that takes them.
#[test]
fn each_loader_refuses_the_other_kinds_naming_the_right_one() {
    use picoformer::options::{model_kind, ModelKind};
    let dcfg = DecoderConfig::new(16, 1);
    let decoder = file_of(
        "{\"decoder\": {\"dim\": 16, \"depth\": 1}, \"wrapper\": null}",
        &layer_tensors(&dcfg, None, ""),
    );
    let encoder = file_of(
        "{\"encoder\": {\"dim\": 16, \"depth\": 1}, \"wrapper\": null}",
        &layer_tensors(&dcfg, None, ""),
    );
    let cb = CBase::new(false);
    let continuous = file_of(&cb.meta(), &continuous_tensors(&cb.cfg));
    let xb = XBase::new();
    let xt = file_of(&xb.meta(), &xt_tensors(&xb.enc, &xb.dec));
    let files = [
        (ModelKind::Decoder, &decoder),
        (ModelKind::Encoder, &encoder),
        (ModelKind::Continuous, &continuous),
        (ModelKind::XTransformer, &xt),
    ];
    for (kind, f) in files {
        let st = picoformer::safetensors::SafeTensors::parse(bytes(f)).unwrap();
        assert_eq!(model_kind(&st), Ok(kind));
        let results = [
            (
                ModelKind::Decoder,
                Model::<16>::from_safetensors(bytes(f)).err(),
            ),
            (
                ModelKind::Encoder,
                EncoderModel::<16>::from_safetensors(bytes(f)).err(),
            ),
            (
                ModelKind::Continuous,
                ContinuousModel::<16>::from_safetensors(bytes(f)).err(),
            ),
            (
                ModelKind::XTransformer,
                XTransformer::<16>::from_safetensors(bytes(f)).err(),
            ),
        ];
        for (loader, err) in results {
            if loader == kind {
                assert_eq!(err, None, "{kind:?}");
                continue;
            }
            let e = err.unwrap_or_else(|| panic!("{loader:?} loaded a {kind:?} file"));
            assert_eq!(e, kind.refusal());
            let shown = e.to_string();
            assert!(shown.contains(kind.loader()), "{shown}");
            assert!(shown.contains(&format!("'{}'", kind.entry())), "{shown}");
        }
    }
}

/// The metadata's shapes: entries that do not go together, unknown entries, a missing layers
/// entry, and an `xtransformer` that is not an object. Typed errors, whichever loader.
#[test]
fn metadata_shapes_are_checked() {
    let t = continuous_tensors(&CBase::new(true).cfg);
    let cases: &[(&str, &str)] = &[
        (
            "{\"decoder\": {\"dim\": 16, \"depth\": 1}, \"wrapper\": null, \"continuous_wrapper\": {}}",
            "continuous_wrapper",
        ),
        (
            "{\"xtransformer\": {\"dim\": 16}, \"decoder\": {\"dim\": 16, \"depth\": 1}}",
            "decoder",
        ),
        (
            "{\"decoder\": {\"dim\": 16, \"depth\": 1}, \"encoder\": {\"dim\": 16, \"depth\": 1}}",
            "encoder",
        ),
        ("{\"transformer\": {}}", "transformer"),
        (
            "{\"continuous_wrapper\": {}, \"continuous_wrapper\": {}, \"decoder\": {}}",
            "continuous_wrapper",
        ),
    ];
    for &(meta, option) in cases {
        let f = file_of(meta, &t);
        for e in [
            Model::<16>::from_safetensors(bytes(&f)).err(),
            ContinuousModel::<16>::from_safetensors(bytes(&f)).err(),
            XTransformer::<16>::from_safetensors(bytes(&f)).err(),
            EncoderModel::<16>::from_safetensors(bytes(&f)).err(),
        ] {
            assert!(
                matches!(e, Some(LoadError::UnsupportedOption { option: o, .. }) if o == option),
                "{meta}: {e:?}"
            );
        }
    }
    // No layers at all.
    let f = file_of("{\"continuous_wrapper\": {}}", &t);
    assert_eq!(
        ContinuousModel::<16>::from_safetensors(bytes(&f)).err(),
        Some(LoadError::MissingMetadata("decoder"))
    );
    // Not objects.
    for meta in [
        "{\"xtransformer\": [1]}",
        "{\"xtransformer\": null}",
        "{\"encoder\": {\"dim\": 16, \"depth\": 1}, \"continuous_wrapper\": 3}",
        "[]",
    ] {
        let f = file_of(meta, &t);
        let e = if meta.contains("xtransformer") {
            XTransformer::<16>::from_safetensors(bytes(&f)).err()
        } else {
            ContinuousModel::<16>::from_safetensors(bytes(&f)).err()
        };
        assert!(matches!(e, Some(LoadError::Metadata(_))), "{meta}: {e:?}");
    }
    // The tensors of another configuration: missing, unexpected, or of the wrong shape.
    let b = CBase::new(true).with("dim_in", "5");
    let f = file_of(&b.meta(), &t);
    assert!(matches!(
        ContinuousModel::<16>::from_safetensors(bytes(&f)),
        Err(LoadError::Model(picoformer::Error::MissingWeight(_)))
    ));
    let mut t2 = continuous_tensors(&CBase::new(true).cfg);
    t2.tensors
        .insert("project_out.weight".into(), (vec![0.0; 48], vec![3, 16]));
    let f = file_of(&CBase::new(true).meta(), &t2);
    assert_eq!(
        ContinuousModel::<16>::from_safetensors(bytes(&f)).err(),
        Some(LoadError::UnexpectedTensor("project_out.weight"))
    );
    let mut t3 = continuous_tensors(&CBase::new(true).cfg);
    t3.tensors
        .insert("project_out.weight".into(), (vec![0.0; 48], vec![16, 3]));
    let f = file_of(&CBase::new(true).with("dim_out", "3").meta(), &t3);
    assert!(matches!(
        ContinuousModel::<16>::from_safetensors(bytes(&f)),
        Err(LoadError::Model(picoformer::Error::WeightShape { .. }))
    ));
    let xb = XBase::new();
    let mut tx = xt_tensors(&xb.enc, &xb.dec);
    tx.tensors.insert(
        "encoder.to_logits.weight".into(),
        (vec![0.0; 176], vec![11, 16]),
    );
    let f = file_of(&xb.meta(), &tx);
    assert_eq!(
        XTransformer::<16>::from_safetensors(bytes(&f)).err(),
        Some(LoadError::UnexpectedTensor("encoder.to_logits.weight"))
    );
}

// ------------------------------------------------------------------ hostile metadata

/// The fixture model file `name`, its header as text, and the data after it.
fn fixture_parts(name: &str) -> (String, Vec<u8>) {
    let path = format!(
        "{}/tests/fixtures/{name}.model.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    (
        String::from_utf8(file[8..8 + n].to_vec()).unwrap(),
        file[8 + n..].to_vec(),
    )
}

/// A file of `header` (padded so that the data stays 8-aligned) and `data`, in aligned words.
fn reassemble(header: &str, data: &[u8]) -> (Vec<u64>, usize) {
    let mut h = header.as_bytes().to_vec();
    while !(8 + h.len()).is_multiple_of(8) {
        h.push(b' ');
    }
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(data);
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    (words, bytes.len())
}

/// Every loader on `bytes`; a model that loads runs a small pass. Neither may panic.
fn load_all(bytes: &[u8]) {
    let _ = Model::<16>::from_safetensors(bytes);
    let _ = EncoderModel::<16>::from_safetensors(bytes);
    if let Ok(m) = ContinuousModel::<16>::from_safetensors(bytes) {
        let c = *m.config();
        let lc = &c.attn_layers;
        let n = 2;
        if KvCache::<f32>::elements(lc, n) < 1 << 20 && Scratch::elements(lc, n) < 1 << 20 {
            let x = vec![0.5f32; n * c.input_width()];
            let mut y = vec![0.0f32; n * c.output_width()];
            let ctx = vec![0.5f32; 2 * lc.dim_context()];
            let mut kv = vec![0.0f32; KvCache::<f32>::elements(lc, n)];
            let mut kc = vec![0.0f32; KvCache::<f32>::context_elements(lc, 2)];
            let mut sb = vec![0.0f32; Scratch::elements(lc, n)];
            if let (Ok(mut cache), Ok(mut scratch)) = (
                KvCache::with_context(lc, n, &mut kv, 2, &mut kc),
                Scratch::new(lc, n, &mut sb),
            ) {
                let ctx = lc.cross_attend.then_some(&ctx[..]);
                let _ = match &m {
                    ContinuousModel::Decoder(w) => {
                        w.forward(&mut cache, &mut scratch, &x, ctx, Masks::NONE, &mut y)
                    }
                    ContinuousModel::Encoder(w) => {
                        w.encode(&mut cache, &mut scratch, &x, ctx, Masks::NONE, &mut y)
                    }
                };
            }
        }
    }
    if let Ok(xt) = XTransformer::<16>::from_safetensors(bytes) {
        let (e, d) = (
            xt.encoder().decoder().config(),
            xt.decoder().decoder().config(),
        );
        let small = |c: &DecoderConfig| {
            KvCache::<f32>::elements(c, 3) < 1 << 20 && Scratch::elements(c, 3) < 1 << 20
        };
        if small(e) && small(d) && e.dim < 1 << 12 {
            let mut ekv = vec![0.0f32; KvCache::<f32>::elements(e, 3)];
            let mut esb = vec![0.0f32; Scratch::elements(e, 3)];
            let mut memory = vec![0.0f32; 3 * e.dim];
            if let (Ok(mut ec), Ok(mut es)) =
                (KvCache::new(e, 3, &mut ekv), Scratch::new(e, 3, &mut esb))
            {
                let _ = xt.encode(&mut ec, &mut es, &[0, 1, 2], None, &mut memory);
            }
        }
    }
}

/// Values an argument may be given in a hostile file (as written inside the metadata string).
const HOSTILE: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "7",
    "0.5",
    "1e999",
    "true",
    "false",
    "null",
    "[]",
    "{}",
    "\\\"a\\\"",
    "4294967296",
];

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]
    /// The family's files with random byte edits in the header, or with an argument's value
    /// replaced by a hostile one: every loader returns a model or a typed error, never panics;
    /// a model that loads runs.
    #[test]
    fn hostile_family_files_never_panic(
        which in 0usize..3,
        edits in prop::collection::vec((0usize..4000, any::<u8>()), 0..4),
        values in prop::collection::vec((0usize..64, 0usize..HOSTILE.len()), 1..4),
    ) {
        let name = ["cont_dec_ctx", "xt_tie", "cont_enc_pool"][which];
        let (mut header, data) = fixture_parts(name);
        // Replace the values of some arguments of the metadata (`\": <value>`).
        for (k, v) in values {
            let starts: Vec<usize> = header.match_indices("\\\": ").map(|(i, _)| i + 4).collect();
            if starts.is_empty() {
                break;
            }
            let s = starts[k % starts.len()];
            let end = header[s..]
                .find([',', '}'])
                .map_or(header.len(), |e| s + e);
            header.replace_range(s..end, HOSTILE[v]);
        }
        let (mut words, len) = reassemble(&header, &data);
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len];
        let header_end = 8 + header.len();
        for (at, v) in edits {
            bytes[8 + at % (header_end - 8)] = v;
        }
        load_all(bytes);
    }
}
