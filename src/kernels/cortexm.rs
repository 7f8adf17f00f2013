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

use half::f16;

// The inner loops, in assembly: eight accumulators s8–s15 (lane l takes every element i with
// i mod 8 = l), eight x values s0–s7 per step, `VMLA.F32` (multiply, round, add, round: not
// fused, like Rust's `acc += w * x`). AAPCS-VFP: s0–s15, r0–r3 and r12 are the caller's to
// lose; the s16–s27 and r4–r6 used here are saved. Arguments: r0 = w, r1 = x, r2 = steps of 8
// (at least 1), r3 = the eight accumulators (read at entry, written at exit). Per step of 8
// multiply-adds: 22 instructions for f16, 12 for f32. (Rust's `sreg` operands of `asm!` need
// the unstable `vfp2` target feature on these targets; whole functions in `global_asm!` do not.)
core::arch::global_asm!(
    ".syntax unified",
    // Thumb-2 encodings whatever the target's default instruction set (the routines are
    // `.thumb_func`s; an A32 target would call them through `blx`).
    ".thumb",
    // The FPU every eabihf Cortex-M has at least (M4F's; FPv5 adds to it): module-level
    // assembly does not get the target's features.
    ".fpu fpv4-sp-d16",
    ".section .text.picoformer_cortexm_dot8_f16,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_dot8_f16,%function",
    // Eight f16 per step: four words in one LDM, two VMOVs of two words each into s16–s19,
    // each word split by VCVTB (low half) and VCVTT (high half) into s20–s27.
    "picoformer_cortexm_dot8_f16:",
    "push {{r4, r5, r6}}",
    "vpush {{s16-s27}}",
    "vldmia r3, {{s8-s15}}",
    "1:",
    "vldmia r1!, {{s0-s7}}",
    "ldmia r0!, {{r4, r5, r6, r12}}",
    "vmov s16, s17, r4, r5",
    "vmov s18, s19, r6, r12",
    "vcvtb.f32.f16 s20, s16",
    "vcvtt.f32.f16 s21, s16",
    "vcvtb.f32.f16 s22, s17",
    "vcvtt.f32.f16 s23, s17",
    "vcvtb.f32.f16 s24, s18",
    "vcvtt.f32.f16 s25, s18",
    "vcvtb.f32.f16 s26, s19",
    "vcvtt.f32.f16 s27, s19",
    "vmla.f32 s8, s20, s0",
    "vmla.f32 s9, s21, s1",
    "vmla.f32 s10, s22, s2",
    "vmla.f32 s11, s23, s3",
    "vmla.f32 s12, s24, s4",
    "vmla.f32 s13, s25, s5",
    "vmla.f32 s14, s26, s6",
    "vmla.f32 s15, s27, s7",
    "subs r2, r2, #1",
    "bne 1b",
    "vstmia r3, {{s8-s15}}",
    "vpop {{s16-s27}}",
    "pop {{r4, r5, r6}}",
    "bx lr",
    ".size picoformer_cortexm_dot8_f16, . - picoformer_cortexm_dot8_f16",
    // Two f16 rows at once, each eight activations loaded once for both: row 0 at r0, row 1
    // right after it (r0 + 16·steps bytes: rows of whole steps), accumulators s8–s15 (row 0)
    // and s16–s23 (row 1), r3 pointing at the sixteen. Each word is split in place (VCVTT
    // into the next register first, then VCVTB over itself): s24–s31 hold four words' values.
    ".section .text.picoformer_cortexm_dot8x2_f16,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_dot8x2_f16,%function",
    "picoformer_cortexm_dot8x2_f16:",
    "push {{r4, r5, r6, r7}}",
    "vpush {{s16-s31}}",
    "add r12, r0, r2, lsl #4",
    "vldmia r3, {{s8-s23}}",
    "1:",
    "vldmia r1!, {{s0-s7}}",
    // Row 0.
    "ldmia r0!, {{r4, r5, r6, r7}}",
    "vmov s24, s25, r4, r5",
    "vmov s28, s29, r6, r7",
    "vcvtt.f32.f16 s26, s24",
    "vcvtb.f32.f16 s24, s24",
    "vcvtt.f32.f16 s27, s25",
    "vcvtb.f32.f16 s25, s25",
    "vcvtt.f32.f16 s30, s28",
    "vcvtb.f32.f16 s28, s28",
    "vcvtt.f32.f16 s31, s29",
    "vcvtb.f32.f16 s29, s29",
    "vmla.f32 s8, s24, s0",
    "vmla.f32 s9, s26, s1",
    "vmla.f32 s10, s25, s2",
    "vmla.f32 s11, s27, s3",
    "vmla.f32 s12, s28, s4",
    "vmla.f32 s13, s30, s5",
    "vmla.f32 s14, s29, s6",
    "vmla.f32 s15, s31, s7",
    // Row 1.
    "ldmia r12!, {{r4, r5, r6, r7}}",
    "vmov s24, s25, r4, r5",
    "vmov s28, s29, r6, r7",
    "vcvtt.f32.f16 s26, s24",
    "vcvtb.f32.f16 s24, s24",
    "vcvtt.f32.f16 s27, s25",
    "vcvtb.f32.f16 s25, s25",
    "vcvtt.f32.f16 s30, s28",
    "vcvtb.f32.f16 s28, s28",
    "vcvtt.f32.f16 s31, s29",
    "vcvtb.f32.f16 s29, s29",
    "vmla.f32 s16, s24, s0",
    "vmla.f32 s17, s26, s1",
    "vmla.f32 s18, s25, s2",
    "vmla.f32 s19, s27, s3",
    "vmla.f32 s20, s28, s4",
    "vmla.f32 s21, s30, s5",
    "vmla.f32 s22, s29, s6",
    "vmla.f32 s23, s31, s7",
    "subs r2, r2, #1",
    "bne 1b",
    "vstmia r3, {{s8-s23}}",
    "vpop {{s16-s31}}",
    "pop {{r4, r5, r6, r7}}",
    "bx lr",
    ".size picoformer_cortexm_dot8x2_f16, . - picoformer_cortexm_dot8x2_f16",
    // Eight f32 per step: one VLDM of the weights (s16–s23), one of x, eight VMLA.
    ".section .text.picoformer_cortexm_dot8_f32,\"ax\",%progbits",
    ".p2align 2",
    ".thumb_func",
    ".type picoformer_cortexm_dot8_f32,%function",
    "picoformer_cortexm_dot8_f32:",
    "vpush {{s16-s23}}",
    "vldmia r3, {{s8-s15}}",
    "1:",
    "vldmia r1!, {{s0-s7}}",
    "vldmia r0!, {{s16-s23}}",
    "vmla.f32 s8, s16, s0",
    "vmla.f32 s9, s17, s1",
    "vmla.f32 s10, s18, s2",
    "vmla.f32 s11, s19, s3",
    "vmla.f32 s12, s20, s4",
    "vmla.f32 s13, s21, s5",
    "vmla.f32 s14, s22, s6",
    "vmla.f32 s15, s23, s7",
    "subs r2, r2, #1",
    "bne 1b",
    "vstmia r3, {{s8-s15}}",
    "vpop {{s16-s23}}",
    "bx lr",
    ".size picoformer_cortexm_dot8_f32, . - picoformer_cortexm_dot8_f32",
);

