//! x-transformers' `Encoder` (`AttentionLayers` with `causal=False`, `xt:3776-3779`):
//! bidirectional self-attention, otherwise the decoder's blocks and options.
//!
//! Every position attends to every key of the window, so all keys must exist before any
//! attention: a pass runs the whole window in one chunk (the scratch must hold it) over a KV
//! cache emptied first, which serves as the storage of the window's keys and values.
//! See `docs/x-transformers.md` §3.14.

use crate::cache::KvCache;
use crate::config::DecoderConfig;
use crate::decoder::Decoder;
use crate::error::{Buffer, ConfigError, Error};
use crate::masks::Masks;
use crate::scratch::Scratch;
use crate::tensor::{Element, TensorSource};

/// An x-transformers `Encoder` over borrowed weights (the same `state_dict` keys as a
/// `Decoder`'s): embeddings `x` (n × dim) in, hidden states after the final norm out.
#[derive(Clone, Debug)]
pub struct Encoder<'w, const MAX_DEPTH: usize = 16> {
    layers: Decoder<'w, MAX_DEPTH>,
}

impl<'w, const MAX_DEPTH: usize> Encoder<'w, MAX_DEPTH> {
    /// An encoder whose weights are looked up in `source` under a raw `Encoder`'s keys.
    ///
    /// # Errors
    /// As [`Decoder::from_source`].
    pub fn from_source<S: TensorSource<'w>>(
        config: DecoderConfig,
        source: &S,
    ) -> Result<Self, Error> {
        Ok(Self {
            layers: Decoder::from_source(config, source)?,
        })
    }

    /// The blocks as a [`Decoder`] over the same weights (the causal reading of them).
    pub fn from_layers(layers: Decoder<'w, MAX_DEPTH>) -> Self {
        Self { layers }
    }

    /// The configuration (the `AttentionLayers` arguments; `causal` is false).
    pub fn config(&self) -> &DecoderConfig {
        self.layers.config()
    }

    /// The blocks as a [`Decoder`] over the same weights.
    pub fn layers(&self) -> &Decoder<'w, MAX_DEPTH> {
        &self.layers
    }

    /// Runs the window `x` (n × dim) bidirectionally and writes its n hidden states to `out`:
    /// `cache` is emptied first and holds the window's keys and values afterwards (its context
    /// too, for a cross-attending encoder, which needs `context` on every call). `masks.mask`
    /// (n entries) marks the real positions, as x-transformers' `mask` (§3.13):
    /// padded keys excluded, attention outputs at padded positions zeroed.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] with [`Buffer::Scratch`] if the scratch holds fewer than n
    /// positions (a window runs in one chunk), [`Error::CacheFull`] if the cache holds fewer
    /// than n, and every error of [`Decoder::forward_masked`]. On error nothing is written: not
    /// the cache, not `out`.
    pub fn forward<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        x: &[f32],
        context: Option<&[f32]>,
        masks: Masks<'_>,
        out: &mut [f32],
    ) -> Result<(), Error> {
        let dim = self.config().dim;
        if !x.len().is_multiple_of(dim) {
            return Err(Error::BufferLength {
                buffer: Buffer::Input,
                expected: dim,
                found: x.len(),
            });
        }
        if out.len() != x.len() {
            return Err(Error::BufferLength {
                buffer: Buffer::Output,
                expected: x.len(),
                found: out.len(),
            });
        }
        if self.config().xpos() {
            // x-transformers asserts that xpos is causal (xt:2902).
            return Err(Error::Config(ConfigError::Conflict(
                "rotary_xpos",
                "causal",
            )));
        }
        let n = x.len() / dim;
        in_fresh_cache(&self.layers, cache, scratch, n, |c, s| {
            self.layers.run_masked(
                c,
                s,
                n,
                context,
                masks,
                0,
                false,
                |start, rows| {
                    rows.copy_from_slice(&x[start * dim..start * dim + rows.len()]);
                    Ok(())
                },
                |start, rows| {
                    out[start * dim..start * dim + rows.len()].copy_from_slice(rows);
                    Ok(())
                },
            )
        })
    }
}

/// Runs `f` (a bidirectional pass over `n` positions) in one chunk over `cache` emptied first.
/// Checks that the window fits the scratch and the cache; if `f` fails (it validates before
/// writing anything), the cache's positions and context are given back as they were.
pub(crate) fn in_fresh_cache<K: Element, const D: usize>(
    layers: &Decoder<'_, D>,
    cache: &mut KvCache<'_, K>,
    scratch: &mut Scratch<'_>,
    n: usize,
    f: impl FnOnce(&mut KvCache<'_, K>, &mut Scratch<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let cfg = layers.config();
    if scratch.fits(cfg) && n > scratch.max_positions() {
        return Err(Error::BufferTooSmall {
            buffer: Buffer::Scratch,
            needed: Scratch::elements(cfg, n),
            available: Scratch::elements(cfg, scratch.max_positions()),
        });
    }
    if n > cache.capacity() {
        return Err(Error::CacheFull {
            len: 0,
            requested: n,
            capacity: cache.capacity(),
        });
    }
    let (len, ctx) = (cache.len(), cache.context_len());
    cache.reset();
    let r = f(cache, scratch);
    if r.is_err() {
        cache.restore_len(len);
        if let Some(rows) = ctx {
            cache.set_context_len(rows);
        }
    }
    r
}

/// An encoder model loaded from a file whose metadata holds `{"encoder": {...}, "wrapper":
/// {...} | null}`: a bare `Encoder` or `TransformerWrapper(attn_layers=Encoder(...))`, weights
/// borrowed from the file's bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum EncoderModel<'w, const MAX_DEPTH: usize = 16> {
    /// A bare `Encoder`: embeddings in, hidden states out ([`Encoder::forward`]).
    Encoder(Encoder<'w, MAX_DEPTH>),
    /// A `TransformerWrapper` around an `Encoder`: tokens in, logits out
    /// ([`crate::TransformerWrapper::encode`]).
    Wrapper(crate::TransformerWrapper<'w, MAX_DEPTH>),
}

impl<'w, const MAX_DEPTH: usize> EncoderModel<'w, MAX_DEPTH> {
    /// Parses an encoder model file and borrows its weights in place.
    ///
    /// # Errors
    /// As [`crate::Model::from_safetensors`]; a file of another kind is refused
    /// ([`crate::LoadError::UnsupportedOption`] naming its entry and its loader).
    pub fn from_safetensors(bytes: &'w [u8]) -> Result<Self, crate::LoadError<'w>> {
        use crate::model::FileSource;
        let file = crate::safetensors::SafeTensors::parse(bytes)?;
        let (cfg, encoder) = crate::options::read_config_class(&file)?;
        if !encoder {
            return Err(crate::options::ModelKind::Decoder.refusal());
        }
        let source = FileSource::new(file);
        let model = match cfg.wrapper {
            Some(w) => crate::TransformerWrapper::from_source(w, &source).map(Self::Wrapper),
            None => Encoder::from_source(cfg.decoder, &source).map(Self::Encoder),
        };
        if let Some(e) = source.error.get() {
            return Err(e);
        }
        let model = model?;
        if let Some(name) = source.first_unused() {
            return Err(crate::LoadError::UnexpectedTensor(name));
        }
        Ok(model)
    }

    /// The configuration of the `Encoder` (the wrapper's `attn_layers`).
    pub fn config(&self) -> &DecoderConfig {
        match self {
            Self::Encoder(e) => e.config(),
            Self::Wrapper(w) => w.decoder().config(),
        }
    }
}
