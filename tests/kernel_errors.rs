//! The public kernels refuse slices whose lengths do not fit together with a typed
//! `Error::KernelShape` (never a panic) and write nothing; on any lengths at all they either do
//! their work or return that error.

use picoformer::kernels::{self, portable, HeadGroup};
use picoformer::q8_0::{dequantize_q8_0, BlockQ8_0};
use picoformer::{f16, Error, Tensor};
use proptest::prelude::*;

fn shape(kernel: &'static str, arg: &'static str, expected: usize, found: usize) -> Error {
    Error::KernelShape {
        kernel,
        arg,
        expected,
        found,
    }
}

/// Every output stays as it was (NaN) after a refused call.
#[track_caller]
fn untouched(out: &[f32]) {
    assert!(
        out.iter().all(|v| v.is_nan()),
        "a refused call wrote {out:?}"
    );
}

#[test]
fn products_refuse_bad_shapes() {
    let w = vec![0.5f32; 12];
    let x = vec![1.0f32; 4];
    let mut y = vec![f32::NAN; 2];
    // W is 3 rows of 4, so y must hold 3.
    let want = shape("matvec", "w", 8, 12);
    assert_eq!(kernels::matvec(Tensor::F32(&w), &x, &mut y), Err(want));
    assert_eq!(portable::matvec(&w, 4, &x, &mut y), Err(want));
    untouched(&y);
    assert_eq!(
        portable::matvec(&w, 3, &x, &mut y),
        Err(shape("matvec", "x", 3, 4))
    );
    let mut y6 = vec![f32::NAN; 6];
    assert_eq!(
        kernels::matmul(Tensor::F32(&w), 0, &x, &mut y6),
        Err(shape("matmul", "cols", 1, 0))
    );
    // x of 4 is not whole rows of 3: the next whole number of rows is 6.
    assert_eq!(
        kernels::matmul(Tensor::F32(&w), 3, &x, &mut y6),
        Err(shape("matmul", "x", 6, 4))
    );
    assert_eq!(
        kernels::matmul(Tensor::F32(&w[..10]), 2, &x, &mut y6),
        Err(shape("matmul", "y", 10, 6))
    );
    assert_eq!(
        portable::matmul(&w[..9], 2, &x, &mut y6),
        Err(shape("matmul", "w", 10, 9))
    );
    untouched(&y6);
    // Q8_0 rows are whole blocks of 32.
    let q: Vec<BlockQ8_0> = vec![[0; 34]; 3];
    let x48 = vec![1.0f32; 48];
    let mut y2 = vec![f32::NAN; 2];
    assert_eq!(
        kernels::matvec(Tensor::Q8_0(&q), &x48, &mut y2),
        Err(shape("matvec", "cols", 64, 48))
    );
    assert_eq!(
        kernels::matvec_q8_portable(&q, &x48, &mut y2),
        Err(shape("matvec", "cols", 64, 48))
    );
    assert_eq!(
        kernels::matvec_int8(&q, &x48, &mut y2),
        Err(shape("matvec", "cols", 64, 48))
    );
    // The int8 path: 3 blocks are not 2 rows of 1 block, nor 2 rows of 2.
    assert_eq!(
        kernels::matvec_int8(&q, &x48[..32], &mut y2),
        Err(shape("matvec", "w", 64, 96))
    );
    let xq: Vec<BlockQ8_0> = vec![[0; 34]; 2];
    assert_eq!(
        portable::matvec_int8(&q, &xq, &mut y2),
        Err(shape("matvec_int8", "w", 4, 3))
    );
    let x64 = vec![1.0f32; 64];
    assert_eq!(
        kernels::matmul(Tensor::Q8_0(&q), 16, &x64, &mut y2),
        Err(shape("matmul", "cols", 32, 16))
    );
    untouched(&y2);
    // A size whose multiples overflow is refused, not wrapped.
    assert_eq!(
        kernels::matmul(Tensor::Q8_0(&q), usize::MAX, &[], &mut []),
        Err(shape("matmul", "cols", usize::MAX, usize::MAX))
    );
    assert_eq!(
        kernels::matmul(Tensor::F32(&[]), usize::MAX, &[], &mut []),
        Ok(())
    );
}

