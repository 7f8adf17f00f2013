//! Armv8.1-M Helium (MVE: Cortex-M55, M85) routines for the Cortex-M kernels of `cortexm.rs`,
//! which calls them where the build has the feature `arm-mve` (`build.rs` sets
//! `picoformer_arm_mve`): the f32 and f16 two-row matrix-vector products and the int8 path's
//! two-row product, on 128-bit vectors, with the same results bit for bit as the FPU and DSP
//! routines and the portable kernels.
//!
//! - f32 and f16: the eight lanes of the portable kernel (element i in lane i mod 8) are two
//!   vectors per row, lanes 0–3 and 4–7; each step multiplies (`VMUL.F32`) and then adds
//!   (`VADD.F32`), rounding twice as Rust's `acc += w * x` does (a fused `VFMA` would not be the
//!   portable result). f16 weights come four at a time by a widening load (`VLDRH.U32`, one
//!   half per 32-bit lane) and are converted by `VCVTB.F32.F16`. Per 16 multiply-adds (two rows
//!   of 8): f32 15 instructions, f16 19 (the FPU routines: 19 and 37).
//! - int8 path: each block's 32 products by two byte loads and two `VMLADAV(A).S8` (sixteen
//!   products summed exactly into a general register), then `sum += (d_w·d_x)·dot` in f32 as
//!   the portable kernel computes it. Per block of 2 × 32 multiply-adds about 27 instructions
//!   (the DSP routine: 122).
//!
//! The loops are low-overhead loops (`DLS`/`LE`). Instructions execute in beats (two per
//! 128-bit instruction on an M55), so under QEMU's instruction count a Helium instruction
//! counts one, as a scalar one does: cycles on silicon are not instructions.
#![allow(unsafe_code)]

use half::f16;

use super::cortexm::{next_pair, Int8Rows};

// The float two-row routines' pair start: r4 = the pairs (the fifth argument), r5 = x, r6 =
// steps, kept; per pair the accumulators q2–q5 at +0, x from its start, the step loop in lr.
macro_rules! pair_start {
    () => {
        concat!(
            "push {{r4-r7, lr}}\n",
            "vpush {{d8-d15}}\n",
            "ldr r4, [sp, #84]\n",
            "mov r5, r1\n",
            "mov r6, r2\n",
            "2:\n",
            "vmov.i32 q2, #0\n",
            "vmov.i32 q3, #0\n",
            "vmov.i32 q4, #0\n",
            "vmov.i32 q5, #0\n",
            "mov r1, r5\n",
            "dls lr, r6",
        )
    };
}

// Both rows' lanes reduced as the portable kernel does: q2 + q3 gives a0 + a4, a1 + a5, a2 + a6,
// a3 + a7 in s8–s11, then ((s8 + s10) + (s9 + s11)); row 1 (q4, q5) likewise into s16.
macro_rules! lanes2 {
    () => {
        concat!(
            "vadd.f32 q2, q2, q3\n",
            "vadd.f32 q4, q4, q5\n",
            "vadd.f32 s8, s8, s10\n",
            "vadd.f32 s9, s9, s11\n",
            "vadd.f32 s8, s8, s9\n",
            "vadd.f32 s16, s16, s18\n",
            "vadd.f32 s17, s17, s19\n",
            "vadd.f32 s16, s16, s17",
        )
    };
}

