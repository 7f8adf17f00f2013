//! Instruction counts from a timer the board has, for QEMU's `-icount shift=0` (virtual time
//! advances 1 ns per instruction executed, exactly): a timer ticking at F Hz then ticks once
//! every 10⁹/F instructions.
//!
//! - Arm (all four boards; SysTick is optional on the Cortex-M0, and QEMU's nRF51 has it, on its
//!   16 MHz processor clock): SysTick on the processor clock (`CLKSOURCE` = 1), 24 bits counting
//!   down from 0xFF_FFFF; [`Clock::now`] extends it to 64 bits, so it must be read at least once
//!   per 2²⁴ ticks (2²⁴·10⁹/F instructions: 671 million at 25 MHz; every call of the harness
//!   is far shorter). QEMU derives the tick from virtual time, so instructions per tick is the
//!   board clock's period in ns: measured at start-up ([`Clock::calibrate`]) by timing a loop
//!   of a known number of instructions.
//! - RISC-V: `minstret`, which QEMU reads from the instruction counter under `-icount`: one tick
//!   per instruction.
//!
//! Without `-icount` both read the host's time and the figures mean nothing; `run.sh` always
//! passes it. The markers printed (`mark NAME TICKS`) are what `count.sh` reads.

/// A 64-bit tick count and the instructions per tick.
pub struct Clock {
    last: u32,
    high: u64,
    /// Instructions per tick × 2¹⁶ (measured).
    per_tick_q16: u64,
}

#[cfg(target_arch = "arm")]
mod hw {
    const SYST_CSR: *mut u32 = 0xE000_E010 as *mut u32;
    const SYST_RVR: *mut u32 = 0xE000_E014 as *mut u32;
    const SYST_CVR: *mut u32 = 0xE000_E018 as *mut u32;
    pub const WRAP: u64 = 1 << 24;

    /// Starts SysTick free-running on the processor clock, no interrupt.
    pub fn start() {
        // SAFETY: the SysTick registers exist on every M-profile core; nothing else uses SysTick
        // (no interrupt is enabled), and these writes only configure it.
        unsafe {
            SYST_CSR.write_volatile(0);
            SYST_RVR.write_volatile(0x00FF_FFFF);
            SYST_CVR.write_volatile(0);
            SYST_CSR.write_volatile(0b101); // ENABLE | CLKSOURCE = processor clock
        }
    }

    /// Ticks elapsed, modulo 2²⁴ (the counter counts down).
    pub fn raw() -> u32 {
        // SAFETY: reading SYST_CVR has no side effect.
        let v = unsafe { SYST_CVR.read_volatile() };
        0x00FF_FFFF - (v & 0x00FF_FFFF)
    }

    /// `n` iterations of a 2-instruction loop (`subs`, `bne`).
    #[inline(never)]
    pub fn spin(n: u32) {
        // SAFETY: a register countdown; touches no memory and the flags only.
        unsafe {
            core::arch::asm!("1:", "subs {0}, {0}, #1", "bne 1b", inout(reg) n => _, options(nomem, nostack));
        }
    }
    pub const SPIN_INSNS: u64 = 2;
}

#[cfg(target_arch = "riscv32")]
mod hw {
    pub const WRAP: u64 = 1 << 32;

    pub fn start() {}

    /// `minstret`: instructions retired, modulo 2³².
    pub fn raw() -> u32 {
        let v: u32;
        // SAFETY: reading a counter CSR in machine mode has no side effect.
        unsafe { core::arch::asm!("csrr {0}, minstret", out(reg) v, options(nomem, nostack)) };
        v
    }

    /// `n` iterations of a 2-instruction loop (`addi`, `bnez`).
    #[inline(never)]
    pub fn spin(n: u32) {
        // SAFETY: a register countdown; touches no memory.
        unsafe {
            core::arch::asm!("1:", "addi {0}, {0}, -1", "bnez {0}, 1b", inout(reg) n => _, options(nomem, nostack));
        }
    }
    pub const SPIN_INSNS: u64 = 2;
}

/// Loop iterations timed by [`Clock::calibrate`]: 2 million instructions.
const CALIBRATION_LOOPS: u32 = 1_000_000;

impl Clock {
    /// Starts the timer and measures instructions per tick.
    pub fn calibrate() -> Clock {
        hw::start();
        let mut c = Clock {
            last: hw::raw(),
            high: 0,
            per_tick_q16: 1 << 16,
        };
        let t0 = c.ticks();
        hw::spin(CALIBRATION_LOOPS);
        let ticks = (c.ticks() - t0).max(1);
        let insns = u64::from(CALIBRATION_LOOPS) * hw::SPIN_INSNS;
        // Rounded to whole instructions per 1/64 tick: the loop's few extra instructions (the
        // calls around it) and the tick's granularity are below that.
        let q = ((insns << 16) + ticks / 2) / ticks;
        c.per_tick_q16 = (q + (1 << 9)) & !((1 << 10) - 1);
        c
    }

    /// Ticks since start, 64 bits.
    pub fn ticks(&mut self) -> u64 {
        let now = hw::raw();
        let delta = (u64::from(now).wrapping_sub(u64::from(self.last))) % hw::WRAP;
        self.last = now;
        self.high += delta;
        self.high
    }

    /// Instructions per tick, × 2¹⁶.
    pub fn per_tick_q16(&self) -> u64 {
        self.per_tick_q16
    }

    /// `ticks` in instructions.
    pub fn instructions(&self, ticks: u64) -> u64 {
        (ticks * self.per_tick_q16 + (1 << 15)) >> 16
    }
}