#[test]
fn panels_refuse_bad_shapes() {
    use kernels::Panels;
    let w = vec![0.5f32; 12];
    let len = Panels::len(3, 4).unwrap();
    assert_eq!(len, 32 * 4 + 15);
    // An arena of another length is refused and left as it was.
    let mut arena = vec![f32::NAN; len + 1];
    assert_eq!(
        Panels::pack(Tensor::F32(&w), 4, &mut arena).map(|_| ()),
        Err(shape("pack", "arena", len, len + 1))
    );
    untouched(&arena);
    assert_eq!(
        Panels::pack(Tensor::F32(&w), 0, &mut arena).map(|_| ()),
        Err(shape("pack", "cols", 1, 0))
    );
    assert_eq!(
        Panels::pack(Tensor::F32(&w), 5, &mut arena).map(|_| ()),
        Err(shape("pack", "w", 15, 12))
    );
    let q: Vec<BlockQ8_0> = vec![[0; 34]; 2];
    assert_eq!(
        Panels::pack(Tensor::Q8_0(&q), 16, &mut arena).map(|_| ()),
        Err(shape("pack", "cols", 32, 16))
    );
    untouched(&arena);
    assert_eq!(Panels::len(usize::MAX, 2), None);
    assert_eq!(Panels::len(2, usize::MAX), None);
    // The product: X whole rows of cols, Y n·rows.
    let mut arena = vec![0.0f32; len];
    let p = Panels::pack(Tensor::F32(&w), 4, &mut arena).unwrap();
    let mut y = vec![f32::NAN; 7];
    assert_eq!(
        kernels::matmul_panels(p, &[1.0; 6], &mut y[..6]),
        Err(shape("matmul_panels", "x", 8, 6))
    );
    assert_eq!(
        kernels::matmul_panels(p, &[1.0; 8], &mut y),
        Err(shape("matmul_panels", "y", 6, 7))
    );
    untouched(&y);
    assert_eq!(kernels::matmul_panels(p, &[], &mut []), Ok(()));
    kernels::matmul_panels(p, &[1.0; 8], &mut y[..6]).unwrap();
    assert_eq!(&y[..6], &[2.0; 6]);
}

