//! Every dispatched (SIMD) kernel against its portable twin: all lengths in a range, odd tails,
//! unaligned sub-slices, outputs pre-filled with NaN; the vector exp against f64; Q8_0 against
//! dequantise-then-portable.
//!
//! `PICOFORMER_REQUIRE_ISA=avx2` (or `avx512`, `avxvnni`, `neon`, `neondot`, `simd128`) makes
//! dispatch use that instruction set and these tests fail unless its kernels really ran
//! (`common/isa.rs`).
//! The tests see the library with the `std` feature (runtime detection on x86-64) through the
//! self dev-dependency in Cargo.toml.

#[path = "common/values.rs"]
mod values;

#[path = "common/isa.rs"]
mod isa;

use isa::{check_required_int8_isa, check_required_isa, use_required_isa};
use picoformer::kernels::{self, portable};
use picoformer::q8_0::{quantize_q8_0, BlockQ8_0};
use picoformer::{bf16, f16, Element, Tensor};
use values::values;

/// |a − b| <= tol · (1 + Σ|terms|) per element, where `mag` is the magnitude the sum was built from.
#[track_caller]
fn assert_close(got: &[f32], want: &[f32], mag: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, ((g, w), m)) in got.iter().zip(want).zip(mag).enumerate() {
        let bound = tol * (1.0 + m);
        assert!(
            (g - w).abs() <= bound,
            "{what}: element {i}: got {g}, want {w} (bound {bound})"
        );
    }
}

/// Σ_c |w[r, c]·x[i, c]| for every output (i, r) of an n × rows matrix product: the magnitude
/// each sum is built from, for [`assert_close`].
fn product_magnitudes(w: &[f32], x: &[f32], n: usize, rows: usize, cols: usize) -> Vec<f32> {
    (0..n * rows)
        .map(|o| {
            let (i, r) = (o / rows, o % rows);
            (0..cols)
                .map(|c| (w[r * cols + c] * x[i * cols + c]).abs())
                .sum()
        })
        .collect()
}

#[cfg(miri)]
const MAX_COLS: usize = 20;
#[cfg(not(miri))]
const MAX_COLS: usize = 130;
#[cfg(miri)]
const MAX_ROWS: usize = 5;
#[cfg(not(miri))]
const MAX_ROWS: usize = 13;

/// Runs matvec for every cols in 0..=MAX_COLS, rows in 1..=MAX_ROWS, offsets 0..=3.
fn check_matvec<E: Element>(conv: impl Fn(&[f32]) -> Vec<E>) {
    use_required_isa();
    let tol = 1e-5;
    for cols in 0..=MAX_COLS {
        for rows in 1..=MAX_ROWS {
            let off = (cols + rows) % 4;
            let wf = values((cols * 131 + rows) as u64, off + rows * cols);
            let w = conv(&wf);
            let xa = values(7 + cols as u64, off + cols);
            let (w, x) = (&w[off..], &xa[off..]);
            let mut want = vec![f32::NAN; rows];
            portable::matvec(w, cols, x, &mut want).unwrap();
            let mut got = vec![f32::NAN; rows + 3];
            kernels::matvec(E::as_tensor(w), x, &mut got[off % 3..off % 3 + rows]).unwrap();
            let mag: Vec<f32> = (0..rows)
                .map(|r| {
                    (0..cols)
                        .map(|c| (w[r * cols + c].to_f32() * x[c]).abs())
                        .sum()
                })
                .collect();
            assert_close(&got[off % 3..off % 3 + rows], &want, &mag, tol, "matvec");
            for (i, g) in got.iter().enumerate() {
                if i < off % 3 || i >= off % 3 + rows {
                    assert!(g.is_nan(), "matvec wrote outside y");
                }
            }
        }
    }
    check_required_isa();
}

#[test]
fn matvec_f32_matches_portable() {
    check_matvec::<f32>(|v| v.to_vec());
}

#[test]
fn matvec_f16_matches_portable() {
    check_matvec::<f16>(|v| v.iter().map(|&x| f16::from_f32(x)).collect());
}

#[test]
fn matvec_bf16_matches_portable() {
    check_matvec::<bf16>(|v| v.iter().map(|&x| bf16::from_f32(x)).collect());
}

/// matvec with the weights at every 4-byte offset within a cache line (the kernels align their
/// loads by taking the first columns apart: `aligning_peel` in `src/kernels/simd/gemv.rs`) and the
/// activations at their own offsets, on rows of whole vectors of every set (multiples of 16)
/// and others, 1..=9 rows (groups of four and the rest).
fn check_matvec_alignments<E: Element>(conv: impl Fn(&[f32]) -> Vec<E>) {
    use_required_isa();
    for cols in [16, 32, 48, 64, 80, 128, 136, 256] {
        for rows in [1, 4, 5, 8, 9] {
            let wf = values((cols * 7 + rows) as u64, rows * cols + 64);
            let wall = conv(&wf);
            let xa = values(cols as u64 + 3, cols + 32);
            // The first element of each buffer on a 64-byte boundary.
            let wa = wall.as_ptr().align_offset(64);
            let xs = xa.as_ptr().align_offset(64);
            assert!(wa < 32 && xs < 16, "allocations are at least 4-aligned");
            for wo in 0..64 / core::mem::size_of::<E>() {
                let xo = (wo * 5) % 16;
                let w = &wall[wa + wo..wa + wo + rows * cols];
                let x = &xa[xs + xo..xs + xo + cols];
                let mut want = vec![f32::NAN; rows];
                portable::matvec(w, cols, x, &mut want).unwrap();
                let mut got = vec![f32::NAN; rows];
                kernels::matvec(E::as_tensor(w), x, &mut got).unwrap();
                let mag = product_magnitudes(
                    &w.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
                    x,
                    1,
                    rows,
                    cols,
                );
                let what = format!("matvec cols {cols} rows {rows} w offset {wo} x offset {xo}");
                assert_close(&got, &want, &mag, 1e-5, &what);
            }
        }
    }
    check_required_isa();
}

#[test]
fn matvec_f32_at_every_alignment_matches_portable() {
    check_matvec_alignments::<f32>(|v| v.to_vec());
}

#[test]
fn matvec_f16_at_every_alignment_matches_portable() {
    check_matvec_alignments::<f16>(|v| v.iter().map(|&x| f16::from_f32(x)).collect());
}

