//! Cortex-M with an FPU (`eabihf`: Cortex-M4F, M7, M33, M55): the matrix-vector products of
//! decoding, f32 and f16 weights, in the portable kernel's order of operations.
//!
//! - f16 weights are converted by the FPU (`VCVTB.F32.F16` / `VCVTT.F32.F16`, two halves per
//!   32-bit load), not in software: every FPU of these cores (FPv4-SP, FPv5) has the
//!   half-precision conversions.
//! - The inner loops are small assembly routines (`global_asm!`, stable): eight
//!   accumulators in `s` registers at every optimisation level (the portable kernel's array of
//!   accumulators lives in memory at `opt-level = "s"`, loaded and stored around each
//!   multiply-add), eight activations per `VLDM`, and for f32 eight weights per `VLDM`.
//! - Each accumulator takes `acc += w·x` with `VMLA.F32`, which rounds the product and then the
//!   sum (not fused), lane `i mod 8` for element i, and the lanes are reduced in the portable
//!   order: the results equal the portable kernel's bit for bit (the firmware's self-test
//!   checks that on the device, and its logits against the host's).
#![allow(unsafe_code)]

use core::mem::MaybeUninit;

use half::f16;

#[cfg(picoformer_arm_dsp)]
use crate::q8_0::{q8_0_scale, BlockQ8_0};

// Lines of the assembly below, written once: `f16_split!` turns the eight halves in the first
// four of eight `s` registers into eight f32 in all of them, in place, from the top register
// down (each read before it is overwritten); `mla8!` multiplies eight weight registers by the
// activations s0–s7 into eight accumulators; `reduce8!` sums eight lanes into the first in the
// portable kernel's order, ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)).
macro_rules! f16_split {
    ($a:literal, $b:literal, $c:literal, $d:literal, $e:literal, $f:literal, $g:literal, $h:literal) => {
        concat!(
            f16_half!("t", $h, $d),
            f16_half!("b", $g, $d),
            f16_half!("t", $f, $c),
            f16_half!("b", $e, $c),
            f16_half!("t", $d, $b),
            f16_half!("b", $c, $b),
            f16_half!("t", $b, $a),
            f16_half!("b", $a, $a),
        )
    };
}
// One half (`t` top, `b` bottom) of `s$src` as f32 into `s$dst`.
macro_rules! f16_half {
    ($half:literal, $dst:literal, $src:literal) => {
        concat!("vcvt", $half, ".f32.f16 s", $dst, ", s", $src, "\n")
    };
}
macro_rules! mla8 {
    ([$($acc:literal),*], [$($w:literal),*]) => {
        mla8!(@ [$($acc),*], [$($w),*], [0, 1, 2, 3, 4, 5, 6, 7])
    };
    (@ [$($acc:literal),*], [$($w:literal),*], [$($x:literal),*]) => {
        concat!($("vmla.f32 s", $acc, ", s", $w, ", s", $x, "\n",)*)
    };
}
macro_rules! reduce8 {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal, $a4:literal, $a5:literal, $a6:literal, $a7:literal) => {
        concat!(
            "vadd.f32 s",
            $a0,
            ", s",
            $a0,
            ", s",
            $a4,
            "\n",
            "vadd.f32 s",
            $a2,
            ", s",
            $a2,
            ", s",
            $a6,
            "\n",
            "vadd.f32 s",
            $a1,
            ", s",
            $a1,
            ", s",
            $a5,
            "\n",
            "vadd.f32 s",
            $a3,
            ", s",
            $a3,
            ", s",
            $a7,
            "\n",
            "vadd.f32 s",
            $a0,
            ", s",
            $a0,
            ", s",
            $a2,
            "\n",
            "vadd.f32 s",
            $a1,
            ", s",
            $a1,
            ", s",
            $a3,
            "\n",
            "vadd.f32 s",
            $a0,
            ", s",
            $a0,
            ", s",
            $a1,
        )
    };
}

// A loop of four steps a turn (`x2_step!` written four times), entered part-way through its
// first turn (Duff's device) so that it runs `steps` (any number ≥ 1) steps in order: before
// the pairs, `lr` = ⌈steps/4⌉ turns and `r8` = the steps the first turn skips ((−steps) mod 4,
// by `four_steps_setup!(r2)`); per pair, `r2` = `lr` and `TBB` jumps to step `r8` of the turn.
// Every instruction of a step is a 32-bit encoding, so the table's offsets are the assembler's.
macro_rules! four_steps_setup {
    ($steps:literal) => {
        concat!(
            "add lr, ",
            $steps,
            ", #3\n",
            "lsr lr, lr, #2\n",
            "rsb r8, ",
            $steps,
            ", #0\n",
            "and r8, r8, #3",
        )
    };
}
macro_rules! four_steps {
    ($row:ident, $list:literal) => {
        concat!(
            "mov r2, lr\n",
            "tbb [pc, r8]\n",
            "3:\n",
            ".byte (1f - 3b) / 2, (4f - 3b) / 2, (5f - 3b) / 2, (6f - 3b) / 2\n",
            "1:\n",
            x2_step!($row, $list),
            "4:\n",
            x2_step!($row, $list),
            "5:\n",
            x2_step!($row, $list),
            "6:\n",
            x2_step!($row, $list),
            "subs r2, r2, #1\n",
            "bne 1b",
        )
    };
}
// `VLDMIA $ptr!, {$list}`: consecutive `s` registers from memory, the pointer advanced.
macro_rules! vldm {
    ($ptr:literal, $list:literal) => {
        concat!("vldmia ", $ptr, "!, {{", $list, "}}\n")
    };
}
// One row's step of f16: eight halves by `VLDM` from `$ptr` into the first four of the eight
// `$w` registers (`$list`), split in place, multiplied by s0–s7 into the eight accumulators.
macro_rules! f16_row {
    ($ptr:literal, $list:literal, [$($acc:literal),*], [$($w:literal),*]) => {
        concat!(
            vldm!($ptr, $list),
            f16_split!($($w),*),
            mla8!([$($acc),*], [$($w),*]),
        )
    };
}
// One row's step of f32: eight weights by `VLDM` from `$ptr` into `$list` (the eight `$w`),
// multiplied by s0–s7 into the eight accumulators.
macro_rules! f32_row {
    ($ptr:literal, $list:literal, [$($acc:literal),*], [$($w:literal),*]) => {
        concat!(
            vldm!($ptr, $list),
            mla8!([$($acc),*], [$($w),*]),
        )
    };
}
// One step of the two-row routines: eight activations s0–s7 for both rows; each row's eight
// weights in s24–s31 by `$row` (`f16_row!` loads s24–s27 and splits them, `f32_row!` loads
// all eight), multiplied into the row's accumulators (row 0's s8–s15, row 1's s16–s23).
macro_rules! x2_step {
    ($row:ident, $list:literal) => {
        concat!(
            "vldmia r1!, {{s0-s7}}\n",
            $row!(
                "r0",
                $list,
                [8, 9, 10, 11, 12, 13, 14, 15],
                [24, 25, 26, 27, 28, 29, 30, 31]
            ),
            $row!(
                "r12",
                $list,
                [16, 17, 18, 19, 20, 21, 22, 23],
                [24, 25, 26, 27, 28, 29, 30, 31]
            ),
        )
    };
}