// AAPCS-VFP: q0–q3 (s0–s15), r0–r3 and r12 are the caller's to lose; q4–q7 (s16–s31) and r4–r8
// and lr used here are saved. The two-row routines: r0 = w (row 0; row 1 right after it, rows
// of whole steps), r1 = x, r2 = steps of 8 (at least 1), r3 = y; the fifth argument (on the
// stack) the pairs of consecutive rows to run (at least 1), each pair's two sums stored at y
// (the lanes start at +0 and are reduced in the portable kernel's order).
core::arch::global_asm!(
    ".syntax unified",
    ".thumb",
    ".arch armv8.1-m.main",
    // (The FPU first: `.fpu` would otherwise take back the MVE floating-point extension.)
    ".fpu fpv5-sp-d16",
    ".arch_extension mve.fp",
    // f32: x in q0, q1; row 0's accumulators q2, q3; row 1's q4, q5; weights q6, q7.
    ".section .text.picoformer_helium_dot8x2_f32,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_helium_dot8x2_f32,%function",
    "picoformer_helium_dot8x2_f32:",
    pair_start!(),
    "add r12, r0, r6, lsl #5",
    "1:",
    "vldrw.u32 q0, [r1], #16",
    "vldrw.u32 q1, [r1], #16",
    "vldrw.u32 q6, [r0], #16",
    "vldrw.u32 q7, [r0], #16",
    "vmul.f32 q6, q6, q0",
    "vmul.f32 q7, q7, q1",
    "vadd.f32 q2, q2, q6",
    "vadd.f32 q3, q3, q7",
    "vldrw.u32 q6, [r12], #16",
    "vldrw.u32 q7, [r12], #16",
    "vmul.f32 q6, q6, q0",
    "vmul.f32 q7, q7, q1",
    "vadd.f32 q4, q4, q6",
    "vadd.f32 q5, q5, q7",
    "le lr, 1b",
    lanes2!(),
    next_pair!("r12"),
    "vpop {{d8-d15}}",
    "pop {{r4-r7, pc}}",
    ".size picoformer_helium_dot8x2_f32, . - picoformer_helium_dot8x2_f32",
    // f16: the same, each weight vector a widening load of four halves and a conversion.
    ".section .text.picoformer_helium_dot8x2_f16,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_helium_dot8x2_f16,%function",
    "picoformer_helium_dot8x2_f16:",
    pair_start!(),
    "add r2, r0, r6, lsl #4",
    "1:",
    "vldrw.u32 q0, [r1], #16",
    "vldrw.u32 q1, [r1], #16",
    "vldrh.u32 q6, [r0], #8",
    "vldrh.u32 q7, [r0], #8",
    "vcvtb.f32.f16 q6, q6",
    "vcvtb.f32.f16 q7, q7",
    "vmul.f32 q6, q6, q0",
    "vmul.f32 q7, q7, q1",
    "vadd.f32 q2, q2, q6",
    "vadd.f32 q3, q3, q7",
    "vldrh.u32 q6, [r2], #8",
    "vldrh.u32 q7, [r2], #8",
    "vcvtb.f32.f16 q6, q6",
    "vcvtb.f32.f16 q7, q7",
    "vmul.f32 q6, q6, q0",
    "vmul.f32 q7, q7, q1",
    "vadd.f32 q4, q4, q6",
    "vadd.f32 q5, q5, q7",
    "le lr, 1b",
    lanes2!(),
    next_pair!("r2"),
    "vpop {{d8-d15}}",
    "pop {{r4-r7, pc}}",
    ".size picoformer_helium_dot8x2_f16, . - picoformer_helium_dot8x2_f16",
    // int8 path, pairs of rows, one position: r0 points at the DSP routines' `Int8Rows` (rows
    // `stride` bytes apart, `pairs` pairs, their sums to y), kept in r3. x's quants in q0, q1, a row's in q2, q3; the blocks'
    // integer sums in r0 (row 0) and r2 (row 1) (`VMLADAV` takes even registers); the f32
    // sums in s16, s17, dx in s18, the weights' scales in s19, s20.
    ".section .text.picoformer_helium_int8_rows2,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_helium_int8_rows2,%function",
    "picoformer_helium_int8_rows2:",
    "push {{r4-r8, lr}}",
    "vpush {{s16-s23}}",
    "mov r3, r0",
    "2:",
    "ldm r3, {{r4-r8}}",
    "add r5, r4, r5",
    "movs r0, #0",
    "vmov s16, r0",
    "vmov s17, r0",
    "dls lr, r8",
    "1:",
    "ldrh r1, [r4], #2",
    "vmov s19, r1",
    "vcvtb.f32.f16 s19, s19",
    "ldrh r1, [r5], #2",
    "vmov s20, r1",
    "vcvtb.f32.f16 s20, s20",
    "vldmia r7!, {{s18}}",
    "adds r6, r6, #2",
    "vldrb.u8 q0, [r6], #16",
    "vldrb.u8 q1, [r6], #16",
    "vldrb.u8 q2, [r4], #16",
    "vldrb.u8 q3, [r4], #16",
    "vmladav.s8 r0, q2, q0",
    "vmladava.s8 r0, q3, q1",
    "vldrb.u8 q2, [r5], #16",
    "vldrb.u8 q3, [r5], #16",
    "vmladav.s8 r2, q2, q0",
    "vmladava.s8 r2, q3, q1",
    "vmul.f32 s19, s19, s18",
    "vmul.f32 s20, s20, s18",
    "vmov s21, r0",
    "vcvt.f32.s32 s21, s21",
    "vmla.f32 s16, s19, s21",
    "vmov s21, r2",
    "vcvt.f32.s32 s21, s21",
    "vmla.f32 s17, s20, s21",
    "le lr, 1b",
    // The pair's sums to y; the next pair two rows on.
    "ldr r4, [r3]",
    "ldr r5, [r3, #4]",
    "add r4, r4, r5, lsl #1",
    "str r4, [r3]",
    "ldr r1, [r3, #24]",
    "vstmia r1!, {{s16-s17}}",
    "str r1, [r3, #24]",
    "ldr r1, [r3, #20]",
    "subs r1, r1, #1",
    "str r1, [r3, #20]",
    "bne 2b",
    "vpop {{s16-s23}}",
    "pop {{r4-r8, pc}}",
    ".size picoformer_helium_int8_rows2, . - picoformer_helium_int8_rows2",
    // Q8_0 weights × f32 activations (`matvec_q8_portable`'s numbers): per row, per block,
    // the 32 weights dequantised (`VLDRB.S32` widening four quants to words, `VCVT.F32.S32`,
    // times the block's scale), multiplied by x and summed in eight lanes as `dot_of` does,
    // the lanes reduced in its order and the block's dot added to the row's sum. r0 = the rows'
    // blocks (34 bytes each, `blocks` per row, rows consecutive), r1 = x, r2 = blocks per row
    // (at least 1), r3 = y; the fifth argument (on the stack) the rows (at least 1). The
    // scale goes to a general register for `VMUL.F32 Qd, Qn, Rm`. Per block about 60
    // instructions.
    ".section .text.picoformer_helium_q8_rows,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_helium_q8_rows,%function",
    "picoformer_helium_q8_rows:",
    "push {{r4-r7, lr}}",
    "vpush {{d8-d15}}",
    "ldr r4, [sp, #84]",
    "mov r5, r1",
    "mov r6, r2",
    "2:",
    "mov r1, r5",
    "movs r7, #0",
    "vmov s24, r7",
    "dls lr, r6",
    "1:",
    "ldrh r7, [r0], #2",
    "vmov s25, r7",
    "vcvtb.f32.f16 s25, s25",
    "vmov r7, s25",
    "vmov.i32 q2, #0",
    "vmov.i32 q3, #0",
    ".rept 4",
    "vldrw.u32 q0, [r1], #16",
    "vldrw.u32 q1, [r1], #16",
    "vldrb.s32 q4, [r0], #4",
    "vldrb.s32 q5, [r0], #4",
    "vcvt.f32.s32 q4, q4",
    "vcvt.f32.s32 q5, q5",
    "vmul.f32 q4, q4, r7",
    "vmul.f32 q5, q5, r7",
    "vmul.f32 q4, q4, q0",
    "vmul.f32 q5, q5, q1",
    "vadd.f32 q2, q2, q4",
    "vadd.f32 q3, q3, q5",
    ".endr",
    "vadd.f32 q2, q2, q3",
    "vadd.f32 s8, s8, s10",
    "vadd.f32 s9, s9, s11",
    "vadd.f32 s8, s8, s9",
    "vadd.f32 s24, s24, s8",
    "le lr, 1b",
    "vstr s24, [r3]",
    "adds r3, r3, #4",
    "subs r4, r4, #1",
    "bne 2b",
    "vpop {{d8-d15}}",
    "pop {{r4-r7, pc}}",
    ".size picoformer_helium_q8_rows, . - picoformer_helium_q8_rows",
);

extern "C" {
    /// Two rows of f32 (see the assembly's header).
    pub(super) fn picoformer_helium_dot8x2_f32(
        w: *const f32,
        x: *const f32,
        steps: usize,
        y: *mut f32,
        pairs: usize,
    );
    /// Two rows of f16 (see the assembly's header).
    pub(super) fn picoformer_helium_dot8x2_f16(
        w: *const f16,
        x: *const f32,
        steps: usize,
        y: *mut f32,
        pairs: usize,
    );
    /// Q8_0 rows × f32 activations (see the assembly's header).
    pub(super) fn picoformer_helium_q8_rows(
        w: *const crate::q8_0::BlockQ8_0,
        x: *const f32,
        blocks: usize,
        y: *mut f32,
        rows: usize,
    );
    /// The int8 path's pairs of rows (the DSP routines' arguments).
    pub(super) fn picoformer_helium_int8_rows2(args: *mut Int8Rows);
}