#[test]
fn attention_refuses_bad_shapes() {
    let (q, k, v) = (vec![1.0f32; 8], vec![0.5f32; 12], vec![0.25f32; 12]);
    let mut out = vec![f32::NAN; 8];
    let g = |dim, heads, stride| HeadGroup { dim, heads, stride };
    // (group, q, keys, values, out length, the error)
    type Case<'a> = (HeadGroup, &'a [f32], &'a [f32], &'a [f32], usize, Error);
    let cases: [Case<'_>; 8] = [
        (
            g(0, 1, 0),
            &q[..0],
            &k,
            &v,
            0,
            shape("attention", "group.dim", 1, 0),
        ),
        (
            g(4, 0, 4),
            &q,
            &k,
            &v,
            8,
            shape("attention", "group.heads", 1, 0),
        ),
        (
            g(4, 2, 3),
            &q,
            &k,
            &v,
            8,
            shape("attention", "group.stride", 4, 3),
        ),
        (
            g(4, 2, 4),
            &q[..7],
            &k,
            &v,
            7,
            shape("attention", "q", 8, 7),
        ),
        (g(4, 2, 4), &q, &k, &v, 7, shape("attention", "out", 8, 7)),
        (
            g(4, 2, 4),
            &q,
            &k[..0],
            &v[..0],
            8,
            shape("attention", "keys", 4, 0),
        ),
        (
            g(4, 2, 4),
            &q,
            &k[..10],
            &v[..10],
            8,
            shape("attention", "keys", 12, 10),
        ),
        (
            g(4, 2, 4),
            &q,
            &k,
            &v[..8],
            8,
            shape("attention", "values", 12, 8),
        ),
    ];
    for (group, q, k, v, n, want) in cases {
        let o = &mut out[..n];
        assert_eq!(kernels::attention_group(q, group, k, v, 0.5, o), Err(want));
        assert_eq!(portable::attention_group(q, group, k, v, 0.5, o), Err(want));
        untouched(o);
    }
    // A chunk's positions: none, overlapping, more than the cached rows (6) when causal.
    let pos = |count, stride, causal| kernels::Positions {
        count,
        stride,
        causal,
    };
    let (g1, q14) = (g(2, 1, 2), [1.0f32; 14]);
    let mut out14 = [f32::NAN; 14];
    let cases = [
        (
            pos(0, 2, false),
            2,
            shape("attention", "positions.count", 1, 0),
        ),
        (
            pos(2, 1, false),
            3,
            shape("attention", "positions.stride", 2, 1),
        ),
        (pos(3, 2, false), 5, shape("attention", "q", 6, 5)),
        (pos(7, 2, true), 14, shape("attention", "keys", 14, 12)),
    ];
    for (positions, n, want) in cases {
        let (qn, o) = (&q14[..n], &mut out14[..n]);
        assert_eq!(
            kernels::attention_positions(qn, g1, positions, &k, &v, 0.5, o),
            Err(want)
        );
        assert_eq!(
            portable::attention_positions(qn, g1, positions, &k, &v, 0.5, o),
            Err(want)
        );
        untouched(o);
    }
    // Not causal, 6 rows serve any number of positions.
    let o = &mut out14[..14];
    assert_eq!(
        kernels::attention_positions(&q14, g1, pos(7, 2, false), &k, &v, 0.5, o),
        Ok(())
    );
    // The group's span overflows: no slice can be that long.
    let huge = g(2, usize::MAX, 2);
    assert_eq!(
        kernels::attention_group(&q, huge, &k, &v, 0.5, &mut out),
        Err(shape("attention", "q", usize::MAX, 8))
    );
    assert_eq!(
        kernels::attention(&q[..4], &k, &v, 0.5, &mut out[..3]),
        Err(shape("attention", "out", 4, 3))
    );
    untouched(&out);
}

#[test]
fn row_kernels_refuse_bad_shapes() {
    let x = vec![1.0f32; 4];
    let mut y = vec![f32::NAN; 5];
    let g = Some(Tensor::F32(&x[..3]));
    assert_eq!(
        kernels::add_bias(&mut y, Tensor::F32(&[])),
        Err(shape("add_bias", "bias", 1, 0))
    );
    assert_eq!(
        kernels::add_bias(&mut y, Tensor::F32(&x[..2])),
        Err(shape("add_bias", "y", 6, 5))
    );
    assert_eq!(kernels::add(&mut y, &x), Err(shape("add", "y", 4, 5)));
    assert_eq!(
        kernels::load(&mut y, Tensor::F32(&x)),
        Err(shape("load", "y", 4, 5))
    );
    assert_eq!(
        kernels::add_scaled(&mut y, Tensor::F32(&x), 2.0),
        Err(shape("add_scaled", "y", 4, 5))
    );
    assert_eq!(
        kernels::layer_norm(&x, None, 1.0, &mut y),
        Err(shape("layer_norm", "out", 4, 5))
    );
    assert_eq!(
        kernels::rms_norm(&x, g, 1.0, &mut y[..4]),
        Err(shape("rms_norm", "g", 4, 3))
    );
    assert_eq!(
        kernels::layer_norm(&x, g, 1.0, &mut y[..4]),
        Err(shape("layer_norm", "g", 4, 3))
    );
    let q8_gain = Some(Tensor::Q8_0(&[[0; 34]]));
    assert_eq!(
        kernels::rms_norm(&x, q8_gain, 1.0, &mut y[..4]),
        Err(shape("rms_norm", "g", 4, 32))
    );
    assert_eq!(kernels::exp(&x, &mut y), Err(shape("exp", "out", 4, 5)));
    assert_eq!(portable::dot(&x, &y), Err(shape("dot", "x", 4, 5)));
    assert_eq!(
        kernels::rotary(&mut y[..3], &x[..2], &x[..2]),
        Err(shape("rotary", "v", 4, 3))
    );
    assert_eq!(
        kernels::rotary(&mut y, &x[..2], &x[..1]),
        Err(shape("rotary", "sin", 2, 1))
    );
    untouched(&y);
    assert_eq!(
        dequantize_q8_0(&[[0; 34]], &mut y),
        Err(Error::BufferLength {
            buffer: picoformer::Buffer::Output,
            expected: 32,
            found: 5
        })
    );
    untouched(&y);
    assert_eq!(
        shape("matmul", "x", 6, 4).to_string(),
        "matmul: `x` is 4, the other arguments call for 6"
    );
}