// The DSP int8 routines' pair start: `Int8Rows` (its address pushed at [sp]) read into r5 = row
// 0, r6 = row 1 (row 0 + stride), r7 = x, r8 = dx, r9 = blocks; the two sums s0, s1 at +0.
#[cfg(picoformer_arm_dsp)]
macro_rules! int8_pair_start {
    () => {
        concat!(
            "push {{r4-r11, lr}}\n",
            "push {{r0}}\n",
            "2:\n",
            "ldr r12, [sp]\n",
            "ldmia r12, {{r5-r9}}\n",
            "add r6, r5, r6\n",
            "movs r0, #0\n",
            "vmov s0, r0\n",
            "vmov s1, r0",
        )
    };
}
// Their block start: the rows' scales as f32 in s3, s4 (past them to the quants), x's from dx
// in s2. (The integer dots r0, r1 start with the block's first `SMUAD`.)
#[cfg(picoformer_arm_dsp)]
macro_rules! int8_block_start {
    () => {
        concat!(
            "ldrh r11, [r5], #2\n",
            "ldrh r12, [r6], #2\n",
            "vmov s3, s4, r11, r12\n",
            "vcvtb.f32.f16 s3, s3\n",
            "vcvtb.f32.f16 s4, s4\n",
            "vldmia r8!, {{s2}}",
        )
    };
}
// The int8 routines' block end: `sum += (d_w·d_x)·dot` for both rows (d_w in s3, s4, d_x in
// s2, the integer dots in r0, r1, the sums in s0, s1), as the portable kernel rounds it.
#[cfg(picoformer_arm_dsp)]
macro_rules! int8_block_sums {
    () => {
        concat!(
            "vmul.f32 s3, s3, s2\n",
            "vmul.f32 s4, s4, s2\n",
            "vmov s5, s6, r0, r1\n",
            "vcvt.f32.s32 s5, s5\n",
            "vcvt.f32.s32 s6, s6\n",
            "vmla.f32 s0, s3, s5\n",
            "vmla.f32 s1, s4, s6",
        )
    };
}
// Four words of each row's quants against the activations' extended words (r2, r3, r4, lr: a
// `LDM` of x), into the dots r0 and r1. `$first` is the instruction of each row's first pair:
// `smuad` for the block's first four words (it starts the dot and has no accumulator operand,
// `int8x_acc!`), `smlad` for the others.
#[cfg(picoformer_arm_dsp)]
macro_rules! int8x_words {
    ($first:tt) => {
        concat!(
            "ldmia r7!, {{r2, r3, r4, lr}}\n",
            "ldr r10, [r5], #4\n",
            "sxtb16 r11, r10, ror #8\n",
            "sxtb16 r10, r10\n",
            $first,
            " r0, r10, r2",
            int8x_acc!($first, "r0"),
            "\n",
            "smlad r0, r11, r3, r0\n",
            "ldr r10, [r5], #4\n",
            "sxtb16 r11, r10, ror #8\n",
            "sxtb16 r10, r10\n",
            "smlad r0, r10, r4, r0\n",
            "smlad r0, r11, lr, r0\n",
            "ldr r10, [r6], #4\n",
            "sxtb16 r11, r10, ror #8\n",
            "sxtb16 r10, r10\n",
            $first,
            " r1, r10, r2",
            int8x_acc!($first, "r1"),
            "\n",
            "smlad r1, r11, r3, r1\n",
            "ldr r10, [r6], #4\n",
            "sxtb16 r11, r10, ror #8\n",
            "sxtb16 r10, r10\n",
            "smlad r1, r10, r4, r1\n",
            "smlad r1, r11, lr, r1\n",
        )
    };
}
#[cfg(picoformer_arm_dsp)]
macro_rules! int8x_acc {
    ("smuad", $r:literal) => {
        ""
    };
    ("smlad", $r:literal) => {
        concat!(", ", $r)
    };
}
// The DSP int8 routines' pair end: the two sums to `y`, then the next pair two rows on
// (`Int8Rows` at [sp]: w, pairs and y advance in it), or the return.
#[cfg(picoformer_arm_dsp)]
macro_rules! int8_next_pair {
    () => {
        concat!(
            "ldr r12, [sp]\n",
            "ldr r5, [r12]\n",
            "ldr r6, [r12, #4]\n",
            "add r5, r5, r6, lsl #1\n",
            "str r5, [r12]\n",
            "ldr r2, [r12, #24]\n",
            "vstmia r2!, {{s0-s1}}\n",
            "str r2, [r12, #24]\n",
            "ldr r2, [r12, #20]\n",
            "subs r2, r2, #1\n",
            "str r2, [r12, #20]\n",
            "bne 2b\n",
            "add sp, sp, #4\n",
            "pop {{r4-r11, pc}}",
        )
    };
}
// The float two-row routines' pair end (here and in `helium.rs`): the reduced sums s8 (row 0)
// and s16 (row 1) to y (r3), the next pair's row 0 right after this pair's row 1 (`$row1`,
// where its loads ended), and r4 pairs to go.
macro_rules! next_pair {
    ($row1:literal) => {
        concat!(
            "vstr s8, [r3]\n",
            "vstr s16, [r3, #4]\n",
            "adds r3, r3, #8\n",
            "mov r0, ",
            $row1,
            "\n",
            "subs r4, r4, #1\n",
            "bne 2b",
        )
    };
}
#[cfg(picoformer_arm_mve)]
pub(super) use next_pair;