extern "C" {
    fn picoformer_cortexm_dot8_f16(w: *const f16, x: *const f32, steps: usize, acc: *mut [f32; 8]);
    fn picoformer_cortexm_dot8x2_f16(
        w: *const f16,
        x: *const f32,
        steps: usize,
        acc: *mut [f32; 16],
    );
    fn picoformer_cortexm_dot8_f32(w: *const f32, x: *const f32, steps: usize, acc: *mut [f32; 8]);
}

/// The portable kernel's pairwise reduction of the eight lanes.
#[inline(always)]
fn reduce(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// `Σ w[i]·x[i]` over f32 (the shorter length), in the portable kernel's order.
fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let steps = n / 8;
    let mut acc = [0.0f32; 8];
    if steps > 0 {
        // SAFETY: the routine reads `8·steps` ≤ n values from each of `w` and `x` (both at
        // least n long, f32-aligned) and writes the eight accumulators of `acc`; it keeps the
        // registers AAPCS-VFP says a callee keeps.
        unsafe { picoformer_cortexm_dot8_f32(w.as_ptr(), x.as_ptr(), steps, &mut acc) };
    }
    for i in steps * 8..n {
        acc[i % 8] += w[i] * x[i];
    }
    reduce(acc)
}

/// `Σ w[i]·x[i]` over f16 weights converted by the FPU (the shorter length), in the portable
/// kernel's order. Rows not 4-byte aligned take the portable kernel (32-bit loads need it).
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
        // writes the eight accumulators of `acc`; it keeps the registers AAPCS-VFP says a
        // callee keeps.
        unsafe { picoformer_cortexm_dot8_f16(w.as_ptr(), x.as_ptr(), steps, &mut acc) };
    }
    for i in steps * 8..n {
        acc[i % 8] += half(w[i]) * x[i];
    }
    reduce(acc)
}