#[test]
fn int8_panels_refuse_bad_shapes() {
    use kernels::Int8Panels;
    let q: Vec<BlockQ8_0> = vec![[0; 34]; 6]; // 3 rows of 64
    let len = Int8Panels::len(3, 64).unwrap();
    assert_eq!(len, 2 * (16 * 34) + 63);
    // An arena of another length is refused and left as it was.
    let mut arena = vec![0xA5u8; len + 1];
    assert_eq!(
        Int8Panels::pack(&q, 64, &mut arena).map(|_| ()),
        Err(shape("pack_int8", "arena", len, len + 1))
    );
    assert_eq!(
        Int8Panels::pack(&q, 0, &mut arena).map(|_| ()),
        Err(shape("pack_int8", "cols", 1, 0))
    );
    assert_eq!(
        Int8Panels::pack(&q, 48, &mut arena).map(|_| ()),
        Err(shape("pack_int8", "cols", 64, 48))
    );
    assert_eq!(
        Int8Panels::pack(&q, 128, &mut arena).map(|_| ()),
        Err(shape("pack_int8", "w", 8, 6))
    );
    assert!(arena.iter().all(|b| *b == 0xA5));
    assert_eq!(Int8Panels::len(usize::MAX, 64), None);
    assert_eq!(Int8Panels::len(64, usize::MAX), None);
    // The product: X whole rows of cols, Y n·rows.
    let mut arena = vec![0u8; len];
    let p = Int8Panels::pack(&q, 64, &mut arena).unwrap();
    let mut y = vec![f32::NAN; 7];
    assert_eq!(
        kernels::matmul_int8_panels(p, &[1.0; 96], &mut y[..6]),
        Err(shape("matmul_int8_panels", "x", 128, 96))
    );
    assert_eq!(
        kernels::matmul_int8_panels(p, &[1.0; 128], &mut y),
        Err(shape("matmul_int8_panels", "y", 6, 7))
    );
    untouched(&y);
    assert_eq!(kernels::matmul_int8_panels(p, &[], &mut []), Ok(()));
    kernels::matmul_int8_panels(p, &[1.0; 128], &mut y[..6]).unwrap();
    assert_eq!(&y[..6], &[0.0; 6]);
}