/// matmul for n in 1..=9 positions (n = 1 goes to matvec), and up to 40 on wider rows.
fn check_matmul<E: Element>(conv: impl Fn(&[f32]) -> Vec<E>) {
    use_required_isa();
    #[cfg(miri)]
    let (cols_set, max_n): (Vec<usize>, usize) = ((1..=10).collect(), 4);
    #[cfg(not(miri))]
    let (cols_set, max_n): (Vec<usize>, usize) = (
        (1..=70)
            .chain([127, 128, 129, 511, 512, 513, 600, 1030])
            .collect(),
        9,
    );
    for &cols in &cols_set {
        // Wider rows at more positions: the broadcast form from 8 or 16 positions (and on
        // AVX2 the dot-product tiles over rows of 256 values or more).
        let more: &[usize] = if cols >= 127 && !cfg!(miri) {
            &[17, 18, 19, 25, 31, 40]
        } else {
            &[]
        };
        for rows in 1..=MAX_ROWS {
            for n in (1..=max_n).chain(more.iter().copied()) {
                let off = (cols + rows + n) % 4;
                let w = conv(&values((cols * 17 + rows) as u64, off + rows * cols));
                let xa = values((n * 3 + cols) as u64, off + n * cols);
                let (w, x) = (&w[off..], &xa[off..]);
                let mut want = vec![f32::NAN; n * rows];
                portable::matmul(w, cols, x, &mut want).unwrap();
                let mut got = vec![f32::NAN; n * rows + 1];
                kernels::matmul(E::as_tensor(w), cols, x, &mut got[1..]).unwrap();
                assert!(got[0].is_nan(), "matmul wrote before y");
                let wf: Vec<f32> = w.iter().map(|v| v.to_f32()).collect();
                let mag = product_magnitudes(&wf, x, n, rows, cols);
                assert_close(&got[1..], &want, &mag, 1e-5, "matmul");
            }
        }
    }
    check_required_isa();
}

#[test]
fn matmul_f32_matches_portable() {
    check_matmul::<f32>(|v| v.to_vec());
}

#[test]
fn matmul_f16_matches_portable() {
    check_matmul::<f16>(|v| v.iter().map(|&x| f16::from_f32(x)).collect());
}

#[test]
#[cfg_attr(miri, ignore = "slow under Miri; f32 and f16 cover the shared body")]
fn matmul_bf16_matches_portable() {
    check_matmul::<bf16>(|v| v.iter().map(|&x| bf16::from_f32(x)).collect());
}

/// The broadcast-form product (from one vector of positions: 4, 8 or 16): position blocks of
/// one and two vectors with partial last blocks, every tile height (24/12 or 12/6 rows, 4, 1)
/// with tails, one and several column blocks (256 columns with 16 lanes, 512 with 8 or 4), on
/// rows short enough for every instruction set to take it (< 256 values) and longer; f32,
/// f16 and Q8_0 weights (whose tiles are widened or dequantised into a buffer first).
#[test]
#[cfg_attr(miri, ignore = "slow under Miri; check_matmul covers small shapes")]
fn matmul_broadcast_tiles_match_portable() {
    use_required_isa();
    for cols in [32, 96, 224, 256, 288, 544] {
        for rows in [1, 3, 5, 12, 13, 18, 24, 25, 29, 41, 47, 53] {
            for n in [4, 7, 8, 9, 16, 17, 31, 32, 33, 40, 50, 70] {
                let wf = values((cols * 7 + rows) as u64, rows * cols);
                let xa = values((n * 5 + cols) as u64, 1 + n * cols);
                let x = &xa[1..]; // unaligned
                let mut q: Vec<BlockQ8_0> = vec![[0; 34]; rows * cols / 32];
                quantize_q8_0(&wf, &mut q).unwrap();
                let mut deq = vec![0.0f32; rows * cols];
                picoformer::q8_0::dequantize_q8_0(&q, &mut deq).unwrap();
                let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
                let whf: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
                for (t, wref) in [
                    (Tensor::F32(&wf), &wf),
                    (Tensor::F16(&wh), &whf),
                    (Tensor::Q8_0(&q), &deq),
                ] {
                    let mut want = vec![f32::NAN; n * rows];
                    portable::matmul(wref, cols, x, &mut want).unwrap();
                    let mut got = vec![f32::NAN; n * rows + 2];
                    kernels::matmul(t, cols, x, &mut got[1..=n * rows]).unwrap();
                    assert!(
                        got[0].is_nan() && got[n * rows + 1].is_nan(),
                        "wrote outside y"
                    );
                    let mag = product_magnitudes(wref, x, n, rows, cols);
                    let what = format!(
                        "matmul {n},{cols},{rows}, {} bytes per value",
                        t.element_bytes()
                    );
                    assert_close(&got[1..=n * rows], &want, &mag, 1e-5, &what);
                }
            }
        }
    }
    check_required_isa();
}

/// Packing into panels: every value where the layout puts it (`panel[k][q] = W[32j + q][k]`),
/// zeros past the last row, the panels on a cache line wherever the arena starts, and 16-bit and
/// Q8_0 weights widened exactly.
#[test]
fn panels_hold_the_weights_in_their_layout() {
    const P: usize = kernels::PANEL;
    for (rows, cols) in [(1, 1), (3, 5), (32, 2), (33, 7), (70, 64)] {
        let w = values((rows * 13 + cols) as u64, rows * cols);
        let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let whf: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
        let len = kernels::Panels::len(rows, cols).unwrap();
        assert_eq!(len, rows.div_ceil(P) * P * cols + 15);
        // Arenas starting at every f32 offset within a cache line.
        let mut big = vec![f32::NAN; len + 16];
        for off in 0..16 {
            for (t, want) in [(Tensor::F32(&w), &w), (Tensor::F16(&wh), &whf)] {
                let p = kernels::Panels::pack(t, cols, &mut big[off..off + len]).unwrap();
                assert_eq!((p.rows(), p.cols()), (rows, cols));
                let data = p.as_slice();
                assert_eq!(data.as_ptr() as usize % 64, 0, "panels not on a cache line");
                assert_eq!(data.len(), rows.div_ceil(P) * P * cols);
                for (i, v) in data.iter().enumerate() {
                    let (j, k, q) = (i / (P * cols), (i / P) % cols, i % P);
                    let r = j * P + q;
                    let expect = if r < rows { want[r * cols + k] } else { 0.0 };
                    assert_eq!(
                        v.to_bits(),
                        expect.to_bits(),
                        "{rows}x{cols}: row {r}, col {k}"
                    );
                }
            }
        }
    }
    // Q8_0: the dequantised values.
    let (rows, cols) = (35, 64);
    let w = values(9, rows * cols);
    let mut q: Vec<BlockQ8_0> = vec![[0; 34]; rows * cols / 32];
    quantize_q8_0(&w, &mut q).unwrap();
    let mut deq = vec![0.0f32; rows * cols];
    picoformer::q8_0::dequantize_q8_0(&q, &mut deq).unwrap();
    let mut a = vec![0.0f32; kernels::Panels::len(rows, cols).unwrap()];
    let mut b = a.clone();
    let pq = kernels::Panels::pack(Tensor::Q8_0(&q), cols, &mut a).unwrap();
    let pf = kernels::Panels::pack(Tensor::F32(&deq), cols, &mut b).unwrap();
    assert_eq!(pq.as_slice(), pf.as_slice());
}

