//! The SIMD kernel bodies, written once over a small vector interface ([`Isa`]) that each
//! architecture file implements (AVX2+FMA+F16C and AVX-512 in `x86/`, NEON in `aarch64/`,
//! simd128 in `wasm32.rs`). Each architecture instantiates these bodies inside its own
//! `#[target_feature]` wrappers, so every intrinsic is inlined with the features enabled.
//!
//! Everything here is `unsafe fn` over raw pointers: the callers (the architecture files'
//! safe functions) check every slice length once at entry and guarantee that the instruction
//! set is available. Within a body, every pointer access stays inside the ranges those checks
//! established; the comments name the range.
#![allow(unsafe_code)]
// The bodies are `unsafe fn`s whose whole contract is the one stated above.
#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

// Declared in the order the kernels build on each other (which is also the order rustc
// emits their code in).
mod attention;
mod broadcast;
mod gemm;
mod gemv;
mod int8;
pub(crate) mod int8_panels;
mod isa;
mod maps;
pub(crate) mod panels;
pub(crate) mod rows;

pub(crate) use attention::{attention, Queries};
pub(crate) use gemm::{gemm, gemm_q8};
pub(crate) use gemv::{gemv, store_row};
pub(crate) use int8::{gemm_int8, gemv_q8, quantize, Int8Dot};
pub(crate) use int8_panels::Int8Lanes;
pub(crate) use isa::{Isa, LoadW};
pub(crate) use maps::{map_slice, Exp, Gelu, Lanewise, Silu};

