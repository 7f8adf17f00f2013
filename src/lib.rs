//! picoformer: a `no_std`, allocation-free transformer decoder compatible with x-transformers.
#![no_std]
#![deny(missing_docs)]

pub mod json;
pub mod safetensors;