/// The product over panels against the portable product over W in its own layout: one and
/// several column blocks (256), rows that end inside a vector, a panel or on its edge, every
/// tile height of positions (12, 8, 6, 4, 3, 2, 1 and their sums), unaligned X, NaN around Y.
#[test]
#[cfg_attr(
    miri,
    ignore = "slow under Miri; the unit tests of kernels::panels cover it"
)]
fn matmul_panels_match_portable() {
    use_required_isa();
    for cols in [1, 7, 32, 100, 256, 257, 600] {
        for rows in [1, 5, 8, 15, 16, 17, 31, 32, 33, 48, 70] {
            let w = values((cols * 11 + rows) as u64, rows * cols);
            let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
            let whf: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
            let len = kernels::Panels::len(rows, cols).unwrap();
            let (mut a, mut b) = (vec![0.0f32; len], vec![0.0f32; len]);
            let pf = kernels::Panels::pack(Tensor::F32(&w), cols, &mut a).unwrap();
            let ph = kernels::Panels::pack(Tensor::F16(&wh), cols, &mut b).unwrap();
            for n in [
                1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17, 23, 24, 25, 31, 40,
            ] {
                let xa = values((n * 7 + cols) as u64, 1 + n * cols);
                let x = &xa[1..];
                for (p, wref) in [(pf, &w), (ph, &whf)] {
                    let mut want = vec![f32::NAN; n * rows];
                    portable::matmul(wref, cols, x, &mut want).unwrap();
                    let mut got = vec![f32::NAN; n * rows + 2];
                    kernels::matmul_panels(p, x, &mut got[1..=n * rows]).unwrap();
                    assert!(
                        got[0].is_nan() && got[n * rows + 1].is_nan(),
                        "wrote outside y"
                    );
                    let mag = product_magnitudes(wref, x, n, rows, cols);
                    let what = format!("matmul_panels {n},{cols},{rows}");
                    assert_close(&got[1..=n * rows], &want, &mag, 1e-5, &what);
                }
            }
        }
    }
    check_required_isa();
}

/// Q8_0 against dequantise-then-portable, for 0..=8 blocks per row (and n = 1..=5 positions).
#[test]
fn q8_0_matches_dequantised_portable() {
    use_required_isa();
    // Up to 9 positions (the matrix-matrix path dequantises strips from 6 on) and 17 blocks
    // (two column blocks of the matrix-matrix kernel).
    let (blocks, max_n): (Vec<usize>, usize) = if cfg!(miri) {
        ((0..=2).collect(), 6)
    } else {
        ((0..=8).chain([16, 17]).collect(), 9)
    };
    for nb in blocks {
        let cols = 32 * nb;
        for rows in 1..=MAX_ROWS {
            let wf = values((nb * 31 + rows) as u64, rows * cols);
            let mut q: Vec<BlockQ8_0> = vec![[0; 34]; rows * nb];
            quantize_q8_0(&wf, &mut q).unwrap();
            let mut deq = vec![0.0f32; rows * cols];
            picoformer::q8_0::dequantize_q8_0(&q, &mut deq).unwrap();
            // Quantisation error is small: at most half a step of the block's scale (plus f16).
            for (a, b) in wf.iter().zip(&deq) {
                assert!((a - b).abs() <= 0.5 / 127.0 + 2e-3, "{a} vs {b}");
            }
            // The broadcast form on rows of 256 values or more.
            let more: &[usize] = if nb >= 8 && !cfg!(miri) {
                &[18, 25]
            } else {
                &[]
            };
            for n in (1..=max_n).chain(more.iter().copied()) {
                let off = n % 3;
                let xa = values((n + cols) as u64, off + n * cols);
                let x = &xa[off..];
                let mut want = vec![f32::NAN; n * rows];
                if cols > 0 {
                    portable::matmul(&deq, cols, x, &mut want).unwrap();
                } else {
                    want.fill(0.0);
                }
                let mut got = vec![f32::NAN; n * rows];
                if cols > 0 {
                    kernels::matmul(Tensor::Q8_0(&q), cols, x, &mut got).unwrap();
                } else {
                    for i in 0..n {
                        kernels::matvec(Tensor::Q8_0(&q), &[], &mut got[i * rows..(i + 1) * rows])
                            .unwrap();
                    }
                }
                let mag = product_magnitudes(&deq, x, n, rows, cols);
                assert_close(&got, &want, &mag, 1e-5, "q8_0");
                let mut port = vec![f32::NAN; rows];
                kernels::matvec_q8_portable(&q, &x[..cols], &mut port).unwrap();
                assert_close(&port, &want[..rows], &mag[..rows], 1e-5, "q8_0 portable");
            }
        }
    }
    check_required_isa();
}

/// Random Q8_0 blocks: quants over all of −128..=127 (so −128 too), scales in ±[2⁻⁸, 2).
fn random_blocks(seed: u64, n: usize) -> Vec<BlockQ8_0> {
    let v = values(seed, n * 33);
    v.chunks_exact(33)
        .map(|c| {
            let q: [i8; 32] =
                core::array::from_fn(|i| (c[i] * 128.0).floor().clamp(-128.0, 127.0) as i8);
            let d = c[32].signum() * (c[32].abs() * 2.0).max(1.0 / 256.0);
            picoformer::q8_0::q8_0_block(f16::from_f32(d), &q)
        })
        .collect()
}

/// `Σ_b d_w·d_x·Σ_i q_w·max(q_x, −127)` in f64 for each row, and the magnitude it is built from.
fn int8_definition(w: &[BlockQ8_0], x: &[BlockQ8_0], rows: usize) -> Vec<(f64, f64)> {
    let nb = x.len();
    (0..rows)
        .map(|r| {
            let (mut sum, mut mag) = (0.0f64, 0.0f64);
            for (wb, xb) in w[r * nb..(r + 1) * nb].iter().zip(x) {
                let d = picoformer::q8_0::q8_0_scale(wb).to_f64()
                    * picoformer::q8_0::q8_0_scale(xb).to_f64();
                let (qw, qx) = (
                    picoformer::q8_0::q8_0_quants(wb),
                    picoformer::q8_0::q8_0_quants(xb),
                );
                for (&a, &b) in qw.iter().zip(qx) {
                    let p = d * f64::from(a) * f64::from(b.max(-127));
                    sum += p;
                    mag += p.abs();
                }
            }
            (sum, mag)
        })
        .collect()
}

#[track_caller]
fn assert_int8(got: &[f32], want: &[(f64, f64)], what: &str) {
    for (r, (g, (w, m))) in got.iter().zip(want).enumerate() {
        let bound = 1e-6 * (1.0 + m);
        assert!(
            (f64::from(*g) - w).abs() <= bound,
            "{what}: row {r}: got {g}, want {w} (bound {bound})"
        );
    }
}

/// The int8 path's definition (`portable::matvec_int8`, Q8_0 weights × Q8_0 activations)
/// against f64, with quants of −128 on both sides (activations read them as −127).
#[test]
fn int8_portable_matches_its_definition() {
    for nb in [0, 1, 2, 5, 9] {
        for rows in 1..=6 {
            let w = random_blocks((nb * 131 + rows) as u64, rows * nb);
            let x = random_blocks((nb * 7 + rows) as u64 + 1_000, nb);
            let mut got = vec![f32::NAN; rows];
            portable::matvec_int8(&w, &x, &mut got).unwrap();
            assert_int8(&got, &int8_definition(&w, &x, rows), "portable");
        }
    }
}