// The inner loops, in assembly: eight accumulators per row (lane l takes every element i with
// i mod 8 = l), started at +0 from a table of zeros after each routine, eight x values s0–s7
// per step, `VMLA.F32` (multiply, round, add, round: not fused, like Rust's `acc += w * x`).
// AAPCS-VFP: s0–s15, r0–r3 and r12 are the caller's to lose; the s16–s31 and r4–r8 used here
// are saved. Arguments: r0 = w (row 0; row 1, in the two-row routines, right after it: rows of
// whole steps), r1 = x, r2 = steps of 8 (at least 1), r3 = the eight accumulators (one row,
// written at exit). The two-row routines run `pairs` (the fifth argument, on the stack, at
// least 1) pairs of consecutive rows, each pair's two sums reduced as the portable kernel
// reduces its lanes and stored at r3 (2·pairs values).
// f16 weights are loaded by VLDM, two halves per `s` register, and split in place by
// VCVTT/VCVTB from the top register down (each register is read before it is overwritten).
// The two-row routines run four steps a turn (`four_steps!`). Per step of 8 multiply-adds and
// row: f32 9.75 instructions with two rows, 12 with one; f16 17.75 with two rows, 20 with one.
// (Rust's `sreg` operands of `asm!` need the unstable `vfp2` target feature on these targets;
// whole functions in `global_asm!` do not.)
core::arch::global_asm!(
    ".syntax unified",
    // Thumb-2 encodings whatever the target's default instruction set (the routines are
    // `.thumb_func`s; an A32 target would call them through `blx`).
    ".thumb",
    // The FPU every eabihf Cortex-M has at least (M4F's; FPv5 adds to it): module-level
    // assembly does not get the target's features.
    ".fpu fpv4-sp-d16",
    // One row of f16: weights s16–s19, converted to s16–s23.
    ".section .text.picoformer_cortexm_dot8_f16,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_dot8_f16,%function",
    "picoformer_cortexm_dot8_f16:",
    "vpush {{s16-s23}}",
    "adr r12, 9f",
    "vldmia r12, {{s8-s15}}",
    "1:",
    "vldmia r1!, {{s0-s7}}",
    f16_row!(
        "r0",
        "s16-s19",
        [8, 9, 10, 11, 12, 13, 14, 15],
        [16, 17, 18, 19, 20, 21, 22, 23]
    ),
    "subs r2, r2, #1",
    "bne 1b",
    "vstmia r3, {{s8-s15}}",
    "vpop {{s16-s23}}",
    "bx lr",
    ".p2align 2",
    "9: .space 32",
    ".size picoformer_cortexm_dot8_f16, . - picoformer_cortexm_dot8_f16",
    // Two rows of f16, each eight activations loaded once for both: accumulators s8–s15
    // (row 0) and s16–s23 (row 1), weights s24–s27 converted to s24–s31.
    ".section .text.picoformer_cortexm_dot8x2_f16,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_dot8x2_f16,%function",
    "picoformer_cortexm_dot8x2_f16:",
    "push {{r4-r8, lr}}",
    "vpush {{s16-s31}}",
    "ldr r4, [sp, #88]",
    "mov r5, r1",
    "mov r6, r2",
    "adr r7, 9f",
    four_steps_setup!("r2"),
    "2:",
    "add r12, r0, r6, lsl #4",
    "mov r1, r5",
    "vldmia r7, {{s8-s23}}",
    four_steps!(f16_row, "s24-s27"),
    // The portable reduction of each row's lanes, ((a0 + a4) + (a2 + a6)) + ((a1 + a5) +
    // (a3 + a7)), into s8 (row 0) and s16 (row 1); the two sums stored.
    reduce8!(8, 9, 10, 11, 12, 13, 14, 15),
    reduce8!(16, 17, 18, 19, 20, 21, 22, 23),
    next_pair!("r12"),
    "vpop {{s16-s31}}",
    "pop {{r4-r8, pc}}",
    ".p2align 2",
    "9: .space 64",
    ".size picoformer_cortexm_dot8x2_f16, . - picoformer_cortexm_dot8x2_f16",
    // One row of f32: weights s16–s23.
    ".section .text.picoformer_cortexm_dot8_f32,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_dot8_f32,%function",
    "picoformer_cortexm_dot8_f32:",
    "vpush {{s16-s23}}",
    "adr r12, 9f",
    "vldmia r12, {{s8-s15}}",
    "1:",
    "vldmia r1!, {{s0-s7}}",
    f32_row!(
        "r0",
        "s16-s23",
        [8, 9, 10, 11, 12, 13, 14, 15],
        [16, 17, 18, 19, 20, 21, 22, 23]
    ),
    "subs r2, r2, #1",
    "bne 1b",
    "vstmia r3, {{s8-s15}}",
    "vpop {{s16-s23}}",
    "bx lr",
    ".p2align 2",
    "9: .space 32",
    ".size picoformer_cortexm_dot8_f32, . - picoformer_cortexm_dot8_f32",
    // Two rows of f32: accumulators s8–s15 and s16–s23, weights s24–s31.
    ".section .text.picoformer_cortexm_dot8x2_f32,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_dot8x2_f32,%function",
    "picoformer_cortexm_dot8x2_f32:",
    "push {{r4-r8, lr}}",
    "vpush {{s16-s31}}",
    "ldr r4, [sp, #88]",
    "mov r5, r1",
    "mov r6, r2",
    "adr r7, 9f",
    four_steps_setup!("r2"),
    "2:",
    "add r12, r0, r6, lsl #5",
    "mov r1, r5",
    "vldmia r7, {{s8-s23}}",
    four_steps!(f32_row, "s24-s31"),
    // The portable reduction of each row's lanes, ((a0 + a4) + (a2 + a6)) + ((a1 + a5) +
    // (a3 + a7)), into s8 (row 0) and s16 (row 1); the two sums stored.
    reduce8!(8, 9, 10, 11, 12, 13, 14, 15),
    reduce8!(16, 17, 18, 19, 20, 21, 22, 23),
    next_pair!("r12"),
    "vpop {{s16-s31}}",
    "pop {{r4-r8, pc}}",
    ".p2align 2",
    "9: .space 64",
    ".size picoformer_cortexm_dot8x2_f32, . - picoformer_cortexm_dot8x2_f32",
    // out[i] += p·v[i] (attention's weighted values): r0 = out, r1 = v, r2 = steps of 8 (at
    // least 1), s0 = p; `VMLA.F32` rounds the product and the sum as Rust's `o += p * v`.
    ".section .text.picoformer_cortexm_axpy8_f32,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_axpy8_f32,%function",
    "picoformer_cortexm_axpy8_f32:",
    "vpush {{s16-s23}}",
    "1:",
    "vldmia r0, {{s8-s15}}",
    "vldmia r1!, {{s16-s23}}",
    "vmla.f32 s8, s16, s0",
    "vmla.f32 s9, s17, s0",
    "vmla.f32 s10, s18, s0",
    "vmla.f32 s11, s19, s0",
    "vmla.f32 s12, s20, s0",
    "vmla.f32 s13, s21, s0",
    "vmla.f32 s14, s22, s0",
    "vmla.f32 s15, s23, s0",
    "vstmia r0!, {{s8-s15}}",
    "subs r2, r2, #1",
    "bne 1b",
    "vpop {{s16-s23}}",
    "bx lr",
    ".size picoformer_cortexm_axpy8_f32, . - picoformer_cortexm_axpy8_f32",
    // y[i] += b[i] for f16 b (a bias): r0 = y, r1 = b (4-byte aligned), r2 = steps of 8 (at
    // least 1); b by VLDM and split in place as the f16 products do.
    ".section .text.picoformer_cortexm_add8_f16,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_add8_f16,%function",
    "picoformer_cortexm_add8_f16:",
    "vpush {{s16-s23}}",
    "1:",
    "vldmia r0, {{s8-s15}}",
    "vldmia r1!, {{s16-s19}}",
    f16_split!(16, 17, 18, 19, 20, 21, 22, 23),
    "vadd.f32 s8, s8, s16",
    "vadd.f32 s9, s9, s17",
    "vadd.f32 s10, s10, s18",
    "vadd.f32 s11, s11, s19",
    "vadd.f32 s12, s12, s20",
    "vadd.f32 s13, s13, s21",
    "vadd.f32 s14, s14, s22",
    "vadd.f32 s15, s15, s23",
    "vstmia r0!, {{s8-s15}}",
    "subs r2, r2, #1",
    "bne 1b",
    "vpop {{s16-s23}}",
    "bx lr",
    ".size picoformer_cortexm_add8_f16, . - picoformer_cortexm_add8_f16",
);

