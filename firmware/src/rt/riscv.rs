//! RISC-V (QEMU `virt`, `-bios none`, machine mode): a small start-up in assembly. It parks
//! every hart but 0, sets the global and stack pointers and the trap vector, zeroes .bss,
//! paints the stack, and calls `crate::run`. QEMU has already loaded every section in place.

use core::ptr::addr_of;

use semihosting::println;

/// The value the start-up paints the stack with (the same as cortex-m-rt's).
pub const STACK_PAINT: u32 = 0xCCCC_CCCC;

// The start-up itself, shared with the no-panic proof (`src/no_panic.rs`): it calls `fw_main`
// at reset and `fw_trap(mcause, mepc, mtval)` on a trap, which each binary defines.
core::arch::global_asm!(include_str!("riscv_start.s"));

#[no_mangle]
extern "C" fn fw_main() -> ! {
    crate::run()
}

/// Every trap is fatal here (no interrupts are enabled): report and exit non-zero.
#[no_mangle]
extern "C" fn fw_trap(mcause: usize, mepc: usize, mtval: usize) -> ! {
    println!("trap: mcause {mcause:#x}, mepc {mepc:#010x}, mtval {mtval:#010x}");
    semihosting::process::exit(crate::harness::FAULT)
}

/// The stack region `[low, high)` the linker script reserves after .bss.
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

/// The negative check for faults: a load from an unmapped address (below the boot ROM at 0x1000) must
/// trap (load access fault) into `fw_trap`, never return.
pub fn read_invalid_address() -> ! {
    let addr = 0x0000_0800usize as *const u32;
    // SAFETY: deliberately invalid; the access traps before any value is produced.
    let v = unsafe { core::ptr::read_volatile(addr) };
    println!(
        "read of {:#010x} did not fault (got {:#x})",
        addr as usize, v
    );
    semihosting::process::exit(crate::harness::FAIL_NO_FAULT)
}