/// The dispatched int8 path (f32 activations quantised, then integer products) against the
/// f64 definition over the same quantised activations: 0..=8, 16, 17, 33, 121 (too long to
/// be prefetched), 129 and 257 blocks per row (column chunks of 128 or 32 blocks), 1..=13 rows,
/// unaligned activations, NaN-filled outputs, weight quants over all of −128..=127.
#[test]
fn int8_matvec_matches_its_definition() {
    use_required_isa();
    let blocks: Vec<usize> = if cfg!(miri) {
        (0..=2).collect()
    } else {
        (0..=8).chain([16, 17, 33, 121, 129, 257]).collect()
    };
    for nb in blocks {
        for rows in 1..=MAX_ROWS {
            let w = random_blocks((nb * 131 + rows) as u64, rows * nb);
            let off = rows % 3;
            let xa = values((nb * 7 + rows) as u64, off + 32 * nb);
            let x = &xa[off..];
            let mut xq: Vec<BlockQ8_0> = vec![[0; 34]; nb];
            quantize_q8_0(x, &mut xq).unwrap();
            let mut got = vec![f32::NAN; rows];
            kernels::matvec_int8(&w, x, &mut got).unwrap();
            assert_int8(
                &got,
                &int8_definition(&w, &xq, rows),
                &format!("nb {nb} rows {rows}"),
            );
        }
    }
    check_required_int8_isa();
}

/// The int8 product of several positions over the rows as stored (`matmul_int8`) is
/// `matvec_int8` on each position, bit for bit, and its f64 definition: 1–9 rows (strips of
/// four and rows left over), 1–8, 33, 129 and 257 blocks (257: three column chunks), 1–11
/// positions (every tile of 4, 2 and 1, several passes of the activations' buffer), unaligned
/// X, NaN-filled Y.
#[test]
fn int8_rows_product_is_matvec_int8_per_position() {
    use_required_isa();
    let blocks: Vec<usize> = if cfg!(miri) {
        (1..=2).collect()
    } else {
        (1..=8).chain([33, 129, 257]).collect()
    };
    for nb in blocks {
        let cols = 32 * nb;
        let (row_counts, positions): (Vec<usize>, Vec<usize>) = if nb > 8 {
            (vec![1, 5, 7], vec![1, 3, 6])
        } else {
            ((1..=9).collect(), (1..=11).collect())
        };
        for &rows in &row_counts {
            let w = random_blocks((nb * 37 + rows) as u64, rows * nb);
            for &n in &positions {
                let xoff = (rows + n) % 3;
                let xa = values((nb * 11 + rows * 3 + n) as u64, xoff + n * cols);
                let x = &xa[xoff..];
                let mut got = vec![f32::NAN; n * rows];
                kernels::matmul_int8(&w, cols, x, &mut got).unwrap();
                for i in 0..n {
                    let what = format!("nb {nb} rows {rows} n {n} position {i}");
                    let xi = &x[i * cols..(i + 1) * cols];
                    let mut one = vec![f32::NAN; rows];
                    kernels::matvec_int8(&w, xi, &mut one).unwrap();
                    let got = &got[i * rows..(i + 1) * rows];
                    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(got), bits(&one), "{what}");
                    let mut xq: Vec<BlockQ8_0> = vec![[0; 34]; nb];
                    quantize_q8_0(xi, &mut xq).unwrap();
                    assert_int8(got, &int8_definition(&w, &xq, rows), &what);
                }
            }
        }
    }
    check_required_int8_isa();
}

/// `quantize_q8_0` (written to vectorise: the bits of the largest |x|, truncation through the
/// mantissa) against its definition with the standard library's rounding: d = max|x|/127 and
/// q = round(x/d) half away from zero, on random blocks, exact ties (±(k + 0.5) steps), zeros,
/// −0, subnormals (whose 1/d overflows: quants 0), huge values, and blocks with an infinity or a NaN (scale NaN, quants 0).
#[test]
fn quantize_q8_0_matches_its_definition() {
    let definition = |x: &[f32]| -> BlockQ8_0 {
        if x.iter().any(|v| !v.is_finite()) {
            return picoformer::q8_0::q8_0_block(f16::from_f32(f32::NAN), &[0; 32]);
        }
        let d = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
        // Below 127·2⁻¹²⁸ (f16 scale 0), 1/d overflows: quants 0.
        let id = if (1.0 / d).is_finite() { 1.0 / d } else { 0.0 };
        let q: [i8; 32] = core::array::from_fn(|i| (x[i] * id).round() as i8);
        picoformer::q8_0::q8_0_block(f16::from_f32(d), &q)
    };
    let blocks = quantize_cases();
    let src: Vec<f32> = blocks.concat();
    let mut got: Vec<BlockQ8_0> = vec![[0; 34]; blocks.len()];
    quantize_q8_0(&src, &mut got).unwrap();
    for (i, (b, g)) in blocks.iter().zip(&got).enumerate() {
        assert_eq!(*g, definition(b), "block {i}: {b:?}");
    }
}

/// Blocks of 32 values for the quantisation tests: random ones over 13 orders of magnitude,
/// exact ties (±(k + 0.5) steps), zeros, −0, subnormals, huge values, and blocks with an
/// infinity or a NaN.
fn quantize_cases() -> Vec<Vec<f32>> {
    let mut blocks: Vec<Vec<f32>> = (0..200u64)
        .map(|s| {
            let scale = 10f32.powi((s % 13) as i32 - 6);
            values(s + 500, 32).iter().map(|v| v * scale).collect()
        })
        .collect();
    // Exact ties: with max|x| = 127 the step is 1, so x = ±(k + 0.5) lands on k + 0.5.
    blocks.push(
        (0..32)
            .map(|i| {
                if i == 0 {
                    127.0
                } else {
                    (i as f32 - 16.0) + 0.5
                }
            })
            .collect(),
    );
    blocks.push(
        (0..32)
            .map(|i| if i == 0 { -127.0 } else { -(i as f32) - 0.5 })
            .collect(),
    );
    blocks.push(vec![0.0; 32]);
    // A subnormal d whose inverse is finite.
    blocks.push((0..32).map(|i| 1e-36 * (i as f32 - 16.0)).collect());
    blocks.push(
        (0..32)
            .map(|i| if i % 2 == 0 { -0.0 } else { 0.0 })
            .collect(),
    );
    blocks.push(
        (0..32)
            .map(|i| f32::from_bits(1 + i as u32 * 1000) * if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect(),
    );
    blocks.push((0..32).map(|i| f32::MAX / (1.0 + i as f32)).collect());
    for special in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        let mut b: Vec<f32> = values(9, 32);
        b[7] = special;
        blocks.push(b);
    }
    blocks
}