#[test]
fn int8_rows_product_refuses_bad_shapes() {
    const K: &str = "matmul_int8";
    let q: Vec<BlockQ8_0> = vec![[0; 34]; 6]; // 3 rows of 64
    let mut y = vec![f32::NAN; 7];
    let x = [1.0f32; 128];
    assert_eq!(
        kernels::matmul_int8(&q, 0, &x, &mut y[..6]),
        Err(shape(K, "cols", 1, 0))
    );
    assert_eq!(
        kernels::matmul_int8(&q, 48, &x[..96], &mut y[..6]),
        Err(shape(K, "cols", 64, 48))
    );
    assert_eq!(
        kernels::matmul_int8(&q, 64, &x[..96], &mut y[..6]),
        Err(shape(K, "x", 128, 96))
    );
    assert_eq!(
        kernels::matmul_int8(&q[..5], 64, &x, &mut y[..6]),
        Err(shape(K, "w", 192, 160))
    );
    assert_eq!(
        kernels::matmul_int8(&q, 64, &x, &mut y),
        Err(shape(K, "y", 6, 7))
    );
    untouched(&y);
    assert_eq!(kernels::matmul_int8(&q, 64, &[], &mut []), Ok(()));
    kernels::matmul_int8(&q, 64, &x, &mut y[..6]).unwrap();
    assert_eq!(&y[..6], &[0.0; 6]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any lengths: a product either runs (and then the lengths describe its shapes) or is
    /// refused, for every weight type, through dispatch and the portable twin.
    #[test]
    fn products_never_panic(wl in 0usize..80, cols in 0usize..40, xl in 0usize..80, yl in 0usize..12) {
        let w = vec![0.25f32; wl];
        let wh = vec![f16::from_f32(0.25); wl];
        let q: Vec<BlockQ8_0> = vec![[0; 34]; wl / 8];
        let x = vec![1.0f32; xl];
        let mut y = vec![0.0f32; yl];
        let ok = cols > 0 && xl % cols == 0 && wl % cols == 0 && yl == (xl / cols) * (wl / cols);
        prop_assert_eq!(kernels::matmul(Tensor::F32(&w), cols, &x, &mut y).is_ok(), ok);
        prop_assert_eq!(kernels::matmul(Tensor::F16(&wh), cols, &x, &mut y).is_ok(), ok);
        prop_assert_eq!(portable::matmul(&w, cols, &x, &mut y).is_ok(), ok);
        let _ = kernels::matmul(Tensor::Q8_0(&q), cols, &x, &mut y);
        if let Some(len) = kernels::Panels::len(wl.checked_div(cols).unwrap_or(0), cols) {
            let mut arena = vec![0.0f32; len];
            let packed = kernels::Panels::pack(Tensor::F32(&w), cols, &mut arena);
            prop_assert_eq!(packed.is_ok(), cols > 0 && wl % cols == 0);
            if let Ok(p) = packed {
                let ok = xl % cols == 0 && yl == (xl / cols) * (wl / cols);
                prop_assert_eq!(kernels::matmul_panels(p, &x, &mut y).is_ok(), ok);
            }
        }
        let ok = wl == xl * yl;
        prop_assert_eq!(kernels::matvec(Tensor::F32(&w), &x, &mut y).is_ok(), ok);
        prop_assert_eq!(portable::matvec(&w, xl, &x, &mut y).is_ok(), ok);
        let ok = xl % 32 == 0 && q.len() * 32 == xl * yl;
        prop_assert_eq!(kernels::matvec(Tensor::Q8_0(&q), &x, &mut y).is_ok(), ok);
        prop_assert_eq!(kernels::matvec_q8_portable(&q, &x, &mut y).is_ok(), ok);
        prop_assert_eq!(kernels::matvec_int8(&q, &x, &mut y).is_ok(), ok);
        if let Some(len) = kernels::Int8Panels::len(q.len().checked_mul(32).and_then(|v| v.checked_div(cols)).unwrap_or(0), cols) {
            let mut arena = vec![0u8; len];
            let packed = kernels::Int8Panels::pack(&q, cols, &mut arena);
            prop_assert_eq!(packed.is_ok(), cols > 0 && cols.is_multiple_of(32) && (q.len() * 32).is_multiple_of(cols));
            if let Ok(p) = packed {
                let ok = xl % cols == 0 && yl == (xl / cols) * p.rows();
                prop_assert_eq!(kernels::matmul_int8_panels(p, &x, &mut y).is_ok(), ok);
            }
        }
        let ok = cols > 0 && cols.is_multiple_of(32) && xl % cols == 0 && (q.len() * 32).is_multiple_of(cols)
            && yl == (xl / cols) * (q.len() * 32 / cols);
        prop_assert_eq!(kernels::matmul_int8(&q, cols, &x, &mut y).is_ok(), ok);
        let xq: Vec<BlockQ8_0> = vec![[0; 34]; xl / 8];
        let ok = q.len() == xq.len() * yl;
        prop_assert_eq!(portable::matvec_int8(&q, &xq, &mut y).is_ok(), ok);
    }

    /// Any group, positions and lengths: attention over a chunk's positions either runs or is
    /// refused.
    #[test]
    fn attention_positions_never_panic(
        dim in 0usize..4, heads in 0usize..3, stride in 0usize..6,
        count in 0usize..4, pstride in 0usize..12, causal in proptest::bool::ANY,
        ql in 0usize..30, kl in 0usize..16, vl in 0usize..16, ol in 0usize..30,
    ) {
        let group = HeadGroup { dim, heads, stride };
        let positions = kernels::Positions { count, stride: pstride, causal };
        let (q, k, v) = (vec![0.5f32; ql], vec![0.5f32; kl], vec![0.5f32; vl]);
        let mut out = vec![0.0f32; ol];
        let rows_ok = dim > 0 && kl % dim == 0 && kl / dim >= if causal { count } else { 1 };
        let ok = positions.span(group) == Some(ql) && ol == ql && kl > 0 && rows_ok && vl == kl;
        let run = kernels::attention_positions(&q, group, positions, &k, &v, 0.5, &mut out);
        prop_assert_eq!(run.is_ok(), ok);
        let run = portable::attention_positions(&q, group, positions, &k, &v, 0.5, &mut out);
        prop_assert_eq!(run.is_ok(), ok);
    }

    /// Any group and lengths: attention either runs or is refused.
    #[test]
    fn attention_never_panics(
        dim in 0usize..6, heads in 0usize..4, stride in 0usize..8,
        ql in 0usize..24, kl in 0usize..24, vl in 0usize..24, ol in 0usize..24,
    ) {
        let group = HeadGroup { dim, heads, stride };
        let (q, k, v) = (vec![0.5f32; ql], vec![0.5f32; kl], vec![0.5f32; vl]);
        let mut out = vec![0.0f32; ol];
        let ok = group.span() == Some(ql) && ol == ql && kl > 0 && dim > 0 && kl % dim == 0 && vl == kl;
        prop_assert_eq!(kernels::attention_group(&q, group, &k, &v, 0.5, &mut out).is_ok(), ok);
        let kh: Vec<f16> = k.iter().map(|&a| f16::from_f32(a)).collect();
        let vh: Vec<f16> = v.iter().map(|&a| f16::from_f32(a)).collect();
        prop_assert_eq!(kernels::attention_group(&q, group, &kh, &vh, 0.5, &mut out).is_ok(), ok);
        prop_assert_eq!(portable::attention_group(&q, group, &k, &v, 0.5, &mut out).is_ok(), ok);
    }
}

/// `Positions::seen` inside its preconditions is the causal count, and outside them (a position
/// past `count`, fewer rows than positions, `count` 0) it saturates within `0..=rows` instead of
/// wrapping or panicking.
#[test]
fn positions_seen_never_wraps() {
    use picoformer::kernels::Positions;
    let causal = |count| Positions {
        count,
        stride: 1,
        causal: true,
    };
    assert_eq!(causal(3).seen(0, 10), 8);
    assert_eq!(causal(3).seen(2, 10), 10);
    for count in [0, 1, 3, usize::MAX] {
        for p in [0, 1, 5, usize::MAX] {
            for rows in [0, 1, 2, usize::MAX] {
                assert!(causal(count).seen(p, rows) <= rows);
                let all = Positions {
                    causal: false,
                    ..causal(count)
                };
                assert_eq!(all.seen(p, rows), rows);
            }
        }
    }
    assert_eq!(causal(5).seen(0, 2), 0);
    assert_eq!(causal(3).seen(7, 4), 4);
}
