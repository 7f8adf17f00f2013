# The RISC-V start-up of both firmware binaries (src/rt/riscv.rs says what it does).
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