/// The dispatched int8 products quantise their activations exactly as `quantize_q8_0` (each
/// SIMD set has its own instructions for it): over weights that pick out one activation per
/// row (quant 1, scale 1), row r is d_x·q_x[r] (±0 alike), in the row layout (`matvec_int8`,
/// and `matmul_int8` over two positions) and over int8 panels (`matmul_int8_panels`, which also reads the block's quant sum), on every block of
/// `quantize_cases`.
#[test]
fn int8_products_quantise_as_quantize_q8_0() {
    use_required_isa();
    let pick: Vec<BlockQ8_0> = (0..32)
        .map(|r| {
            let q: [i8; 32] = core::array::from_fn(|i| i8::from(i == r));
            picoformer::q8_0::q8_0_block(f16::ONE, &q)
        })
        .collect();
    let len = kernels::Int8Panels::len(32, 32).unwrap();
    let mut arena = vec![0u8; len];
    let panels = kernels::Int8Panels::pack(&pick, 32, &mut arena).unwrap();
    for (i, x) in quantize_cases().iter().enumerate() {
        let mut xq: Vec<BlockQ8_0> = vec![[0; 34]; 1];
        quantize_q8_0(x, &mut xq).unwrap();
        let d = picoformer::q8_0::q8_0_scale(&xq[0]).to_f32();
        let want: Vec<f32> = picoformer::q8_0::q8_0_quants(&xq[0])
            .iter()
            .map(|&q| d * f32::from(q))
            .collect();
        let (mut rows, mut over_panels) = (vec![f32::NAN; 32], vec![f32::NAN; 32]);
        kernels::matvec_int8(&pick, x, &mut rows).unwrap();
        kernels::matmul_int8_panels(panels, x, &mut over_panels).unwrap();
        // Two positions (a tile of two) over the rows: the block twice.
        let mut two = vec![f32::NAN; 64];
        kernels::matmul_int8(&pick, 32, &[&x[..], &x[..]].concat(), &mut two).unwrap();
        let checks = [
            ("rows", &rows[..]),
            ("panels", &over_panels[..]),
            ("rows, first of two", &two[..32]),
            ("rows, second of two", &two[32..]),
        ];
        for (what, got) in checks {
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                // A scale beyond f16's range (max|x| > 127·65504) is infinite: the sets sum
                // the lanes after scaling, so 0·∞ may make NaN where the definition has ±∞.
                let overflow = d.is_infinite() && !g.is_finite() && !w.is_finite();
                assert!(
                    g == w || (g.is_nan() && w.is_nan()) || overflow,
                    "{what}: block {i} value {r}: got {g}, want {w} (x = {})",
                    x[r]
                );
            }
        }
    }
    check_required_int8_isa();
}

/// The int8 product over int8 panels (`kernels::matmul_int8_panels`) against the f64 definition on
/// each position's quantised activations: every row count around the 16-row panels (the last
/// panel's partial vector), 1–8, 16, 17, 33, 129 and 257 blocks (257: two column chunks), 1–19
/// positions (every tile size and remainder, several passes of the activations' buffer),
/// panels packed at every arena offset, unaligned X, NaN-filled Y, the padding rows of the
/// last panel zero.
#[test]
fn int8_panels_match_their_definition() {
    use_required_isa();
    let blocks: Vec<usize> = if cfg!(miri) {
        (1..=2).collect()
    } else {
        (1..=8).chain([16, 17, 33, 129, 257]).collect()
    };
    for nb in blocks {
        let row_counts: Vec<usize> = if nb > 33 {
            vec![1, 17, 35]
        } else {
            (1..=35).collect()
        };
        for rows in row_counts {
            let cols = 32 * nb;
            let w = random_blocks((nb * 131 + rows) as u64, rows * cols / 32);
            let len = kernels::Int8Panels::len(rows, cols).unwrap();
            let mut arena = vec![0xA5u8; len + 64];
            let off = rows % 64;
            let p = kernels::Int8Panels::pack(&w, cols, &mut arena[off..off + len]).unwrap();
            let positions: &[usize] = if nb > 33 || rows % 4 != 1 {
                &[1, 3]
            } else {
                &[1, 2, 5, 8, 13, 19]
            };
            for &n in positions {
                let xoff = (rows + n) % 3;
                let xa = values((nb * 7 + rows + n) as u64, xoff + n * cols);
                let x = &xa[xoff..];
                let mut got = vec![f32::NAN; n * rows];
                kernels::matmul_int8_panels(p, x, &mut got).unwrap();
                for i in 0..n {
                    let mut xq: Vec<BlockQ8_0> = vec![[0; 34]; cols / 32];
                    quantize_q8_0(&x[i * cols..(i + 1) * cols], &mut xq).unwrap();
                    assert_int8(
                        &got[i * rows..(i + 1) * rows],
                        &int8_definition(&w, &xq, rows),
                        &format!("nb {nb} rows {rows} n {n} position {i}"),
                    );
                }
            }
        }
    }
    check_required_int8_isa();
}

/// The int8 path over quantised activations is the f32 Q8_0 product to within the activations'
/// quantisation error; a NaN among the activations makes the outputs NaN.
#[test]
fn int8_matvec_tracks_the_f32_product() {
    use_required_isa();
    let (rows, cols) = (37, 288);
    let wf = values(41, rows * cols);
    let mut w: Vec<BlockQ8_0> = vec![[0; 34]; rows * cols / 32];
    quantize_q8_0(&wf, &mut w).unwrap();
    let mut x = values(42, cols);
    let (mut exact, mut int8) = (vec![0.0f32; rows], vec![f32::NAN; rows]);
    kernels::matvec(Tensor::Q8_0(&w), &x, &mut exact).unwrap();
    kernels::matvec_int8(&w, &x, &mut int8).unwrap();
    for (e, i) in exact.iter().zip(&int8) {
        // Each activation is off by at most half a step (1/254 of its block's largest value,
        // plus the f16 rounding of the scale); |w| <= 1 and |x| <= 1 over 288 values.
        assert!(
            (e - i).abs() <= 288.0 * (0.5 / 127.0 + 1e-3) / 8.0,
            "{e} vs {i}"
        );
    }
    x[100] = f32::NAN;
    kernels::matvec_int8(&w, &x, &mut int8).unwrap();
    assert!(int8.iter().all(|v| v.is_nan()), "{int8:?}");
    check_required_int8_isa();
}

#[test]
fn q8_0_embedding_rows_dequantise() {
    let wf = values(5, 4 * 64);
    let mut q: Vec<BlockQ8_0> = vec![[0; 34]; 8];
    quantize_q8_0(&wf, &mut q).unwrap();
    let t = Tensor::Q8_0(&q);
    assert_eq!(t.len(), 256);
    let row = Tensor::Q8_0(&q[2..4]); // values 64..128
    let mut y = vec![f32::NAN; 64];
    kernels::load(&mut y, row).unwrap();
    for (i, v) in y.iter().enumerate() {
        assert_eq!(Some(*v), t.get(64 + i));
        assert!((v - wf[64 + i]).abs() < 0.01);
    }
    let mut z = vec![1.0f32; 64];
    kernels::add_scaled(&mut z, row, 2.0).unwrap();
    for (zv, yv) in z.iter().zip(&y) {
        assert_eq!(*zv, 1.0 + 2.0 * yv);
    }
    assert!(quantize_q8_0(&wf[..33], &mut q[..1]).is_err());
}

