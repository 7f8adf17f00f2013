//! RISC-V (QEMU `virt`, `-bios none`, machine mode): a small start-up in assembly. It parks
//! every hart but 0, sets the global and stack pointers and the trap vector, zeroes .bss,
//! paints the stack, and calls `crate::run`. QEMU has already loaded every section in place.

use core::ptr::addr_of;

use semihosting::println;

/// The value the start-up paints the stack with (the same as cortex-m-rt's).
pub const STACK_PAINT: u32 = 0xCCCC_CCCC;

core::arch::global_asm!(
    r#"
    .section .text.start, "ax"
    .globl _start
_start:
    csrr    t0, mhartid
    bnez    t0, 9f
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, _stack_start
    la      t0, _trap_entry
    csrw    mtvec, t0
    la      t0, _sbss
    la      t1, _ebss
1:  bgeu    t0, t1, 2f
    sw      zero, 0(t0)
    addi    t0, t0, 4
    j       1b
2:  la      t0, _stack_end
    la      t1, _stack_start
    li      t2, 0xCCCCCCCC
3:  bgeu    t0, t1, 4f
    sw      t2, 0(t0)
    addi    t0, t0, 4
    j       3b
4:  call    fw_main
9:  wfi
    j       9b

    .align  4
_trap_entry:
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    j       fw_trap
"#
);

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
