//! # picoformer
//!
//! A `no_std`, allocation-free transformer decoder with a fixed-capacity KV cache that computes
//! the same numbers as [x-transformers](https://github.com/lucidrains/x-transformers)'
//! `Decoder` and `TransformerWrapper` for the same weights.
//!
//! The caller owns every byte: weights are borrowed views (`&[f32]`, `&[f16]`, `&[bf16]`) in
//! x-transformers' own layout, and the KV cache and the scratch arena are slices whose sizes
//! are `const fn`s of the configuration, so all of them can be `static`s. Here the bundled demo
//! model (byte-level, trained on Jane Austen) is embedded in the program, as it would be in a
//! microcontroller's flash, and decoded greedily with no allocator:
//!
//! ```
//! use core::ptr::addr_of_mut;
//! use picoformer::{DecoderConfig, KvCache, Model, Scratch, WrapperConfig};
//!
//! #[repr(C, align(64))]
//! struct Aligned<T: ?Sized>(T);
//! // The file, viewed in place: the weights are never copied.
//! static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../models/demo.safetensors"));
//!
//! // Its configuration (`picoformer inspect --rust` prints it) sizes every buffer.
//! const CFG: WrapperConfig = WrapperConfig::new(
//!     256,
//!     256,
//!     DecoderConfig::new(128, 4)
//!         .heads(4)
//!         .attn_kv_heads(2)
//!         .attn_dim_head(64)
//!         .rotary_pos_emb(true)
//!         .use_rmsnorm(true)
//!         .ff_mult(3.0)
//!         .ff_glu(true)
//!         .ff_swish(true),
//! );
//! const D: DecoderConfig = CFG.attn_layers;
//! const CAPACITY: usize = 32; // positions the KV cache holds
//! static mut KV: [f32; KvCache::<f32>::elements(&D, CAPACITY)] = [0.0; KvCache::<f32>::elements(&D, CAPACITY)];
//! static mut SCRATCH: [f32; Scratch::elements(&D, 4)] = [0.0; Scratch::elements(&D, 4)]; // 4 positions per pass
//! static mut LOGITS: [f32; CFG.num_tokens] = [0.0; CFG.num_tokens];
//!
//! let Ok(Model::Wrapper(model)) = Model::<4>::from_safetensors(&MODEL.0) else {
//!     panic!("not a TransformerWrapper file")
//! };
//! assert_eq!(*model.config(), CFG);
//! // SAFETY (of the example): the statics are used by this one thread only.
//! let (kv, sc, logits) = unsafe {
//!     (&mut *addr_of_mut!(KV), &mut *addr_of_mut!(SCRATCH), &mut *addr_of_mut!(LOGITS))
//! };
//! let mut cache = KvCache::new(&D, CAPACITY, kv)?;
//! let mut scratch = Scratch::new(&D, 4, sc)?;
//!
//! let prompt = b"Emma Woodhouse".map(u32::from); // byte-level: a token per byte
//! model.forward_last(&mut cache, &mut scratch, &prompt, None, logits)?; // prefill
//! let argmax = |l: &[f32]| (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b }) as u32;
//! let mut text = [0u8; 18]; // the cache's room
//! for byte in text.iter_mut() {
//!     let token = argmax(&logits[..]);
//!     *byte = token as u8;
//!     model.step(&mut cache, &mut scratch, token, logits)?;
//! }
//! assert_eq!(cache.remaining(), 0);
//! assert!(text.is_ascii()); // greedy English prose
//! # Ok::<(), picoformer::Error>(())
//! ```
//!
//! Weights can come from anything else that looks a tensor up by its `state_dict` key
//! ([`TensorSource`], [`Decoder::from_source`]); the [`generate`] and [`sampling`] modules turn
//! logits into text with the usual samplers, on a device too.
//!
//! On a host, the `std` feature adds [`session::Session`]: a model file read from a path (or
//! borrowed, e.g. from a memory map) with every buffer sized from these `const fn`s and owned,
//! then prompt tokens in, a stream of tokens out, with the sampler, a token budget and the stop
//! reason:
//!
//! ```
//! # #[cfg(feature = "std")] {
//! use picoformer::generate::GenerateConfig;
//! use picoformer::session::{Session, SessionConfig};
//!
//! let mut session = Session::open("models/demo.safetensors", SessionConfig::new())?;
//! let (tokens, done) = session.generate_tokens(&b"Emma".map(u32::from), GenerateConfig::new(8))?;
//! assert_eq!((tokens.len(), done.new_tokens), (8, 8));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

// The model, its buffers and its errors: re-exported at the root, one path per name.
mod cache;
mod config;
mod continuous;
mod decoder;
mod encoder;
mod error;
mod json;
mod masks;
mod model;
mod scratch;
mod tensor;
mod weights;
mod wrapper;
mod xtransformer;

// Modules whose contents are used by name: kernels for people building their own models, the
// file format and the x-transformers options it may carry, generation and sampling, scoring,
// packed-arena sizes and Q8_0 blocks.
pub mod generate;
pub mod kernels;
pub mod layers;
pub mod metrics;
pub mod options;
pub mod packing;
pub mod parallel;
pub mod q8_0;
pub mod safetensors;
pub mod sampling;
#[cfg(feature = "std")]
pub mod session;

pub use cache::KvCache;
pub use config::{Activation, DecoderConfig, Norm, WrapperConfig};
pub use continuous::{ContinuousConfig, ContinuousModel, ContinuousTransformerWrapper};
pub use decoder::Decoder;
pub use encoder::{Encoder, EncoderModel};
pub use error::{Buffer, ConfigError, Dims, Error, OwnedStr, WeightName};
pub use half::{bf16, f16};
pub use layers::{ExecuteOrder, LayerTypes};
pub use masks::Masks;
pub use model::{LoadError, LoadErrorOf, Model, ModelConfig, OwnedLoadError};
pub use scratch::Scratch;
pub use tensor::{Element, Tensor, TensorSource, TensorView};
pub use wrapper::TransformerWrapper;
pub use xtransformer::{Prefixed, XTransformer, XTransformerConfig};