/// The norms (LayerNorm and RMSNorm, with a gain of `E` or none, offsets 0 and 1) against
/// their portable twins on every length, from unaligned sub-slices into NaN-filled outputs:
/// the same formulas, only the row's sums are added in another order.
fn check_norms<E: Element>(conv: impl Fn(&[f32]) -> Vec<E>) {
    use_required_isa();
    for n in 0..=MAX_COLS {
        let off = n % 4;
        // Values away from 0 on average, so that LayerNorm's mean matters.
        let xa: Vec<f32> = values(n as u64 + 3, off + n)
            .iter()
            .map(|v| 3.0 * v + 0.5)
            .collect();
        let ga = conv(&values(n as u64 + 11, off + n));
        let (x, g) = (&xa[off..], &ga[off..]);
        for offset in [0.0, 1.0] {
            for gain in [None, Some(E::as_tensor(g))] {
                for rms in [false, true] {
                    let mut want = vec![f32::NAN; n];
                    let mut got = vec![f32::NAN; n + 3];
                    let o = &mut got[off % 3..off % 3 + n];
                    let eg = gain.map(|_| g);
                    if rms {
                        portable::rms_norm(x, eg, offset, &mut want).unwrap();
                        kernels::rms_norm(x, gain, offset, o).unwrap();
                    } else {
                        portable::layer_norm(x, eg, offset, &mut want).unwrap();
                        kernels::layer_norm(x, gain, offset, o).unwrap();
                    }
                    let mag: Vec<f32> = want.iter().map(|w| w.abs()).collect();
                    let what =
                        format!("norm n {n} rms {rms} offset {offset} gain {}", eg.is_some());
                    assert_close(&got[off % 3..off % 3 + n], &want, &mag, 1e-5, &what);
                    for (i, v) in got.iter().enumerate() {
                        if i < off % 3 || i >= off % 3 + n {
                            assert!(v.is_nan(), "{what}: wrote outside out");
                        }
                    }
                }
            }
        }
    }
    check_required_isa();
}

#[test]
fn norms_with_f32_gains_match_portable() {
    check_norms::<f32>(|v| v.to_vec());
}

#[test]
fn norms_with_16_bit_gains_match_portable() {
    check_norms::<f16>(|v| v.iter().map(|x| f16::from_f32(*x)).collect());
    check_norms::<bf16>(|v| v.iter().map(|x| bf16::from_f32(*x)).collect());
}

/// The bias on every row: `y + b` exactly (the widening of a 16-bit bias is exact), every
/// length and 1 to 3 rows, unaligned.
fn check_add_bias<E: Element>(conv: impl Fn(&[f32]) -> Vec<E>) {
    use_required_isa();
    for n in 1..=MAX_COLS {
        for rows in 1..=3 {
            let off = (n + rows) % 4;
            let ba = conv(&values(n as u64 + 5, off + n));
            let b = &ba[off..];
            let ya = values((n * 7 + rows) as u64, off + rows * n);
            let mut y = ya[off..].to_vec();
            kernels::add_bias(&mut y[..], E::as_tensor(b)).unwrap();
            for (i, (got, before)) in y.iter().zip(&ya[off..]).enumerate() {
                let want = before + b[i % n].to_f32();
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "add_bias n {n} rows {rows} at {i}"
                );
            }
        }
    }
    check_required_isa();
}

#[test]
fn add_bias_adds_every_row_exactly() {
    check_add_bias::<f32>(|v| v.to_vec());
    check_add_bias::<f16>(|v| v.iter().map(|x| f16::from_f32(*x)).collect());
    check_add_bias::<bf16>(|v| v.iter().map(|x| bf16::from_f32(*x)).collect());
}

fn check_attention<K: Element>() {
    use_required_isa();
    let lens: Vec<usize> = if cfg!(miri) {
        vec![1, 2, 17]
    } else {
        (1..=70).collect()
    };
    let dims: &[usize] = if cfg!(miri) {
        &[3, 8]
    } else {
        // 120 = 8+4+2+1 vectors of 8 lanes (every chunk size of the value accumulation on
        // AVX2), 248 = 8+4+2+1 vectors of 16 lanes and 8 left (AVX-512).
        &[1, 3, 8, 13, 16, 48, 64, 67, 120, 248]
    };
    for &d in dims {
        for &len in &lens {
            let off = (d + len) % 4;
            let q = values(d as u64, off + d);
            let kf = values((d * 100 + len) as u64, off + len * d);
            let vf = values((d * 1000 + len) as u64, off + len * d);
            // Large scores too, so that the running maximum moves and exp underflows.
            let scale = if len % 2 == 0 { 0.3 } else { 9.0 };
            let k: Vec<K> = kf.iter().map(|&x| K::from_f32(x)).collect();
            let v: Vec<K> = vf.iter().map(|&x| K::from_f32(x)).collect();
            let (q, k, v) = (&q[off..], &k[off..], &v[off..]);
            let mut want = vec![f32::NAN; d];
            portable::attention(q, k, v, scale, &mut want).unwrap();
            let mut got = vec![f32::NAN; d];
            kernels::attention(q, k, v, scale, &mut got).unwrap();
            let mag = vec![1.0f32; d];
            assert_close(&got, &want, &mag, 2e-6 * (1.0 + scale), "attention");
        }
    }
    check_required_isa();
}

#[test]
fn attention_f32_cache_matches_portable() {
    check_attention::<f32>();
}

#[test]
fn attention_f16_cache_matches_portable() {
    check_attention::<f16>();
}

/// Attention outputs against the portable twin's where `inside(i)` (a query's values), and
/// untouched (NaN in both) in the gaps between queries.
fn assert_attention_out(
    got: &[f32],
    want: &[f32],
    inside: impl Fn(usize) -> bool,
    scale: f32,
    what: &str,
) {
    for i in 0..got.len() {
        if inside(i) {
            let at = format!("{what} at {i}");
            assert_close(&got[i..=i], &want[i..=i], &[1.0], 2e-6 * (1.0 + scale), &at);
        } else {
            assert!(
                got[i].is_nan() && want[i].is_nan(),
                "{what}: wrote into a gap at {i}"
            );
        }
    }
}

