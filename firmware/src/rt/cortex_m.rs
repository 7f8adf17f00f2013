//! Cortex-M: cortex-m-rt does the reset (RAM init, FPU on for `eabihf`) and, with its
//! `paint-stack` feature, paints the stack before anything runs on it.

use core::ptr::addr_of;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use semihosting::println;

/// The value cortex-m-rt paints the stack with.
pub const STACK_PAINT: u32 = cortex_m_rt::STACK_PAINT_VALUE;

/// The stack region `[low, high)`: from the end of the statics to the top of RAM.
pub fn stack_bounds() -> (usize, usize) {
    extern "C" {
        static _stack_end: u32;
        static _stack_start: u32;
    }
    (
        addr_of!(_stack_end) as usize,
        addr_of!(_stack_start) as usize,
    )
}

/// The negative check for faults: a load from an address no board here maps, which must end in
/// the HardFault handler (a BusFault escalated). QEMU's lm3s6965evb and microbit read unmapped
/// memory as 0 instead; there the permanently undefined instruction `udf` faults (a UsageFault
/// escalated; on the Cortex-M0, which has no configurable faults, a HardFault directly).
pub fn read_invalid_address() -> ! {
    let addr = 0xF000_0000usize as *const u32;
    // SAFETY: deliberately invalid; the access faults before any value is produced.
    let v = unsafe { core::ptr::read_volatile(addr) };
    println!(
        "read of {:#010x} did not fault (got {:#x}); executing udf",
        addr as usize, v
    );
    // SAFETY: `udf` raises a UsageFault; the HardFault handler exits and never returns here.
    unsafe { core::arch::asm!("udf #0", options(noreturn)) }
}

#[entry]
fn main() -> ! {
    crate::run()
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    println!(
        "HardFault: pc {:#010x}, lr {:#010x}",
        frame.pc(),
        frame.lr()
    );
    semihosting::process::exit(crate::harness::FAULT)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    println!("unexpected exception or interrupt {irqn}");
    semihosting::process::exit(crate::harness::FAULT)
}
