#!/usr/bin/env bash
# Instructions executed between two markers of any semihosting ELF, on one of the firmware's
# boards under QEMU's exact instruction count (-icount shift=0: virtual time advances 1 ns per
# instruction).
#
# The program marks points by printing lines `mark NAME TICKS` over semihosting, TICKS being a
# board timer read at that point: on Arm the 24-bit SysTick on the processor clock (counting
# up as 0xFFFFFF - SYST_CVR, extended to 64 bits by the program), on RISC-V `minstret`. The
# instructions per tick come from a line `clock: X instructions per tick` if the program prints
# one (picoformer's firmware calibrates it, src/clock.rs), else from the board's clock below.
# Any engine can be timed the same way by printing the same lines (see README.md).
#
# Usage: firmware/count.sh TRIPLE ELF [FROM TO [N]]
#   FROM, TO  marker names (default: the first and the last marker printed)
#   N         divide the count by N (e.g. tokens), also printed
# Prints `instructions FROM..TO: COUNT` (and `per unit: COUNT/N`); exit 1 if a marker is missing
# or the program fails.
set -uo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
triple=$1 elf=$2 from=${3:-} to=${4:-} n=${5:-}

# triple -> QEMU command, and instructions per timer tick (10^9 / the timer's clock in Hz,
# measured with the firmware's calibration loop on QEMU 7.2).
case "$triple" in
  thumbv7em-none-eabihf) qemu="qemu-system-arm -machine mps2-an386 -cpu cortex-m4"; per_tick=40 ;;
  thumbv8m.main-none-eabihf) qemu="qemu-system-arm -machine mps3-an547 -cpu cortex-m55"; per_tick=31.25 ;;
  thumbv7m-none-eabi) qemu="qemu-system-arm -machine lm3s6965evb -cpu cortex-m3"; per_tick=80 ;;
  thumbv6m-none-eabi) qemu="qemu-system-arm -machine microbit -cpu cortex-m0"; per_tick=62.5 ;;
  riscv32imac-unknown-none-elf) qemu="qemu-system-riscv32 -machine virt -bios none -m 64M"; per_tick=1 ;;
  *) echo "count.sh: unknown board for $triple" >&2; exit 2 ;;
esac

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# shellcheck disable=SC2086 # $qemu is a command line
timeout 600 $qemu -display none -icount shift=0,sleep=off \
  -semihosting-config enable=on,target=native -kernel "$elf" </dev/null >"$log" 2>&1
status=$?
if [ "$status" -ne 0 ]; then
  echo "count.sh: the program exited with status $status" >&2
  sed 's/^/    /' "$log" >&2
  exit 1
fi
calibrated=$(sed -n 's/^clock: \([0-9.]*\) instructions per tick.*/\1/p' "$log" | head -1)
[ -n "$calibrated" ] && per_tick=$calibrated
[ -z "$from" ] && from=$(awk '$1 == "mark" { print $2; exit }' "$log")
[ -z "$to" ] && to=$(awk '$1 == "mark" { m = $2 } END { print m }' "$log")
t0=$(awk -v m="$from" '$1 == "mark" && $2 == m { print $3; exit }' "$log")
t1=$(awk -v m="$to" '$1 == "mark" && $2 == m { print $3; exit }' "$log")
if [ -z "$t0" ] || [ -z "$t1" ]; then
  echo "count.sh: marker '$from' or '$to' not printed (lines 'mark NAME TICKS')" >&2
  exit 1
fi
awk -v a="$t0" -v b="$t1" -v k="$per_tick" -v n="$n" -v f="$from" -v t="$to" 'BEGIN {
  c = (b - a) * k
  printf "instructions %s..%s: %.0f (%d ticks x %s per tick)\n", f, t, c, b - a, k
  if (n != "") printf "per unit: %.0f (/%d)\n", c / n, n
}'