/// One f16 as f32 (the remainder of a row: fewer than 8 per row).
#[inline(always)]
fn half(v: f16) -> f32 {
    v.to_f32()
}

/// `y = x·Wᵀ` for f32 weights `W[y.len(), x.len()]` (shapes checked by the caller).
pub(crate) fn matvec_f32(w: &[f32], x: &[f32], y: &mut [f32]) {
    let cols = x.len();
    if cols == 0 {
        y.fill(0.0);
        return;
    }
    for (yr, wr) in y.iter_mut().zip(w.chunks_exact(cols)) {
        *yr = dot_f32(wr, x);
    }
}

/// `y = x·Wᵀ` for f16 weights `W[y.len(), x.len()]` (shapes checked by the caller).
pub(crate) fn matvec_f16(w: &[f16], x: &[f32], y: &mut [f32]) {
    let cols = x.len();
    if cols == 0 {
        y.fill(0.0);
        return;
    }
    // Two rows at a time where rows are whole steps of 8 and 4-byte aligned: each activation
    // load serves both (41 instructions per 16 multiply-adds instead of 44).
    let mut done = 0;
    if cols.is_multiple_of(8) && (w.as_ptr() as usize).is_multiple_of(4) {
        for (y2, w2) in y.chunks_exact_mut(2).zip(w.chunks_exact(2 * cols)) {
            let mut acc = [0.0f32; 16];
            // SAFETY: `w2` is two rows of `cols` = 8·steps f16 (steps ≥ 1), 4-byte aligned (its
            // start is 2·cols·2 bytes, a multiple of 4, after `w`'s, which is checked), and `x`
            // holds `cols` f32; the routine reads exactly those, writes the sixteen accumulators
            // of `acc`, and keeps the registers AAPCS-VFP says a callee keeps.
            unsafe { picoformer_cortexm_dot8x2_f16(w2.as_ptr(), x.as_ptr(), cols / 8, &mut acc) };
            let (a0, a1) = acc.split_at(8);
            y2[0] = reduce(a0.try_into().unwrap_or([0.0; 8]));
            y2[1] = reduce(a1.try_into().unwrap_or([0.0; 8]));
        }
        done = y.len() / 2 * 2;
    }
    let (y, w) = (y.get_mut(done..), w.get(done * cols..));
    for (yr, wr) in y
        .unwrap_or_default()
        .iter_mut()
        .zip(w.unwrap_or_default().chunks_exact(cols))
    {
        *yr = dot_f16(wr, x);
    }
}

#[repr(C, align(4))]
struct Aligned<T>(T);

/// Self-test against the portable twins, for a firmware to run on the device: every finite f16
/// through the conversion, every length 0..=40 with one and three rows (f16: the two-row loop
/// and the row left over) and both alignments of the f16 rows, on values whose products and
/// sums round (so a different order would show). Returns the number of cases that differ bit
/// for bit.
#[doc(hidden)]
pub fn self_test() -> usize {
    let mut wf = [0.0f32; 48];
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
    // lane 0 only, so the sum is the converted weight (+0 for −0, as the portable sum gives).
    let mut one = [0.0f32; 8];
    one[0] = 1.0;
    let mut row = Aligned([f16::ZERO; 8]);
    for b in 0..=0xffffu16 {
        let v = f16::from_bits(b);
        if !v.is_finite() {
            continue;
        }
        row.0 = [v; 8];
        let (got, want) = (dot_f16(&row.0, &one), super::portable::dot_of(&row.0, &one));
        bad += usize::from(got.to_bits() != want.to_bits());
    }
    for cols in 0..=40usize {
        let rows = 3;
        let mut y = [0.0f32; 3];
        let mut want = [0.0f32; 3];
        if cols * rows <= wf.len() {
            matvec_f32(&wf[..cols * rows], &x[..cols], &mut y);
            let _ = super::portable::matvec(&wf[..cols * rows], cols, &x[..cols], &mut want);
            bad += usize::from(y.map(f32::to_bits) != want.map(f32::to_bits));
        }
        // Three f16 rows: two through the two-row loop where cols is whole steps and the rows
        // are aligned (off = 0), then the one left; all through the one-row path otherwise.
        for off in 0..2 {
            let w = &wh[off..off + 3 * cols];
            let mut y3 = [0.0f32; 3];
            let mut want3 = [0.0f32; 3];
            matvec_f16(w, &x[..cols], &mut y3);
            let _ = super::portable::matvec(w, cols, &x[..cols], &mut want3);
            bad += usize::from(y3.map(f32::to_bits) != want3.map(f32::to_bits));
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
    bad
}
