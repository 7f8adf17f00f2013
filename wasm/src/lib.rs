//! picoformer for JavaScript: a thin `cdylib` over the library.
//!
//! * [`engine`]: one decoding session (model, KV cache, scratch, logits, the library's
//!   [`picoformer::sampling::Sampler`] state) over caller-provided buffers. Safe code, shared with the
//!   native `host-tokens` tool.
//! * `ffi` (wasm32 only): the `extern "C"` exports. The module owns one linear arena, grown with
//!   `memory.grow` when a model is loaded and carved into the model bytes, KV cache, scratch,
//!   logits and token buffers. Nothing is allocated per token. The only `unsafe` is there.
#![no_std]
#![deny(missing_docs)]

// On the host this crate is only built for the `host-tokens` tool and unit tests: std supplies
// the panic handler there. On wasm32 nothing links std (ffi.rs has the panic handler).
#[cfg(not(target_arch = "wasm32"))]
extern crate std;

pub mod engine;
pub mod family;

#[cfg(target_arch = "wasm32")]
mod ffi;