// The int8 path's products (Q8_0 weights × Q8_0 activations) with the DSP extension, two rows
// at a time, one position: each block's 32 products summed exactly in integers by `SMLAD`
// (two 16-bit multiply-adds, each operand pair sign-extended from bytes 0 and 2, or 1 and 3,
// of a word by `SXTB16`), then `sum += (d_w·d_x)·dot` in f32 as the portable kernel computes
// it (`VMUL`, `VCVT.F32.S32`, `VMLA`: each rounding where it rounds). r0 points at the
// arguments { w0, w1, x, dx, blocks } (rows 0 and 1 and the activations as Q8_0 blocks, 34
// bytes each: an f16 scale, then 32 quants, read by unaligned `LDR`s, which these cores
// allow; `dx` the activations' scales as f32; blocks ≥ 1) as `Int8Rows` lays them out: rows 0
// and 1 of each pair `stride` bytes apart, `pairs` (≥ 1) pairs, each two rows after the last,
// each pair's two sums stored at y (`w`, `pairs` and `y` advance in the struct as it runs).
// Per block of 2 × 32 multiply-adds: 121 instructions.
#[cfg(picoformer_arm_dsp)]
core::arch::global_asm!(
    ".syntax unified",
    ".thumb",
    ".arch armv7e-m",
    ".fpu fpv4-sp-d16",
    ".section .text.picoformer_cortexm_int8_rows2,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_int8_rows2,%function",
    "picoformer_cortexm_int8_rows2:",
    int8_pair_start!(),
    "1:",
    int8_block_start!(),
    "movs r0, #0",
    "movs r1, #0",
    // (x's blocks: past the scale to the quants.)
    "adds r7, r7, #2",
    ".rept 8",
    "ldr r2, [r7], #4",
    "sxtb16 r3, r2, ror #8",
    "sxtb16 r2, r2",
    "ldr r4, [r5], #4",
    "sxtb16 r10, r4, ror #8",
    "sxtb16 r4, r4",
    "smlad r0, r4, r2, r0",
    "smlad r0, r10, r3, r0",
    "ldr r4, [r6], #4",
    "sxtb16 r10, r4, ror #8",
    "sxtb16 r4, r4",
    "smlad r1, r4, r2, r1",
    "smlad r1, r10, r3, r1",
    ".endr",
    int8_block_sums!(),
    "subs r9, r9, #1",
    "bne 1b",
    int8_next_pair!(),
    ".size picoformer_cortexm_int8_rows2, . - picoformer_cortexm_int8_rows2",
    // The same with the activations' quants sign-extended beforehand (`extend`: per word of
    // four quants q0..q3, the halfword pairs (q0, q2) and (q1, q3)), read four words per
    // `LDM` for two words of each row's weights: per block of 2 × 32 multiply-adds 99
    // instructions. r0 points at the same `Int8Rows`, its x the extended words (word-aligned).
    ".section .text.picoformer_cortexm_int8x_rows2,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_int8x_rows2,%function",
    "picoformer_cortexm_int8x_rows2:",
    int8_pair_start!(),
    "1:",
    int8_block_start!(),
    int8x_words!("smuad"),
    ".rept 3",
    int8x_words!("smlad"),
    ".endr",
    int8_block_sums!(),
    "subs r9, r9, #1",
    "bne 1b",
    int8_next_pair!(),
    ".size picoformer_cortexm_int8x_rows2, . - picoformer_cortexm_int8x_rows2",
);

/// The arguments of the int8 routines (`picoformer_cortexm_int8_rows2` and the others).
#[cfg(picoformer_arm_dsp)]
#[repr(C)]
pub(super) struct Int8Rows {
    /// Row 0 of the first pair (Q8_0 blocks).
    w: *const BlockQ8_0,
    /// Bytes from a row to the next.
    stride: usize,
    /// The activations: Q8_0 blocks, or their quants extended (`extend`).
    x: *const u8,
    /// The activations' scales.
    dx: *const f32,
    /// Blocks per row (at least 1).
    blocks: usize,
    /// Pairs of rows (at least 1).
    pairs: usize,
    /// Where the `2·pairs` sums go.
    y: *mut f32,
}

#[cfg(picoformer_arm_dsp)]
#[cfg_attr(picoformer_arm_mve, allow(dead_code))] // (Helium's instead)
extern "C" {
    fn picoformer_cortexm_int8_rows2(args: *mut Int8Rows);
    fn picoformer_cortexm_int8x_rows2(args: *mut Int8Rows);
}

#[cfg_attr(picoformer_arm_mve, allow(dead_code))] // (the two-row ones: Helium's instead)
extern "C" {
    fn picoformer_cortexm_dot8_f16(w: *const f16, x: *const f32, steps: usize, acc: *mut [f32; 8]);
    fn picoformer_cortexm_dot8x2_f16(
        w: *const f16,
        x: *const f32,
        steps: usize,
        y: *mut f32,
        pairs: usize,
    );
    fn picoformer_cortexm_dot8_f32(w: *const f32, x: *const f32, steps: usize, acc: *mut [f32; 8]);
    fn picoformer_cortexm_dot8x2_f32(
        w: *const f32,
        x: *const f32,
        steps: usize,
        y: *mut f32,
        pairs: usize,
    );
    fn picoformer_cortexm_axpy8_f32(out: *mut f32, v: *const f32, steps: usize, p: f32);
    fn picoformer_cortexm_add8_f16(y: *mut f32, b: *const f16, steps: usize);
}