/// The per-architecture glue, written once: the `#[target_feature]` wrappers (one per kernel,
/// each instantiating a generic body above) and the safe `pub(crate)` entry points (lengths
/// checked here, once). Invoked by each architecture file with its [`Isa`] type (named like
/// its `kernels::Isa` variant, which each entry point marks as run), its token type and the
/// target-feature attribute(s) of the wrappers. The int8 products have their own macro,
/// [`int8_kernels`].
macro_rules! target_kernels {
    (
        isa: $isa:ident,
        token: $token:ty,
        $(#[$attr:meta])+
    ) => {
        // ---- target-feature wrappers: one per kernel, each instantiating the generic body.

        $(#[$attr])+
        unsafe fn gemv_target<E: $crate::kernels::simd::LoadW<$isa>>(
            w: &[E],
            x: &[f32],
            y: &mut [f32],
        ) {
            $crate::kernels::simd::gemv::<$isa, E>(
                w.as_ptr(),
                x.len(),
                x.as_ptr(),
                y.as_mut_ptr(),
                y.len(),
                true,
            )
        }

        $(#[$attr])+
        unsafe fn gemv_q8_target(w: &[$crate::q8_0::BlockQ8_0], x: &[f32], y: &mut [f32]) {
            $crate::kernels::simd::gemv_q8::<$isa>(
                w.as_ptr(),
                x.len(),
                x.as_ptr(),
                y.as_mut_ptr(),
                y.len(),
            )
        }

        $(#[$attr])+
        unsafe fn gemm_target<E: $crate::kernels::simd::LoadW<$isa>>(
            w: &[E],
            cols: usize,
            x: &[f32],
            y: &mut [f32],
        ) {
            let (n, rows) = (x.len() / cols, w.len() / cols);
            $crate::kernels::simd::gemm::<$isa, E>(
                w.as_ptr(),
                cols,
                x.as_ptr(),
                y.as_mut_ptr(),
                n,
                rows,
            )
        }

        $(#[$attr])+
        unsafe fn gemm_q8_target(
            w: &[$crate::q8_0::BlockQ8_0],
            cols: usize,
            x: &[f32],
            y: &mut [f32],
        ) {
            let (n, rows) = (x.len() / cols, y.len() / (x.len() / cols));
            $crate::kernels::simd::gemm_q8::<$isa>(
                w.as_ptr(),
                cols,
                x.as_ptr(),
                y.as_mut_ptr(),
                n,
                rows,
            )
        }

        $(#[$attr])+
        unsafe fn gemm_panels_target(w: &[f32], cols: usize, x: &[f32], y: &mut [f32], rows: usize) {
            $crate::kernels::simd::panels::gemm::<$isa>(
                w.as_ptr(),
                cols,
                x.as_ptr(),
                y.as_mut_ptr(),
                x.len() / cols,
                rows,
            )
        }

        $(#[$attr])+
        unsafe fn attention_target<K: $crate::kernels::simd::LoadW<$isa>>(
            q: &[f32],
            group: $crate::kernels::HeadGroup,
            positions: $crate::kernels::Positions,
            keys: &[K],
            values: &[K],
            scale: f32,
            out: &mut [f32],
        ) {
            let queries = $crate::kernels::simd::Queries { group, positions };
            let len = keys.len() / group.dim;
            $crate::kernels::simd::attention::<$isa, K>(
                q.as_ptr(),
                queries,
                keys.as_ptr(),
                values.as_ptr(),
                len,
                scale,
                out.as_mut_ptr(),
            )
        }

        $(#[$attr])+
        unsafe fn add_bias_target<E: $crate::kernels::simd::LoadW<$isa>>(y: &mut [f32], b: &[E]) {
            $crate::kernels::simd::rows::add_bias::<$isa, E>(
                y.as_mut_ptr(),
                b.as_ptr(),
                b.len(),
                y.len() / b.len(),
            )
        }

        $(#[$attr])+
        unsafe fn norm_target<E: $crate::kernels::simd::LoadW<$isa>>(
            kind: $crate::kernels::Norm,
            x: &[f32],
            g: Option<&[E]>,
            offset: f32,
            out: &mut [f32],
        ) {
            $crate::kernels::simd::rows::norm::<$isa, E>(
                kind,
                x.as_ptr(),
                g.map(<[E]>::as_ptr),
                offset,
                out.as_mut_ptr(),
                x.len(),
            )
        }

        /// A lane-wise activation `F` in place.
        $(#[$attr])+
        unsafe fn activation_target<F: $crate::kernels::simd::Lanewise>(x: &mut [f32]) {
            let p = x.as_mut_ptr();
            $crate::kernels::simd::map_slice::<$isa, F>(p.cast_const(), p, x.len())
        }

        $(#[$attr])+
        unsafe fn exp_target(x: &[f32], out: &mut [f32]) {
            $crate::kernels::simd::map_slice::<$isa, $crate::kernels::simd::Exp>(
                x.as_ptr(),
                out.as_mut_ptr(),
                x.len(),
            )
        }

        // ---- the safe entry points (lengths checked here, once).

        /// `y = x·Wᵀ`, W `[y.len(), x.len()]`.
        pub(crate) fn matvec<E: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            w: &[E],
            x: &[f32],
            y: &mut [f32],
        ) {
            assert_eq!(w.len(), x.len() * y.len());
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the wrappers' target features (on wasm32, simd128 is
            // enabled for the whole build); w, x, y have exactly the lengths gemv reads and
            // writes (w: rows·cols, x: cols, y: rows).
            unsafe { gemv_target(w, x, y) }
        }

        /// `y = x·Wᵀ` for Q8_0 weights, W `[y.len(), x.len()]`, `x.len()` a multiple of 32.
        pub(crate) fn matvec_q8(
            _: $token,
            w: &[$crate::q8_0::BlockQ8_0],
            x: &[f32],
            y: &mut [f32],
        ) {
            assert!(x.len() % $crate::q8_0::Q8_0_BLOCK == 0);
            assert_eq!(w.len() * $crate::q8_0::Q8_0_BLOCK, x.len() * y.len());
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; w holds rows·cols/32 blocks, x cols, y rows.
            unsafe { gemv_q8_target(w, x, y) }
        }

        /// `Y = X·Wᵀ`: X `[n, cols]`, W `[rows, cols]`, Y `[n, rows]`.
        pub(crate) fn matmul<E: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            w: &[E],
            cols: usize,
            x: &[f32],
            y: &mut [f32],
        ) {
            assert!(cols > 0 && x.len() % cols == 0 && w.len() % cols == 0);
            assert_eq!(y.len(), (x.len() / cols) * (w.len() / cols));
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; the asserts give exactly the shapes gemm
            // reads (w: rows·cols, x: n·cols) and writes (y: n·rows).
            unsafe { gemm_target(w, cols, x, y) }
        }

        /// `Y = X·Wᵀ` for Q8_0 weights: X `[n, cols]`, W `[rows, cols]` in blocks of 32,
        /// Y `[n, rows]`; `cols` a multiple of 32.
        pub(crate) fn matmul_q8(
            _: $token,
            w: &[$crate::q8_0::BlockQ8_0],
            cols: usize,
            x: &[f32],
            y: &mut [f32],
        ) {
            assert!(cols > 0 && cols % $crate::q8_0::Q8_0_BLOCK == 0 && x.len() % cols == 0);
            assert!(x.len() >= cols);
            let rows = w.len() * $crate::q8_0::Q8_0_BLOCK / cols;
            assert_eq!(w.len() * $crate::q8_0::Q8_0_BLOCK, rows * cols);
            assert_eq!(y.len(), (x.len() / cols) * rows);
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; the asserts give exactly the shapes
            // gemm_q8 reads (w: rows·cols/32 blocks, x: n·cols, n >= 1) and writes (y: n·rows).
            unsafe { gemm_q8_target(w, cols, x, y) }
        }

        /// `Y = X·Wᵀ` over packed weights: X `[n, cols]`, Y `[n, rows]`.
        pub(crate) fn matmul_panels(
            _: $token,
            w: $crate::kernels::Panels<'_>,
            x: &[f32],
            y: &mut [f32],
        ) {
            let (rows, cols, panel) = (w.rows(), w.cols(), $crate::kernels::PANEL);
            assert!(cols > 0 && x.len() % cols == 0);
            assert_eq!(y.len(), (x.len() / cols) * rows);
            assert_eq!(w.as_slice().len(), rows.div_ceil(panel) * panel * cols);
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; the asserts give exactly the shapes the
            // body reads (w: the panels of rows × cols, x: n·cols) and writes (y: n·rows).
            unsafe { gemm_panels_target(w.as_slice(), cols, x, y, rows) }
        }

        /// The query heads of `group` at each of `positions` over `keys.len() / group.dim`
        /// cached rows.
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn attention<K: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            q: &[f32],
            group: $crate::kernels::HeadGroup,
            positions: $crate::kernels::Positions,
            keys: &[K],
            values: &[K],
            scale: f32,
            out: &mut [f32],
        ) {
            assert_eq!(positions.span(group), Some(q.len()));
            assert!(!keys.is_empty() && keys.len() % group.dim == 0);
            assert!(!positions.causal || keys.len() / group.dim >= positions.count);
            assert_eq!(keys.len(), values.len());
            assert_eq!(out.len(), q.len());
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; `span` checked dim, heads, count >= 1,
            // stride >= dim and q, out hold (count − 1)·pstride + (heads − 1)·stride + dim
            // values; keys and values hold len·dim elements (len >= 1, and >= count when
            // causal), as the body requires.
            unsafe { attention_target(q, group, positions, keys, values, scale, out) }
        }

        /// `y[r, i] += b[i]` for every row of `y` (`y.len()` a multiple of `b.len()` > 0).
        pub(crate) fn add_bias<E: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            y: &mut [f32],
            b: &[E],
        ) {
            assert!(!b.is_empty() && y.len() % b.len() == 0);
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; y holds y.len() / b.len() whole rows of
            // b.len() values, as the body reads and writes, and b is read in full.
            unsafe { add_bias_target(y, b) }
        }

        /// LayerNorm or RMSNorm of `x` into `out` (the same length), with the gain `g + offset`
        /// if `g` (as long as `x`).
        pub(crate) fn norm<E: $crate::kernels::simd::LoadW<$isa>>(
            _: $token,
            kind: $crate::kernels::Norm,
            x: &[f32],
            g: Option<&[E]>,
            offset: f32,
            out: &mut [f32],
        ) {
            assert_eq!(x.len(), out.len());
            assert!(g.is_none_or(|g| g.len() == x.len()));
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; x, out and g (if any) hold the x.len()
            // values the body reads and writes.
            unsafe { norm_target(kind, x, g, offset, out) }
        }

        /// SiLU in place with the vector exp.
        pub(crate) fn silu(_: $token, x: &mut [f32]) {
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; the body reads and writes x[..x.len()].
            unsafe { activation_target::<$crate::kernels::simd::Silu>(x) }
        }

        /// GELU in place with the portable kernel's rational erf.
        pub(crate) fn gelu(_: $token, x: &mut [f32]) {
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; the body reads and writes x[..x.len()].
            unsafe { activation_target::<$crate::kernels::simd::Gelu>(x) }
        }

        /// `out[i] = eˣ⁽ⁱ⁾` with the vector exp.
        pub(crate) fn exp(_: $token, x: &[f32], out: &mut [f32]) {
            assert_eq!(x.len(), out.len());
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the features; x and out have the same length n.
            unsafe { exp_target(x, out) }
        }
    };
}
pub(crate) use target_kernels;

/// The int8 glue, as [`target_kernels`]: the wrappers and entry points of the Q8_0 × Q8_0
/// products for one [`Int8Dot`] + [`Int8Lanes`] type, with the token and target-feature
/// attribute(s) it needs (VNNI is a feature of its own), marking `isa` as run. Invoked once per
/// int8 dot product (x86 has three: AVX2's `vpmaddubsw`, AVX-VNNI and AVX-512 VNNI).
macro_rules! int8_kernels {
    (
        isa: $isa:ident,
        int8: $dot:ty,
        token: $itoken:ty,
        $(#[$iattr:meta])+
    ) => {
        $(#[$iattr])+
        unsafe fn gemm_int8_target(
            w: &[$crate::q8_0::BlockQ8_0],
            stride: usize,
            x: &[$crate::q8_0::BlockQ8_0],
            n: usize,
            y: &mut [f32],
            rows: usize,
            add: bool,
        ) {
            $crate::kernels::simd::gemm_int8::<$dot>(
                w.as_ptr(),
                stride,
                x.as_ptr(),
                x.len() / n,
                n,
                y.as_mut_ptr(),
                rows,
                add,
            )
        }

        $(#[$iattr])+
        unsafe fn quantize_target(
            x: &[f32],
            out: &mut [$crate::q8_0::BlockQ8_0],
            sums: &mut [i32],
        ) {
            $crate::kernels::simd::quantize::<<$dot as $crate::kernels::simd::Int8Lanes>::I>(
                x.as_ptr(),
                out.as_mut_ptr(),
                sums.as_mut_ptr(),
                x.len() / $crate::q8_0::Q8_0_BLOCK,
            )
        }

        $(#[$iattr])+
        unsafe fn gemm_int8_panels_target(o: $crate::kernels::simd::int8_panels::Operands) {
            $crate::kernels::simd::int8_panels::gemm::<$dot>(o)
        }

        /// `Y (+)= X·Wᵀ` for the `n` positions of Q8_0 activations `x` (`x.len() / n` blocks
        /// each) and that many first blocks of each row of W, rows `stride` blocks apart; Y is
        /// `[n, rows]` (`add`: add to it).
        pub(crate) fn matmul_int8(
            _: $itoken,
            w: &[$crate::q8_0::BlockQ8_0],
            stride: usize,
            x: &[$crate::q8_0::BlockQ8_0],
            y: &mut [f32],
            rows: usize,
            add: bool,
        ) {
            assert!(rows > 0 && !y.is_empty() && y.len() % rows == 0);
            let n = y.len() / rows;
            assert!(x.len() % n == 0 && x.len() / n <= stride);
            assert!(w.len() >= (rows - 1) * stride + x.len() / n);
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            // SAFETY: the token proves the int8 wrapper's features; w holds
            // (rows − 1)·stride + nb blocks, x n·nb, y n·rows, as gemm_int8 reads and writes.
            unsafe { gemm_int8_target(w, stride, x, n, y, rows, add) }
        }

        /// `tensor::quantize_q8_0` of `x` (whole blocks) into `out`, and the sums of each
        /// block's quants, on the int8 wrapper's vector set (extra entries are left alone).
        pub(crate) fn quantize(_: $itoken, x: &[f32], out: &mut [$crate::q8_0::BlockQ8_0], sums: &mut [i32]) {
            let nb = x.len() / $crate::q8_0::Q8_0_BLOCK;
            assert!(x.len() % $crate::q8_0::Q8_0_BLOCK == 0 && out.len() >= nb && sums.len() >= nb);
            // SAFETY: the token proves the int8 wrapper's features; the body reads x[..32·nb]
            // and writes out[..nb] and sums[..nb], inside the slices as asserted.
            unsafe { quantize_target(x, out, sums) }
        }

        /// `Y (+)= X·Wᵀ` over int8 panels for blocks `b0..b0 + nbc` of each row: X is `n`
        /// positions of `nbc` Q8_0 blocks (quants in −127..=127) with `xsum` the sums of
        /// their quants, Y `[n, w.rows()]` (`add`: add to it).
        pub(crate) fn matmul_int8_panels(
            _: $itoken,
            w: $crate::kernels::Int8Panels<'_>,
            b0: usize,
            x: &[$crate::q8_0::BlockQ8_0],
            xsum: &[i32],
            y: &mut [f32],
            add: bool,
        ) {
            let rows = w.rows();
            let nb = w.cols() / $crate::q8_0::Q8_0_BLOCK;
            assert!(rows > 0 && !y.is_empty() && y.len() % rows == 0);
            let n = y.len() / rows;
            assert!(x.len() % n == 0 && xsum.len() == x.len());
            let nbc = x.len() / n;
            assert!(nbc > 0 && b0 + nbc <= nb);
            let groups = rows.div_ceil($crate::kernels::INT8_PANEL) * nb;
            assert!(w.quants().len() >= groups * $crate::q8_0::Q8_0_BLOCK * $crate::kernels::INT8_PANEL);
            assert!(w.scales().len() >= groups * $crate::kernels::INT8_PANEL * 2);
            $crate::kernels::isa::mark_ran($crate::kernels::Isa::$isa);
            let o = $crate::kernels::simd::int8_panels::Operands {
                q: w.quants().as_ptr().cast(),
                s: w.scales().as_ptr().cast(),
                nb,
                b0,
                nbc,
                x: x.as_ptr(),
                xsum: xsum.as_ptr(),
                n,
                y: y.as_mut_ptr(),
                rows,
                add,
            };
            // SAFETY: the token proves the int8 wrapper's features; the asserts give the
            // ranges the body reads (the panels' groups and scales, n·nbc blocks and sums) and
            // writes (y: n·rows).
            unsafe { gemm_int8_panels_target(o) }
        }
    };
}
pub(crate) use int8_kernels;
