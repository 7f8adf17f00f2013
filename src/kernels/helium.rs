//! Armv8.1-M Helium (MVE: Cortex-M55, M85) routines for the Cortex-M kernels of `cortexm.rs`,
//! which calls them where the build has the feature `arm-mve` (`build.rs` sets
//! `picoformer_arm_mve`): the f32 and f16 two-row matrix-vector products, Q8_0 weights with f32
//! activations, and the int8 path's two-row product, on 128-bit vectors.
//!
//! - f32 and f16: eight lanes per row (two vectors), each step a fused multiply-add
//!   (`VFMA.F32`), as the x86, Arm and WebAssembly SIMD kernels do: not the portable kernel's
//!   result bit for bit (it rounds each product, `acc += w * x`) but within the rounding of the
//!   sums (the self-test's bound, `same_product` in `cortexm.rs`). f16 weights come eight at a
//!   time (`VLDRH.U16`) and are converted by `VCVTB.F32.F16` (the even ones) and
//!   `VCVTT.F32.F16` (the odd ones), against x loaded de-interleaved (`VLD20`/`VLD21`: even
//!   elements in q0, odd in q1). Per 16 multiply-adds (two rows of 8): f32 10 instructions,
//!   f16 12 (the FPU routines: 19.5 and 35.5).
//! - Q8_0 with f32 activations: likewise fused, about 41 instructions per block of 32.
//! - int8 path: each block's 32 products by two byte loads and two `VMLADAV(A).S8` (sixteen
//!   products summed exactly into a general register), then `sum += (d_w·d_x)·dot` in f32 as
//!   the portable kernel computes it, bit for bit. Per block of 2 × 32 multiply-adds about 27
//!   instructions (the DSP routine: 99).
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

// Both rows' eight lanes reduced: q2 + q3 lane by lane into s8–s11, then
// ((s8 + s10) + (s9 + s11)); row 1 (q4, q5) likewise into s16.
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
// (the lanes start at +0 and are reduced as `lanes2!` says).
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
    "vfma.f32 q2, q6, q0",
    "vfma.f32 q3, q7, q1",
    "vldrw.u32 q6, [r12], #16",
    "vldrw.u32 q7, [r12], #16",
    "vfma.f32 q4, q6, q0",
    "vfma.f32 q5, q7, q1",
    "le lr, 1b",
    lanes2!(),
    next_pair!("r12"),
    "vpop {{d8-d15}}",
    "pop {{r4-r7, pc}}",
    ".size picoformer_helium_dot8x2_f32, . - picoformer_helium_dot8x2_f32",
    // f16: x de-interleaved (even elements in q0, odd in q1); each row's eight halves in q6,
    // converted into q7 (bottom halves, then top halves) for row 0's q2, q3, row 1's q4, q5.
    ".section .text.picoformer_helium_dot8x2_f16,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_helium_dot8x2_f16,%function",
    "picoformer_helium_dot8x2_f16:",
    pair_start!(),
    "add r2, r0, r6, lsl #4",
    "1:",
    "vld20.32 {{q0, q1}}, [r1]",
    "vld21.32 {{q0, q1}}, [r1]!",
    "vldrh.u16 q6, [r0], #16",
    "vcvtb.f32.f16 q7, q6",
    "vfma.f32 q2, q7, q0",
    "vcvtt.f32.f16 q7, q6",
    "vfma.f32 q3, q7, q1",
    "vldrh.u16 q6, [r2], #16",
    "vcvtb.f32.f16 q7, q6",
    "vfma.f32 q4, q7, q0",
    "vcvtt.f32.f16 q7, q6",
    "vfma.f32 q5, q7, q1",
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
    // Q8_0 weights × f32 activations: per row, per block, the 32 quants widened to words
    // (`VLDRB.S32`, four at a time) and converted (`VCVT.F32.S32`), multiplied by x and summed
    // by `VFMA` in eight lanes (q2, q3), which then take the block's scale into the row's lanes
    // (q6, q7: `VFMA.F32 Qda, Qn, Rm`, the scale in a general register), reduced at the row's
    // end. r0 = the rows' blocks (34 bytes each, `blocks` per row, rows consecutive), r1 = x,
    // r2 = blocks per row (at least 1), r3 = y; the fifth argument (on the stack) the rows (at
    // least 1). Per block 41 instructions.
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
    "vmov.i32 q6, #0",
    "vmov.i32 q7, #0",
    "dls lr, r6",
    "1:",
    "ldrh r7, [r0], #2",
    "vmov s0, r7",
    "vcvtb.f32.f16 s0, s0",
    "vmov r7, s0",
    "vmov.i32 q2, #0",
    "vmov.i32 q3, #0",
    ".rept 4",
    "vldrw.u32 q0, [r1], #16",
    "vldrw.u32 q1, [r1], #16",
    "vldrb.s32 q4, [r0], #4",
    "vldrb.s32 q5, [r0], #4",
    "vcvt.f32.s32 q4, q4",
    "vcvt.f32.s32 q5, q5",
    "vfma.f32 q2, q4, q0",
    "vfma.f32 q3, q5, q1",
    ".endr",
    "vfma.f32 q6, q2, r7",
    "vfma.f32 q7, q3, r7",
    "le lr, 1b",
    "vadd.f32 q6, q6, q7",
    "vadd.f32 s24, s24, s26",
    "vadd.f32 s25, s25, s27",
    "vadd.f32 s24, s24, s25",
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
