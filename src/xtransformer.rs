//! x-transformers' `XTransformer` (`xt:4713-4774`): an encoder `TransformerWrapper(
//! return_only_embed=True, attn_layers=Encoder(...))` under `encoder.*` and a cross-attending
//! decoder `TransformerWrapper(attn_layers=Decoder(cross_attend=True, ...))` inside an
//! `AutoregressiveWrapper` under `decoder.net.*`. See `docs/x-transformers.md` §3.15.

use crate::cache::KvCache;
use crate::config::WrapperConfig;
use crate::error::Error;
use crate::masks::Masks;
use crate::model::{FileSource, LoadError};
use crate::scratch::Scratch;
use crate::tensor::{Element, TensorSource, TensorView};
use crate::wrapper::TransformerWrapper;

/// A [`TensorSource`] whose keys are those of `source` under `prefix` (`"encoder."`, ...):
/// the key is assembled on the stack (up to 256 bytes; a longer one is not found).
#[derive(Clone, Copy, Debug)]
pub struct Prefixed<'s, S> {
    /// The source holding the prefixed keys.
    pub source: &'s S,
    /// The prefix.
    pub prefix: &'s str,
}

impl<'w, S: TensorSource<'w>> TensorSource<'w> for Prefixed<'_, S> {
    fn tensor(&self, name: &str) -> Option<TensorView<'w>> {
        let mut key: heapless::String<256> = heapless::String::new();
        key.push_str(self.prefix).ok()?;
        key.push_str(name).ok()?;
        self.source.tensor(&key)
    }
}

/// An `XTransformer`'s configuration, as a model file's metadata `{"xtransformer": {...}}` gives
/// it ([`crate::options::read_xtransformer_config`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct XTransformerConfig {
    /// The encoder: `TransformerWrapper(enc_num_tokens, enc_max_seq_len, enc_use_abs_pos_emb,
    /// return_only_embed=True, attn_layers=Encoder(dim=dim, **enc_kwargs))` (`xt:4742-4746`).
    pub encoder: WrapperConfig,
    /// The decoder: `TransformerWrapper(dec_num_tokens, dec_max_seq_len, dec_use_abs_pos_emb,
    /// attn_layers=Decoder(dim=dim, cross_attend=True, **dec_kwargs))` (`xt:4748-4751`).
    pub decoder: WrapperConfig,
    /// `tie_token_emb`: the decoder's token embedding is the encoder's (`xt:4753-4754`); its
    /// `state_dict` holds the one tensor under both keys, and each wrapper reads its own.
    pub tie_token_emb: bool,
}

/// An x-transformers `XTransformer`: the source is encoded once
/// ([`Self::encode`], bidirectional, with the source's padding mask), and its embeddings are
/// the context of the decoder, which decodes step by step over its KV cache
/// ([`TransformerWrapper::forward_masked`] with `context_mask` = the source mask).
#[derive(Clone, Debug)]
pub struct XTransformer<'w, const MAX_DEPTH: usize = 16> {
    encoder: TransformerWrapper<'w, MAX_DEPTH>,
    decoder: TransformerWrapper<'w, MAX_DEPTH>,
    tie_token_emb: bool,
}

impl<'w, const MAX_DEPTH: usize> XTransformer<'w, MAX_DEPTH> {
    /// An XTransformer whose weights are looked up in `source` under its `state_dict` keys:
    /// `encoder` (the encoder wrapper's configuration, its `attn_layers` the `Encoder`'s;
    /// `return_only_embed`, so no logits weights: `tie_embedding` is ignored) under `encoder.`,
    /// `decoder` (cross-attending, `dim_context` = the encoder's dim) under `decoder.net.`.
    ///
    /// # Errors
    /// As [`TransformerWrapper::from_source`], with keys named without their prefix.
    pub fn from_source<S: TensorSource<'w>>(
        encoder: WrapperConfig,
        decoder: WrapperConfig,
        source: &S,
    ) -> Result<Self, Error> {
        // return_only_embed: no to_logits (xt:4153-4154); a tied wrapper reads none either.
        let encoder = encoder.tie_embedding(true);
        let enc_src = Prefixed {
            source,
            prefix: "encoder.",
        };
        let dec_src = Prefixed {
            source,
            prefix: "decoder.net.",
        };
        Ok(Self {
            encoder: TransformerWrapper::from_source(encoder, &enc_src)?,
            decoder: TransformerWrapper::from_source(decoder, &dec_src)?,
            tie_token_emb: false,
        })
    }

    /// Parses an `XTransformer`'s model file (metadata `{"xtransformer": {...}}`, the
    /// `XTransformer`'s own `state_dict`) and borrows its weights in place.
    ///
    /// # Errors
    /// As [`crate::Model::from_safetensors`]; a file of another kind is refused
    /// ([`LoadError::UnsupportedOption`] naming its entry and its loader).
    pub fn from_safetensors(bytes: &'w [u8]) -> Result<Self, LoadError<'w>> {
        let file = crate::safetensors::SafeTensors::parse(bytes)?;
        let cfg = crate::options::read_xtransformer_config(&file)?;
        let source = FileSource::new(file);
        let model = Self::from_source(cfg.encoder, cfg.decoder, &source).map(|m| Self {
            tie_token_emb: cfg.tie_token_emb,
            ..m
        });
        // A tensor that could not be viewed shows up as "missing": report the real cause.
        if let Some(e) = source.error.get() {
            return Err(e);
        }
        let model = model?;
        if let Some(name) = source.first_unused() {
            return Err(LoadError::UnexpectedTensor(name));
        }
        Ok(model)
    }

    /// The configuration (`tie_token_emb` as the file's metadata gives it; false when built
    /// with [`Self::from_source`]).
    pub fn config(&self) -> XTransformerConfig {
        XTransformerConfig {
            encoder: *self.encoder.config(),
            decoder: *self.decoder.config(),
            tie_token_emb: self.tie_token_emb,
        }
    }

    /// The encoder (a wrapper around an `Encoder`; run it with [`Self::encode`]).
    pub fn encoder(&self) -> &TransformerWrapper<'w, MAX_DEPTH> {
        &self.encoder
    }

    /// The decoder (`decoder.net`).
    pub fn decoder(&self) -> &TransformerWrapper<'w, MAX_DEPTH> {
        &self.decoder
    }

    /// The source's embeddings (n × dim) into `memory`: `encoder(src, mask=src_mask,
    /// return_embeddings=True)` (`xt:4765`), over `cache` (the encoder's, emptied first) and
    /// `scratch` (holding n positions).
    ///
    /// # Errors
    /// As [`TransformerWrapper::encode_embeddings`].
    pub fn encode<K: Element>(
        &self,
        cache: &mut KvCache<'_, K>,
        scratch: &mut Scratch<'_>,
        src: &[u32],
        src_mask: Option<&[bool]>,
        memory: &mut [f32],
    ) -> Result<(), Error> {
        let masks = Masks {
            mask: src_mask,
            context_mask: None,
        };
        self.encoder
            .encode_embeddings(cache, scratch, src, None, masks, memory)
    }
}