/// Grouped query heads (1..=11, across the kernel's passes of 8) with strides from `dim` up,
/// against the portable kernel head by head; the gaps between heads must stay untouched.
fn check_attention_group<K: Element>() {
    use_required_isa();
    let heads_set: Vec<usize> = if cfg!(miri) {
        vec![1, 3]
    } else {
        (1..=11).collect()
    };
    let dims: &[usize] = if cfg!(miri) {
        &[3]
    } else {
        &[1, 5, 8, 16, 56, 64, 67]
    };
    let lens: &[usize] = if cfg!(miri) {
        &[1, 17]
    } else {
        &[1, 2, 15, 16, 17, 40]
    };
    for &d in dims {
        for &heads in &heads_set {
            for (si, stride) in [d, d + 3, 4 * d].into_iter().enumerate() {
                let group = kernels::HeadGroup {
                    dim: d,
                    heads,
                    stride,
                };
                let span = group.span().unwrap();
                for &len in lens {
                    let seed = (d * 1000 + heads * 10 + si) as u64;
                    let q = values(seed, span);
                    let k: Vec<K> = values(seed + 1, len * d)
                        .iter()
                        .map(|&x| K::from_f32(x))
                        .collect();
                    let v: Vec<K> = values(seed + 2, len * d)
                        .iter()
                        .map(|&x| K::from_f32(x))
                        .collect();
                    let scale = if len % 2 == 0 { 0.4 } else { 7.0 };
                    let mut want = vec![f32::NAN; span];
                    portable::attention_group(&q, group, &k, &v, scale, &mut want).unwrap();
                    let mut got = vec![f32::NAN; span];
                    kernels::attention_group(&q, group, &k, &v, scale, &mut got).unwrap();
                    let what =
                        format!("attention_group d {d} heads {heads} stride {stride} len {len}");
                    assert_attention_out(&got, &want, |i| i % stride < d, scale, &what);
                }
            }
        }
    }
    check_required_isa();
}

#[test]
fn attention_group_f32_cache_matches_portable() {
    check_attention_group::<f32>();
}

#[test]
fn attention_group_f16_cache_matches_portable() {
    check_attention_group::<f16>();
}

