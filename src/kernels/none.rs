//! The stand-in for architectures without SIMD kernels: no [`Token`] ever exists, so every
//! dispatcher takes its portable path; the kernel table's functions are stubs.

use super::Isa;
use crate::tensor::Element;

/// Uninhabited: there is no SIMD path on this target.
#[derive(Clone, Copy)]
pub(crate) enum Token {}

impl Token {
    #[inline(always)]
    pub(crate) fn get(_: Option<Isa>) -> Option<Token> {
        None
    }
    pub(crate) fn isa(self) -> Isa {
        match self {}
    }
}

/// Any element type (nothing is ever loaded).
pub(crate) trait Weight: Element {}
impl<E: Element> Weight for E {}

/// Unreachable: there is no token to call a kernel with.
macro_rules! route {
    ($family:ident, $t:ident, $k:ident($($a:ident),*)) => {{
        $(let _ = $a;)*
        match $t {}
    }};
}

super::kernel_table!(route);