/// The portable kernel's pairwise reduction of the eight lanes.
#[inline(always)]
fn reduce(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// The accumulators of a routine that writes all `N` of them (its steps at least 1).
#[inline(always)]
fn run<const N: usize>(routine: impl FnOnce(*mut [f32; N])) -> [f32; N] {
    let mut acc = MaybeUninit::<[f32; N]>::uninit();
    routine(acc.as_mut_ptr());
    // SAFETY: every routine here stores all its accumulators (`VSTM` of N registers) before it
    // returns.
    unsafe { acc.assume_init() }
}

/// `Σ w[i]·x[i]` over f32 (the shorter length), in the portable kernel's order.
fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let steps = n / 8;
    let mut acc = [0.0f32; 8];
    if steps > 0 {
        // SAFETY: the routine reads `8·steps` ≤ n values from each of `w` and `x` (both at
        // least n long, f32-aligned) and writes the eight accumulators; it keeps the registers
        // AAPCS-VFP says a callee keeps.
        acc = run(|a| unsafe { picoformer_cortexm_dot8_f32(w.as_ptr(), x.as_ptr(), steps, a) });
    }
    for i in steps * 8..n {
        acc[i % 8] += w[i] * x[i];
    }
    reduce(acc)
}

/// `Σ w[i]·x[i]` over f16 weights converted by the FPU (the shorter length), in the portable
/// kernel's order. Rows not 4-byte aligned take the portable kernel (`VLDM` needs it).
fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    if !(w.as_ptr() as usize).is_multiple_of(4) {
        return super::portable::dot_of(&w[..n], &x[..n]);
    }
    let steps = n / 8;
    let mut acc = [0.0f32; 8];
    if steps > 0 {
        // SAFETY: the routine reads `8·steps` ≤ n values from `w` (4-byte aligned, checked
        // above, as four words per step) and from `x` (f32-aligned), both at least n long, and
        // writes the eight accumulators; it keeps the registers AAPCS-VFP says a callee keeps.
        acc = run(|a| unsafe { picoformer_cortexm_dot8_f16(w.as_ptr(), x.as_ptr(), steps, a) });
    }
    for i in steps * 8..n {
        acc[i % 8] += half(w[i]) * x[i];
    }
    reduce(acc)
}

/// `y = x·Wᵀ` for Q8_0 weights `W[y.len(), x.len()]` by Helium, [`super::matvec_q8_portable`]'s
/// numbers bit for bit (shapes checked by the caller: `x.len()` a multiple of 32).
#[cfg(picoformer_arm_mve)]
pub(crate) fn matvec_q8(w: &[BlockQ8_0], x: &[f32], y: &mut [f32]) {
    let nb = x.len() / 32;
    let rows = y.len().min(w.len() / nb.max(1));
    if nb == 0 || rows == 0 {
        y.fill(0.0);
        return;
    }
    // SAFETY: `w` holds `rows` rows of `nb` ≥ 1 blocks, `x` `32·nb` f32 and `y` at least `rows`
    // values; the routine reads exactly those (the blocks by byte and halfword loads, any
    // alignment), writes `rows` sums, and keeps the registers AAPCS-VFP says a callee keeps.
    unsafe {
        super::helium::picoformer_helium_q8_rows(w.as_ptr(), x.as_ptr(), nb, y.as_mut_ptr(), rows)
    };
}

/// `out[i] += p·v[i]` over the shorter length, as the portable attention computes it.
fn axpy_f32(out: &mut [f32], v: &[f32], p: f32) {
    let n = out.len().min(v.len());
    let steps = n / 8;
    if steps > 0 {
        // SAFETY: the routine reads and writes `8·steps` ≤ n values of `out` and reads as many
        // of `v` (both f32-aligned, at least n long); it keeps the registers AAPCS-VFP says a
        // callee keeps.
        unsafe { picoformer_cortexm_axpy8_f32(out.as_mut_ptr(), v.as_ptr(), steps, p) };
    }
    for (o, vv) in out.iter_mut().zip(v).take(n).skip(steps * 8) {
        *o += p * vv;
    }
}

/// `y[i] += b[i]` for an f16 bias `b` (the shorter length), as the portable `add_bias`.
pub(crate) fn add_f16(y: &mut [f32], b: &[f16]) {
    let n = y.len().min(b.len());
    let steps = if (b.as_ptr() as usize).is_multiple_of(4) {
        n / 8
    } else {
        0
    };
    if steps > 0 {
        // SAFETY: the routine reads and writes `8·steps` ≤ n values of `y` and reads as many
        // of `b` (4-byte aligned, checked), both at least n long; it keeps the registers
        // AAPCS-VFP says a callee keeps.
        unsafe { picoformer_cortexm_add8_f16(y.as_mut_ptr(), b.as_ptr(), steps) };
    }
    for (v, bb) in y.iter_mut().zip(b).take(n).skip(steps * 8) {
        *v += f16_to_f32(*bb);
    }
}

/// Attention over an f32 KV cache: [`super::portable::attention_positions`] with its two inner
/// loops (`q·k`, `out += p·v`) in the routines above, bit for bit its result. Shapes are
/// checked there.
pub(crate) fn attention_positions_f32(
    q: &[f32],
    group: super::HeadGroup,
    positions: super::Positions,
    keys: &[f32],
    values: &[f32],
    scale: f32,
    out: &mut [f32],
) -> Result<(), crate::error::Error> {
    super::portable::attention_positions_by(
        q,
        group,
        positions,
        keys,
        values,
        scale,
        out,
        |q, k, v, s, o| super::portable::head_by(q, k, v, s, o, dot_f32, axpy_f32),
    )
}

/// One f16 as f32 (the remainder of a row: fewer than 8 per row).
#[inline(always)]
fn half(v: f16) -> f32 {
    f16_to_f32(v)
}

