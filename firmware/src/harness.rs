//! What every firmware program here shares besides the start-up (`rt`) and the clock: the exit
//! statuses, the negative check named on the semihosting command line, the kernel self-test, the
//! stack report and the panic handler. Each program (`main.rs`, `kws.rs`) is its own crate root
//! with `mod harness;`, and provides `run() -> !`, which `rt` calls at reset.

use semihosting::println;

/// Bytes aligned for zero-copy views of f32/f16/bf16 weights.
#[repr(C, align(16))]
pub struct Aligned<T: ?Sized>(pub T);

/// Exit statuses.
pub const PASS: i32 = 0;
pub const FAIL: i32 = 1;
pub const LIB_ERROR: i32 = 2;
/// Used by `rt` for HardFault and RISC-V traps.
pub const FAULT: i32 = 3;
const PANIC: i32 = 101;
/// The fault check's invalid access returned instead of faulting (RISC-V's `rt`).
#[cfg_attr(not(target_arch = "riscv32"), allow(dead_code))]
pub const FAIL_NO_FAULT: i32 = 4;

/// The body of a program's `run`: evaluates `$header` (the report's first line), then does the
/// negative check the semihosting arguments name (a panic or a fault), or else calls `$check`
/// (told whether to corrupt one expected value: the `mismatch` check), the kernel self-test and
/// the stack report; prints the verdict and exits with the status. A macro rather than a
/// function taking closures, which costs the Cortex-M3 image 16 bytes it does not have.
macro_rules! run_program {
    ($header:expr, $check:expr) => {{
        let mode = $crate::harness::mode();
        $header;
        match mode {
            $crate::harness::Mode::Panic => panic!("forced panic (negative check)"),
            $crate::harness::Mode::Fault => $crate::rt::read_invalid_address(),
            _ => {}
        }
        let code = $check(mode == $crate::harness::Mode::Mismatch);
        let code = if $crate::harness::kernel_self_test() {
            code
        } else {
            $crate::harness::FAIL
        };
        let code = if $crate::harness::stack_report() {
            code
        } else {
            $crate::harness::FAIL
        };
        semihosting::println!(
            "verdict: {}",
            if code == $crate::harness::PASS {
                "PASS"
            } else {
                "FAIL"
            }
        );
        semihosting::process::exit(code)
    }};
}
pub(crate) use run_program;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Mismatch,
    Panic,
    Fault,
}

/// The negative check named in the semihosting arguments, if any.
pub fn mode() -> Mode {
    let Ok(args) = semihosting::experimental::env::args::<256>() else {
        return Mode::Check;
    };
    let mut mode = Mode::Check;
    for arg in &args {
        match arg {
            Ok("mismatch") => mode = Mode::Mismatch,
            Ok("panic") => mode = Mode::Panic,
            Ok("fault") => mode = Mode::Fault,
            _ => {}
        }
    }
    mode
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISMATCH"
    }
}

/// The Cortex-M FPU kernels against their portable twins on the device (every length 0..=40,
/// both alignments of f16 rows, every f16 through the conversion), bit for bit.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
#[inline(never)]
pub fn kernel_self_test() -> bool {
    let bad = picoformer::kernels::cortexm::self_test();
    println!(
        "kernel self-test: cortexm (FPU f16 conversion, f32/f16 matvec, int8 path; DSP and Helium routines where built) vs portable: {bad} cases differ -> {}",
        verdict(bad == 0)
    );
    bad == 0
}

/// No architecture kernels to test on this target.
#[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
#[inline(never)]
pub fn kernel_self_test() -> bool {
    true
}

/// Peak stack use: the lowest word of the painted stack that is no longer the paint.
/// Returns false if the paint is gone down to the stack's end (an overflow into the statics).
#[inline(never)] // its own frame: the steps of `run` never overlap, so neither do their frames
pub fn stack_report() -> bool {
    let (end, start) = crate::rt::stack_bounds();
    let mut at = end;
    // SAFETY: [end, start) is the stack region the linker script reserves and the reset code
    // painted; every word of it is readable, and reading below the live frames changes nothing.
    while at < start
        && unsafe { core::ptr::read_volatile(at as *const u32) } == crate::rt::STACK_PAINT
    {
        at += 4;
    }
    let used = start - at;
    let ok = at > end;
    println!(
        "stack: peak {} B of {} B painted{}",
        used,
        start - end,
        if ok { "" } else { " -> OVERFLOW" }
    );
    ok
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("panic: {info}");
    semihosting::process::exit(PANIC)
}