/// A chunk's positions (1..=5) × grouped heads (1..=3), causal and not, with strides that
/// leave gaps: against the portable kernel, and every query bit for bit against the same
/// kernel set's single-position call over the rows it sees (what makes a prefill chunk equal
/// to decoding step by step). The gaps must stay untouched.
fn check_attention_positions<K: Element>() {
    use_required_isa();
    let dims: &[usize] = if cfg!(miri) {
        &[3]
    } else {
        &[1, 7, 16, 48, 64, 67]
    };
    let counts: &[usize] = if cfg!(miri) { &[3] } else { &[1, 2, 3, 5] };
    for &d in dims {
        for heads in 1..=3 {
            for &count in counts {
                for causal in [true, false] {
                    let group = kernels::HeadGroup {
                        dim: d,
                        heads,
                        stride: d + 1,
                    };
                    let pstride = group.span().unwrap() + 2;
                    let positions = kernels::Positions {
                        count,
                        stride: pstride,
                        causal,
                    };
                    let span = positions.span(group).unwrap();
                    // Lengths that end a pass inside, at and past a block of 16 keys.
                    for rows in [count, count + 14, 16, 17, 33]
                        .into_iter()
                        .filter(|&r| r >= count)
                    {
                        let seed = (d * 1000 + heads * 100 + count * 10 + rows) as u64;
                        let q = values(seed, span);
                        let f = |s| -> Vec<K> {
                            values(s, rows * d)
                                .iter()
                                .map(|&x| K::from_f32(x))
                                .collect()
                        };
                        let (k, v) = (f(seed + 1), f(seed + 2));
                        let scale = if causal { 0.4 } else { 3.0 };
                        let what = format!("positions d {d} heads {heads} count {count} causal {causal} rows {rows}");
                        let mut want = vec![f32::NAN; span];
                        portable::attention_positions(
                            &q, group, positions, &k, &v, scale, &mut want,
                        )
                        .unwrap();
                        let mut got = vec![f32::NAN; span];
                        kernels::attention_positions(&q, group, positions, &k, &v, scale, &mut got)
                            .unwrap();
                        let gs = group.span().unwrap();
                        let inside = |i: usize| i % pstride < gs && i % pstride % group.stride < d;
                        assert_attention_out(&got, &want, inside, scale, &what);
                        for p in 0..count {
                            let seen = if causal { rows - (count - 1 - p) } else { rows };
                            let at = p * pstride;
                            let qp = &q[at..at + group.span().unwrap()];
                            let mut alone = vec![f32::NAN; qp.len()];
                            let (ks, vs) = (&k[..seen * d], &v[..seen * d]);
                            kernels::attention_group(qp, group, ks, vs, scale, &mut alone).unwrap();
                            for t in 0..heads {
                                let o = t * group.stride;
                                assert_eq!(
                                    &got[at + o..at + o + d],
                                    &alone[o..o + d],
                                    "{what}: position {p} head {t} differs from its own call"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    check_required_isa();
}

#[test]
fn attention_positions_f32_cache_matches_portable_and_each_position_alone() {
    check_attention_positions::<f32>();
}

#[test]
fn attention_positions_f16_cache_matches_portable_and_each_position_alone() {
    check_attention_positions::<f16>();
}

#[test]
fn attention_group_of_heads_equals_each_head_alone() {
    // The portable group is the reference above: pin it to single-head calls.
    let (d, heads, stride, len) = (6, 3, 10, 9);
    let group = kernels::HeadGroup {
        dim: d,
        heads,
        stride,
    };
    let q = values(1, group.span().unwrap());
    let (k, v) = (values(2, len * d), values(3, len * d));
    let mut got = vec![0.0; q.len()];
    portable::attention_group(&q, group, &k, &v, 0.5, &mut got).unwrap();
    for t in 0..heads {
        let mut one = vec![0.0; d];
        portable::attention(&q[t * stride..t * stride + d], &k, &v, 0.5, &mut one).unwrap();
        assert_eq!(&got[t * stride..t * stride + d], &one[..]);
    }
    assert_eq!(
        kernels::HeadGroup {
            dim: 4,
            heads: 2,
            stride: 3
        }
        .span(),
        None
    );
    assert_eq!(
        kernels::HeadGroup {
            dim: 0,
            heads: 2,
            stride: 3
        }
        .span(),
        None
    );
    assert_eq!(
        kernels::HeadGroup {
            dim: 1,
            heads: usize::MAX,
            stride: 2
        }
        .span(),
        None
    );
}

/// Distance in units in the last place between two f32 of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

#[test]
fn vector_exp_within_2_ulp_of_f64() {
    use_required_isa();
    // Every 997th f32 between −104 and 89, plus the edges, in chunks (small memory under WASI).
    let step = if cfg!(miri) { 10_000_019 } else { 997 };
    let (lo, hi) = ((-104.0f32).to_bits(), 89.0f32.to_bits());
    // Negative floats: bits from 0x8000_0000 (−0) up to lo; positive: 0 up to hi.
    let neg = (0x8000_0000u32..=lo).step_by(step);
    let pos = (0u32..=hi).step_by(step);
    let edges = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        88.72,
        88.73,
        -87.33,
        -87.34,
        -103.9,
        -103.98,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
    ];
    let mut worst = (0u32, 0.0f32);
    let mut check = |xs: &[f32]| {
        let mut got = vec![f32::NAN; xs.len()];
        kernels::exp(xs, &mut got).unwrap();
        for (&x, &g) in xs.iter().zip(&got) {
            let want = (x as f64).exp();
            let w32 = want as f32;
            if want < f32::MIN_POSITIVE as f64 {
                // Subnormal or zero result: within two of the smallest steps.
                assert!(
                    (g as f64 - want).abs() <= 2.0 * 1.4013e-45,
                    "exp({x}) = {g}, want {want}"
                );
                continue;
            }
            if w32.is_infinite() {
                assert!(g.is_infinite() || ulps(g, f32::MAX) <= 2, "exp({x}) = {g}");
                continue;
            }
            let u = ulps(g, w32);
            if u > worst.0 {
                worst = (u, x);
            }
        }
    };
    check(&edges);
    let mut chunk = Vec::with_capacity(4096);
    for b in neg.chain(pos) {
        chunk.push(f32::from_bits(b));
        if chunk.len() == 4096 {
            check(&chunk);
            chunk.clear();
        }
    }
    check(&chunk);
    assert!(
        worst.0 <= 2,
        "worst error {} ulp at x = {}",
        worst.0,
        worst.1
    );
    let mut nan = [0.0f32; 3];
    kernels::exp(&[f32::NAN, 0.0, f32::NAN], &mut nan).unwrap();
    assert!(nan[0].is_nan() && nan[2].is_nan() && nan[1] == 1.0);
    check_required_isa();
}

/// The vector SiLU (`kernels::activate`) against x/(1 + e⁻ˣ) in f64: within 4 ulp where the
/// result is a normal f32 above 1e-35 in magnitude (below, where e⁻ˣ overflows f32, it may
/// flush to ±0 like the scalar libm version); on every slice length 0..=40 and NaN passed on.
#[test]
fn vector_silu_within_4_ulp_of_f64() {
    use picoformer::Activation;
    use_required_isa();
    let step = if cfg!(miri) { 10_000_019 } else { 7919 };
    let (lo, hi) = ((-110.0f32).to_bits(), 110.0f32.to_bits());
    let xs: Vec<f32> = (0x8000_0000u32..=lo)
        .step_by(step)
        .chain((0u32..=hi).step_by(step))
        .map(f32::from_bits)
        .chain([
            0.0,
            -0.0,
            88.7,
            -88.7,
            -88.8,
            f32::INFINITY,
            f32::MIN_POSITIVE,
        ])
        .collect();
    let mut worst = (0u32, 0.0f32);
    for chunk in xs.chunks(4096) {
        let mut got = chunk.to_vec();
        kernels::activate(Activation::Silu, &mut got);
        for (&x, &g) in chunk.iter().zip(&got) {
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            if want.abs() < 1e-35 {
                assert!(
                    (g as f64 - want).abs() <= 1e-35,
                    "silu({x}) = {g}, want {want}"
                );
                continue;
            }
            let u = ulps(g, want as f32);
            if u > worst.0 {
                worst = (u, x);
            }
        }
    }
    assert!(
        worst.0 <= 4,
        "worst error {} ulp at x = {}",
        worst.0,
        worst.1
    );
    // Every length (the tail in a buffer), unaligned, against the scalar version.
    let v = values(77, 41);
    for n in 0..=40 {
        let mut got = v[1..=n].to_vec();
        kernels::activate(Activation::Silu, &mut got);
        for (g, x) in got.iter().zip(&v[1..=n]) {
            assert!(ulps(*g, kernels::silu(*x)) <= 4, "n = {n}: silu({x}) = {g}");
        }
    }
    let mut nan = [f32::NAN, 1.0, f32::NAN];
    kernels::activate(Activation::Silu, &mut nan);
    assert!(nan[0].is_nan() && nan[2].is_nan() && ulps(nan[1], 0.731_058_6) <= 2);
    check_required_isa();
}

/// The vector GELU (`kernels::activate`: a rational erf, fused multiply-adds) and the scalar one
/// (`kernels::gelu`, `libm::erff`) against ½·z·(1 + erf(z/√2)) in f64, on every 257th f32 in
/// ±5 times √2 and the edges: within 2.5e-7·|z| + 1 ulp (the rational erf's f32 evaluation is within
/// 4e-7 of erf), odd in its erf part; every slice length 0..=40 of the vector one within
/// 2e-7·|z| of the scalar one; ±∞ and NaN.
#[test]
fn gelu_within_bound_of_f64() {
    use picoformer::Activation;
    use_required_isa();
    let step = if cfg!(miri) { 10_000_019 } else { 257 };
    let hi = 5.0f32.to_bits();
    let edges = [
        5.656_854,
        -5.656_854,
        5.656_855,
        1e30,
        -1e30,
        f32::MIN_POSITIVE,
    ];
    let (mut worst_vec, mut worst_scalar) = ((0.0f64, 0.0f32), (0.0f64, 0.0f32));
    // In chunks of 4,096 values (small memory under WASI).
    let mut bits = (0u32..=hi).step_by(step);
    let mut chunk = Vec::with_capacity(4096);
    let mut last = false;
    while !last {
        chunk.clear();
        for b in bits.by_ref().take(2048) {
            let z = f32::from_bits(b) * core::f32::consts::SQRT_2;
            chunk.extend([z, -z]);
        }
        if chunk.is_empty() {
            chunk.extend(edges);
            last = true;
        }
        let mut got = chunk.clone();
        kernels::activate(Activation::Gelu, &mut got);
        for (&z, &g) in chunk.iter().zip(&got) {
            let z64 = z as f64;
            let want = 0.5 * z64 * (1.0 + libm::erf(z64 / core::f64::consts::SQRT_2));
            let ulp = (want as f32).abs().max(f32::MIN_POSITIVE);
            let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
            for (v, worst) in [(g, &mut worst_vec), (kernels::gelu(z), &mut worst_scalar)] {
                let d = ((v as f64 - want).abs() - ulp) / z64.abs();
                if d > worst.0 {
                    *worst = (d, z);
                }
            }
        }
    }
    for (name, worst) in [("vector", worst_vec), ("scalar", worst_scalar)] {
        assert!(
            worst.0 <= 2.5e-7,
            "{name} gelu: worst {:e}·|z| at z = {}",
            worst.0,
            worst.1
        );
    }
    // erf's part is odd: gelu(z) − gelu(−z) = z exactly where both halves round alike.
    let mut pair = [1.5f32, -1.5];
    kernels::activate(Activation::Gelu, &mut pair);
    assert!((pair[0] - pair[1] - 1.5).abs() <= 2e-7);
    let v = values(78, 41);
    for n in 0..=40 {
        let mut got = v[1..=n].to_vec();
        kernels::activate(Activation::Gelu, &mut got);
        for (g, z) in got.iter().zip(&v[1..=n]) {
            let d = (g - kernels::gelu(*z)).abs();
            assert!(d <= 2e-7 * z.abs(), "n = {n}: gelu({z}) = {g}");
        }
    }
    let mut special = [f32::NAN, 1.0, f32::NAN, f32::INFINITY, 0.0];
    kernels::activate(Activation::Gelu, &mut special);
    assert!(special[0].is_nan() && special[2].is_nan());
    assert!((special[1] - 0.841_344_7).abs() <= 2e-7);
    assert_eq!(special[3..], [f32::INFINITY, 0.0]);
    check_required_isa();
}