/// An f32 as f16 by the FPU's `VCVTB.F16.F32` (rounding to nearest even, as the FPSCR's
/// default mode; overflow to ∞; subnormal results exact, flush-to-zero being off): `half`'s
/// `from_f32` for every non-NaN value (a NaN's payload may differ).
#[inline(always)]
pub(crate) fn f32_to_f16(v: f32) -> f16 {
    let mut bits = v.to_bits();
    // SAFETY: as `f16_to_f32`.
    unsafe {
        core::arch::asm!(
            "vmov s15, {0}",
            "vcvtb.f16.f32 s15, s15",
            "vmov {0}, s15",
            inout(reg) bits,
            out("s15") _,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    f16::from_bits(bits as u16)
}

/// One f16 as f32 by the FPU's `VCVTB.F32.F16`: `half`'s exact conversion (every f16 has an
/// f32; a NaN stays a NaN, made quiet, as there), in three instructions instead of about
/// fifteen in software. `Element::to_f32` for f16 on these targets (norm gains, biases,
/// embeddings, an f16 KV cache).
#[inline(always)]
pub(crate) fn f16_to_f32(v: f16) -> f32 {
    let mut bits = u32::from(v.to_bits());
    // SAFETY: register moves and one conversion, on a register declared clobbered; no memory,
    // no stack, no flags (the FPU's cumulative exception bits aside, which nothing reads).
    unsafe {
        core::arch::asm!(
            "vmov s15, {0}",
            "vcvtb.f32.f16 s15, s15",
            "vmov {0}, s15",
            inout(reg) bits,
            out("s15") _,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    f32::from_bits(bits)
}

/// `y = x·Wᵀ` for weights `W[y.len(), x.len()]` (shapes checked by the caller): two rows at a
/// time by `two` where rows are whole steps of 8 and `W` is 4-byte aligned (each activation
/// load then serves both rows), the rest row by row by `one`.
#[inline(always)]
fn matvec_rows<E>(
    w: &[E],
    x: &[f32],
    y: &mut [f32],
    two: unsafe extern "C" fn(*const E, *const f32, usize, *mut f32, usize),
    one: impl Fn(&[E], &[f32]) -> f32,
) {
    let cols = x.len();
    if cols == 0 {
        y.fill(0.0);
        return;
    }
    let mut done = 0;
    let pairs = (y.len() / 2).min(w.len() / cols / 2);
    if cols.is_multiple_of(8) && (w.as_ptr() as usize).is_multiple_of(4) && pairs > 0 {
        // SAFETY: `w` holds `2·pairs` rows of `cols` = 8·steps values (steps ≥ 1), 4-byte
        // aligned (checked), `x` holds `cols` f32 and `y` at least `2·pairs`; the routine reads
        // exactly those rows and `x`, writes `2·pairs` sums to `y`, and keeps the registers
        // AAPCS-VFP says a callee keeps.
        unsafe { two(w.as_ptr(), x.as_ptr(), cols / 8, y.as_mut_ptr(), pairs) };
        done = 2 * pairs;
    }
    let (y, w) = (y.get_mut(done..), w.get(done * cols..));
    for (yr, wr) in y
        .unwrap_or_default()
        .iter_mut()
        .zip(w.unwrap_or_default().chunks_exact(cols))
    {
        *yr = one(wr, x);
    }
}

/// `y = x·Wᵀ` for f32 weights `W[y.len(), x.len()]` (shapes checked by the caller).
pub(crate) fn matvec_f32(w: &[f32], x: &[f32], y: &mut [f32]) {
    #[cfg(picoformer_arm_mve)]
    let two = super::helium::picoformer_helium_dot8x2_f32;
    #[cfg(not(picoformer_arm_mve))]
    let two = picoformer_cortexm_dot8x2_f32;
    matvec_rows(w, x, y, two, dot_f32);
}

/// `y = x·Wᵀ` for f16 weights `W[y.len(), x.len()]` (shapes checked by the caller).
pub(crate) fn matvec_f16(w: &[f16], x: &[f32], y: &mut [f32]) {
    #[cfg(picoformer_arm_mve)]
    let two = super::helium::picoformer_helium_dot8x2_f16;
    #[cfg(not(picoformer_arm_mve))]
    let two = picoformer_cortexm_dot8x2_f16;
    matvec_rows(w, x, y, two, dot_f16);
}

/// Activation blocks [`int8_rows`] takes at once (the int8 path's chunk on these targets: the
/// activations' f32 scales are kept on the stack, 128 bytes).
#[cfg(picoformer_arm_dsp)]
const INT8_BLOCKS: usize = 32;

/// Blocks of a position's activations whose quants the DSP path sign-extends once for all rows
/// (`extend`, 64 bytes each on the stack: 1 KiB), rows up to 512 values; longer rows take the
/// routine that extends them as it goes.
#[cfg(all(picoformer_arm_dsp, not(picoformer_arm_mve)))]
const EXTENDED_BLOCKS: usize = 16;

/// The quants of `x`'s blocks as the DSP routine reads them: per word of four quants q0..q3,
/// the words (q0, q2) and (q1, q3) of two sign-extended halfwords (what `SXTB16` makes of it,
/// and of it rotated by 8).
#[cfg(all(picoformer_arm_dsp, not(picoformer_arm_mve)))]
fn extend(x: &[BlockQ8_0], out: &mut [u32]) {
    let half = |q: i8| u32::from(i16::from(q) as u16);
    for (e, b) in out.chunks_exact_mut(16).zip(x) {
        let q = crate::q8_0::q8_0_quants(b);
        for (e2, q4) in e.chunks_exact_mut(2).zip(q.chunks_exact(4)) {
            if let ([e0, e1], [q0, q1, q2, q3]) = (e2, q4) {
                *e0 = half(*q0) | half(*q2) << 16;
                *e1 = half(*q1) | half(*q3) << 16;
            }
        }
    }
}

/// The int8 path's product with the DSP extension (or Helium): [`super::portable::int8_rows`]'s
/// result bit for bit (each block's sum is exact, and the scaling rounds as there), for
/// activations quantised by picoformer, whose quants are never −128 (the portable kernel reads
/// −128 as −127; `SMLAD` would not). More than [`INT8_BLOCKS`] activation blocks, or a shape
/// that does not split into whole positions, take the portable kernel.
#[cfg(picoformer_arm_dsp)]
pub(crate) fn int8_rows(
    w: &[BlockQ8_0],
    stride: usize,
    x: &[BlockQ8_0],
    y: &mut [f32],
    rows: usize,
    add: bool,
) {
    let n = y.len() / rows.max(1);
    let nb = x.len() / n.max(1);
    if rows == 0 || nb == 0 || x.len() > INT8_BLOCKS || n * rows != y.len() || n * nb != x.len() {
        return super::portable::int8_rows(w, stride, x, y, rows, add);
    }
    let mut dx = [0.0f32; INT8_BLOCKS];
    for (d, b) in dx.iter_mut().zip(x) {
        *d = f16_to_f32(q8_0_scale(b));
    }
    #[cfg(not(picoformer_arm_mve))]
    let mut extended = [0u32; EXTENDED_BLOCKS * 16];
    // Every row's blocks lie in `w` (then every pair's do).
    if rows
        .saturating_sub(1)
        .saturating_mul(stride)
        .saturating_add(nb)
        > w.len()
    {
        return super::portable::int8_rows(w, stride, x, y, rows, add);
    }
    let row_bytes = stride * core::mem::size_of::<BlockQ8_0>();
    for ((xs, dxs), ys) in x
        .chunks_exact(nb)
        .zip(dx.chunks_exact(nb))
        .zip(y.chunks_exact_mut(rows))
    {
        // Each routine reads `Int8Rows` as its header says: Helium's the blocks as they are;
        // the DSP routines the quants extended once for all rows where they fit, else the
        // blocks.
        #[cfg(picoformer_arm_mve)]
        let (routine, xp): (unsafe extern "C" fn(*mut Int8Rows), *const u8) = (
            super::helium::picoformer_helium_int8_rows2,
            xs.as_ptr().cast(),
        );
        #[cfg(not(picoformer_arm_mve))]
        let (routine, xp): (unsafe extern "C" fn(*mut Int8Rows), *const u8) =
            match extended.get_mut(..nb * 16) {
                Some(e) => {
                    extend(xs, e);
                    (picoformer_cortexm_int8x_rows2, e.as_ptr().cast())
                }
                None => (picoformer_cortexm_int8_rows2, xs.as_ptr().cast()),
            };
        let run = |w: *const BlockQ8_0, stride: usize, pairs: usize, y: *mut f32| {
            let mut args = Int8Rows {
                w,
                stride,
                x: xp,
                dx: dxs.as_ptr(),
                blocks: nb,
                pairs,
                y,
            };
            // SAFETY: the callers below give `pairs` ≥ 1 pairs of rows of `nb` ≥ 1 blocks
            // inside `w` (checked above: row r starts at block r·stride) and room for
            // `2·pairs` sums at `y`; `dxs` holds `nb` f32 and `xp` `nb` whole blocks (`xs`)
            // or their `16·nb` extended words (word-aligned). The routine reads exactly those
            // (the blocks by unaligned word loads, which Armv7-M and Armv8-M Mainline allow
            // unless a firmware sets CCR.UNALIGN_TRP), writes the sums, and keeps the registers
            // AAPCS-VFP says a callee keeps.
            unsafe { routine(&mut args) };
        };
        // Whole pairs straight into y, unless they add to it.
        let mut done = 0;
        if !add && rows >= 2 {
            run(w.as_ptr(), row_bytes, rows / 2, ys.as_mut_ptr());
            done = rows / 2 * 2;
        }
        // The rest a pair (or the last row, twice) at a time through two sums.
        for r in (done..rows).step_by(2) {
            let Some(w0) = w.get(r * stride..) else {
                return;
            };
            let step = if r + 1 < rows { row_bytes } else { 0 };
            let mut sums = [0.0f32; 2];
            run(w0.as_ptr(), step, 1, sums.as_mut_ptr());
            for (yv, s) in ys.iter_mut().skip(r).take(2).zip(sums) {
                *yv = if add { *yv + s } else { s };
            }
        }
    }
}

#[repr(C, align(4))]
struct Aligned<T>(T);

/// Whether `got` is the product `x·Wᵀ` (rows of `x.len()` weights, `conv` to f32) that the
/// portable kernel gave as `want`: bit for bit from the FPU routines, which round as it does;
/// from Helium's, whose `VFMA` fuses each multiply-add and whose lanes differ, within the
/// rounding of the two sums, |got − want| ≤ 2·(n + 2)·2⁻²⁴·Σ|w·x| per row of n (a lost or
/// repeated step, or a wrong weight, is far outside).
fn same_product<E: Copy>(
    got: &[f32],
    want: &[f32],
    w: &[E],
    x: &[f32],
    conv: impl Fn(E) -> f32,
) -> bool {
    if !cfg!(picoformer_arm_mve) || x.is_empty() {
        return got
            .iter()
            .zip(want)
            .all(|(a, b)| a.to_bits() == b.to_bits());
    }
    let n = x.len();
    let u = 2.0 * (n as f32 + 2.0) / (1u32 << 24) as f32;
    got.iter()
        .zip(want)
        .zip(w.chunks_exact(n))
        .all(|((a, b), row)| {
            let mag: f32 = row.iter().zip(x).map(|(w, x)| (conv(*w) * x).abs()).sum();
            (a - b).abs() <= u * mag
        })
}

/// Self-test against the portable twins, for a firmware to run on the device: every finite f16
/// through the conversion, every length 0..=40 with one and three rows (f16: the two-row loop
/// and the row left over) and both alignments of the f16 rows, on values whose products and
/// sums round (so a different order would show). Returns the number of cases that differ bit
/// for bit.
#[doc(hidden)]
pub fn self_test() -> usize {
    let mut wf = [0.0f32; 120];
    let mut wh = Aligned([f16::ZERO; 130]);
    let wh = &mut wh.0;
    let mut x = [0.0f32; 48];
    let mut seed = 0x2545_f491u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    };
    for v in wf.iter_mut() {
        *v = next() * 3.1;
    }
    for v in wh.iter_mut() {
        *v = f16::from_f32(next() * 1.7);
    }
    for v in x.iter_mut() {
        *v = next() * 0.9;
    }
    // Subnormal weights in the products; every f16 (specials included) through the conversion.
    wh[0] = f16::from_bits(0x0001);
    wh[1] = f16::from_bits(0x83ff);
    let mut bad = 0;
    // Every finite f16 through the FPU's conversion: rows of 8 equal weights against x = 1 at
    // lane 0 only, so the sum is the converted weight (+0 for −0); and `f16_to_f32` alone.
    let mut one = [0.0f32; 8];
    one[0] = 1.0;
    let mut row = Aligned([f16::ZERO; 8]);
    for b in 0..=0xffffu16 {
        let v = f16::from_bits(b);
        if !v.is_finite() {
            continue;
        }
        row.0 = [v; 8];
        // Against `half`'s software conversion (the portable kernels convert with the FPU
        // here too, `f16_to_f32`): the value, and +0 for −0 as the lanes' sums give.
        let (got, want) = (dot_f16(&row.0, &one), f16::to_f32(v) + 0.0);
        bad += usize::from(got.to_bits() != want.to_bits());
        bad += usize::from(f16_to_f32(v).to_bits() != f16::to_f32(v).to_bits());
        // f32 → f16 on this value and on the f32 values around it (ties between two halves,
        // the next one up and down), against `half`'s software rounding.
        let f = f16::to_f32(v);
        for g in [
            f,
            f32::from_bits(f.to_bits() + 0x1000),
            f32::from_bits(f.to_bits() + 1),
        ] {
            for g in [g, f32::from_bits(g.to_bits().saturating_sub(2))] {
                bad += usize::from(f32_to_f16(g).to_bits() != f16::from_f32(g).to_bits());
            }
        }
    }
    for cols in 0..=40usize {
        let rows = 3;
        let mut y = [0.0f32; 3];
        let mut want = [0.0f32; 3];
        if cols * rows <= wf.len() {
            let w = &wf[..cols * rows];
            matvec_f32(w, &x[..cols], &mut y);
            let _ = super::portable::matvec(w, cols, &x[..cols], &mut want);
            bad += usize::from(!same_product(&y, &want, w, &x[..cols], |v| v));
        }
        // Three f16 rows: two through the two-row loop where cols is whole steps and the rows
        // are aligned (off = 0), then the one left; all through the one-row path otherwise.
        for off in 0..2 {
            let w = &wh[off..off + 3 * cols];
            let mut y3 = [0.0f32; 3];
            let mut want3 = [0.0f32; 3];
            matvec_f16(w, &x[..cols], &mut y3);
            let _ = super::portable::matvec(w, cols, &x[..cols], &mut want3);
            bad += usize::from(!same_product(&y3, &want3, w, &x[..cols], f16::to_f32));
        }
        for off in 0..2 {
            let n = cols.min(48);
            let w = &wh[off..off + n];
            let mut y1 = [0.0f32; 1];
            let mut want1 = [0.0f32; 1];
            matvec_f16(w, &x[..n], &mut y1);
            let _ = super::portable::matvec(w, n, &x[..n], &mut want1);
            let same =
                y1[0].to_bits() == want1[0].to_bits() || (y1[0].is_nan() && want1[0].is_nan());
            bad += usize::from(!same);
        }
    }
    // The f16 bias and attention's weighted values against their loops, every length 0..=40,
    // the bias at both alignments.
    for n in 0..=40usize {
        for off in 0..2 {
            let (mut y, mut want) = ([0.0f32; 40], [0.0f32; 40]);
            for (a, b) in y.iter_mut().zip(want.iter_mut()) {
                (*a, *b) = (x[0] + 0.0, x[0]);
            }
            let b = &wh[off..off + n];
            add_f16(&mut y[..n], b);
            for (v, bb) in want[..n].iter_mut().zip(b) {
                *v += f16::to_f32(*bb);
            }
            bad += usize::from(y.map(f32::to_bits) != want.map(f32::to_bits));
        }
        let (mut o, mut want) = ([0.0f32; 40], [0.0f32; 40]);
        for ((a, b), v) in o.iter_mut().zip(want.iter_mut()).zip(&wf) {
            (*a, *b) = (*v, *v);
        }
        axpy_f32(&mut o[..n], &x[..n], 0.37);
        for (v, xv) in want[..n].iter_mut().zip(&x[..n]) {
            *v += 0.37 * xv;
        }
        bad += usize::from(o.map(f32::to_bits) != want.map(f32::to_bits));
    }
    // (The Q8_0 routines only where the build has them: picoformer's feature `q8_0`.)
    #[cfg(picoformer_arm_dsp)]
    if crate::q8_0::BUILT {
        bad += int8_self_test(&mut next);
    }
    // Q8_0 weights × f32 activations by Helium: 1 to 3 rows of 1 to 3 blocks, every quant and
    // scales of both signs (Helium fuses the multiply-adds: `same_product`'s bound).
    #[cfg(picoformer_arm_mve)]
    if crate::q8_0::BUILT {
        use crate::q8_0::q8_0_block;
        let mut w = [[0u8; 34]; 9];
        for (i, b) in w.iter_mut().enumerate() {
            let q: [i8; 32] = core::array::from_fn(|j| ((i * 37 + j * 11) % 256) as u8 as i8);
            *b = q8_0_block(f16::from_f32(next() * 0.05), &q);
        }
        let mut xs = [0.0f32; 96];
        for v in xs.iter_mut() {
            *v = next() * 2.0;
        }
        for nb in 1..=3usize {
            for rows in 1..=3usize {
                let (mut y, mut want) = ([0.0f32; 3], [0.0f32; 3]);
                let (w, x) = (&w[..rows * nb], &xs[..32 * nb]);
                matvec_q8(w, x, &mut y[..rows]);
                let _ = super::matvec_q8_portable(w, x, &mut want[..rows]);
                let mut wf = [0.0f32; 9 * 32];
                let wf = &mut wf[..rows * nb * 32];
                let _ = crate::q8_0::dequantize_q8_0(w, wf);
                bad += usize::from(!same_product(&y[..rows], &want[..rows], wf, x, |v| v));
            }
        }
    }
    bad
}

/// The int8 path's DSP product against the portable one, bit for bit: 1 to 4 blocks per row,
/// rows packed or a block apart, 1 to 5 rows (one and two pairs, the row left over), 1 or 2
/// positions, written or added to; weight quants over all of −128..=127, scales of both signs
/// and a subnormal one, activations quantised as the int8 path quantises them.
#[cfg(picoformer_arm_dsp)]
fn int8_self_test(next: &mut impl FnMut() -> f32) -> usize {
    use crate::q8_0::{q8_0_block, quantize_blocks};
    let mut w = [[0u8; 34]; 24];
    for (i, b) in w.iter_mut().enumerate() {
        let q: [i8; 32] = core::array::from_fn(|_| (next() * 128.5).clamp(-128.0, 127.0) as i8);
        let d = match i {
            3 => f16::from_bits(0x0003),
            _ => f16::from_f32(next() * 0.07),
        };
        *b = q8_0_block(d, &q);
    }
    w[0][2] = 0x80; // −128
    let mut bad = 0;
    for nb in 1..=4usize {
        for n in 1..=2usize {
            // (Quantised a block at a time: the test's frame is part of the firmware's stack
            // peak.)
            let (mut xq, mut sums) = ([[0u8; 34]; 8], [0i32; 8]);
            let (xq, sums) = (&mut xq[..n * nb], &mut sums[..n * nb]);
            for (b, s) in xq.iter_mut().zip(sums.iter_mut()) {
                let xf: [f32; 32] = core::array::from_fn(|_| next() * 3.0);
                quantize_blocks(&xf, core::slice::from_mut(b), core::slice::from_mut(s));
            }
            for stride in [nb, nb + 1] {
                // Up to five rows: two pairs in one call, and the row left over.
                for rows in 1..=5usize {
                    for add in [false, true] {
                        let mut y = [0.0f32; 10];
                        for v in y.iter_mut() {
                            *v = next();
                        }
                        let mut want = y;
                        let (y, want) = (&mut y[..n * rows], &mut want[..n * rows]);
                        int8_rows(&w, stride, xq, y, rows, add);
                        super::portable::int8_rows(&w, stride, xq, want, rows, add);
                        let same = y
                            .iter()
                            .zip(want.iter())
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        bad += usize::from(!same);
                    }
                }
            }
        }
    }
    // Rows longer than the extended activations hold (17 blocks): the routine that extends
    // them as it goes (one pair; the row left over takes the same routine).
    let mut wl = [[0u8; 34]; 2 * 17];
    for b in wl.iter_mut() {
        let q: [i8; 32] = core::array::from_fn(|_| (next() * 128.5).clamp(-128.0, 127.0) as i8);
        *b = q8_0_block(f16::from_f32(next() * 0.07), &q);
    }
    let (mut xq, mut sums) = ([[0u8; 34]; 17], [0i32; 17]);
    for (b, s) in xq.iter_mut().zip(sums.iter_mut()) {
        let xf: [f32; 32] = core::array::from_fn(|_| next() * 3.0);
        quantize_blocks(&xf, core::slice::from_mut(b), core::slice::from_mut(s));
    }
    let (mut y, mut want) = ([0.0f32; 2], [0.0f32; 2]);
    int8_rows(&wl, 17, &xq, &mut y, 2, false);
    super::portable::int8_rows(&wl, 17, &xq, &mut want, 2, false);
    bad += usize::from(y.map(f32::to_bits) != want.map(f32::to_bits));
    bad
}
