//! # picoformer
//!
//! A `no_std`, allocation-free transformer decoder with a fixed-capacity KV cache that computes
//! the same numbers as [x-transformers](https://github.com/lucidrains/x-transformers)'
//! `Decoder` and `TransformerWrapper` for the same weights.
//!
//! The caller owns every byte: weights are borrowed views (`&[f32]`, `&[f16]`, `&[bf16]`) in
//! x-transformers' own layout, and the KV cache and the scratch arena are slices whose sizes
//! are `const fn`s of the configuration, so all of them can be `static`s.
//!
//! ```
//! use picoformer::{Decoder, DecoderConfig, KvCache, Scratch, Tensor, TensorView};
//!
//! const CFG: DecoderConfig = DecoderConfig::new(16, 1).heads(2).attn_dim_head(8).rotary_pos_emb(true);
//! const CAPACITY: usize = 8;
//! static mut CACHE: [f32; KvCache::<f32>::elements(&CFG, CAPACITY)] = [0.0; KvCache::<f32>::elements(&CFG, CAPACITY)];
//! static mut SCRATCH: [f32; Scratch::elements(&CFG, 1)] = [0.0; Scratch::elements(&CFG, 1)];
//!
//! // Weights come from anything that can look a tensor up by its state_dict key: a parsed
//! // safetensors file, or here a closure handing out one constant for every key.
//! static ONES: [f32; 1024] = [0.01; 1024];
//! let source = |name: &str| {
//!     let shape: &[usize] = match name {
//!         "layers.0.1.to_q.weight" | "layers.0.1.to_k.weight" | "layers.0.1.to_v.weight" => &[16, 16],
//!         "layers.0.1.to_out.weight" => &[16, 16],
//!         "layers.1.1.ff.0.0.weight" => &[64, 16],
//!         "layers.1.1.ff.2.weight" => &[16, 64],
//!         "layers.1.1.ff.0.0.bias" => &[64],
//!         "rotary_pos_emb.inv_freq" => &[2],
//!         _ => &[16], // norm gains and the last bias
//!     };
//!     let n: usize = shape.iter().product();
//!     Some(TensorView::new(Tensor::F32(&ONES[..n]), shape))
//! };
//! let decoder: Decoder = Decoder::from_source(CFG, &source)?;
//!
//! // SAFETY (of the example): the statics are used by this one thread only.
//! let (cache_buf, scratch_buf) = unsafe { (&mut *core::ptr::addr_of_mut!(CACHE), &mut *core::ptr::addr_of_mut!(SCRATCH)) };
//! let mut cache = KvCache::new(&CFG, CAPACITY, cache_buf)?;
//! let mut scratch = Scratch::new(&CFG, 1, scratch_buf)?;
//! let x = [0.5f32; 16 * 3]; // three positions
//! let mut y = [0.0f32; 16 * 3];
//! decoder.forward(&mut cache, &mut scratch, &x, None, &mut y)?;
//! assert_eq!(cache.len(), 3);
//! # Ok::<(), picoformer::Error>(())
//! ```
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
