//! Start-up, fault handling and stack bounds, one file per architecture. Each provides
//! `stack_bounds()`, `STACK_PAINT`, `read_invalid_address()`, and calls `crate::run` at reset.

#[cfg(target_arch = "arm")]
mod cortex_m;
#[cfg(target_arch = "arm")]
pub use cortex_m::*;

#[cfg(target_arch = "riscv32")]
mod riscv;
#[cfg(target_arch = "riscv32")]
pub use riscv::*;
