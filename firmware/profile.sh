#!/usr/bin/env bash
# Instructions executed per function by any semihosting ELF on one of the firmware's boards:
# where a program's instructions go, as `count.sh` says how many there are.
#
# QEMU logs each translation block once as it translates it (`-d in_asm`: its instructions) and
# each time it runs it (`-d exec,nochain`: every block entered, chaining off so none is
# skipped); the script multiplies each block's instructions by its runs and sums them by the
# symbol QEMU names for it. Exact for what QEMU executes, under the same `-icount shift=0` as
# `count.sh` (so the timer loops run as there), and covering the whole run: self-test and
# start-up included. About 30 s per 100 million instructions here; the log streams through a
# pipe, and nothing large is written.
#
# Usage: firmware/profile.sh TRIPLE ELF [TOP]
#   TOP   how many functions to print (default 30), with their share of all instructions
# Needs python3; demangles with c++filt where there is one.
set -uo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
triple=$1 elf=$2 top=${3:-30}
case "$top" in
  '' | *[!0-9]*) echo "profile.sh: TOP must be a number, not '$top'" >&2; exit 2 ;;
esac
[ -f "$elf" ] || { echo "profile.sh: no such file: $elf" >&2; exit 2; }
command -v python3 >/dev/null || { echo "profile.sh: needs python3" >&2; exit 2; }

case "$triple" in
  thumbv7em-none-eabihf) qemu="qemu-system-arm -machine mps2-an386 -cpu cortex-m4" ;;
  thumbv8m.main-none-eabihf) qemu="qemu-system-arm -machine mps3-an547 -cpu cortex-m55" ;;
  thumbv7m-none-eabi) qemu="qemu-system-arm -machine lm3s6965evb -cpu cortex-m3" ;;
  thumbv6m-none-eabi) qemu="qemu-system-arm -machine microbit -cpu cortex-m0" ;;
  riscv32imac-unknown-none-elf) qemu="qemu-system-riscv32 -machine virt -bios none -m 64M" ;;
  *) echo "profile.sh: unknown board for $triple" >&2; exit 2 ;;
esac

command -v "${qemu%% *}" >/dev/null || { echo "profile.sh: ${qemu%% *} is not installed" >&2; exit 2; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkfifo "$dir/log"
# This shell holds the pipe open for writing until QEMU has finished, so the counter neither
# waits for QEMU to open it nor stops before QEMU has written everything.
exec 3<>"$dir/log"
# The counter reads the log as QEMU writes it.
python3 - "$dir/log" >"$dir/counts" 3>&- <<'PY' &
import collections, fcntl, os, re, sys

size = {}  # block start -> instructions (its latest translation)
name = {}  # block start -> symbol
runs = collections.Counter()
start = sym = None
n = 0
insn = re.compile(r"0x([0-9a-f]+):\s")
trace = re.compile(r"\[[0-9a-f]+/([0-9a-f]+)/")
# Opened without waiting for a writer (the shell may already have closed its end if QEMU
# failed at once: then the first read is the end), then read blocking.
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
with os.fdopen(fd, errors="replace") as log:
    for line in log:
        if line.startswith("IN:"):
            if start is not None:
                size[start] = n
            sym, start, n = line[3:].strip() or "?", None, 0
        elif line.startswith("Trace"):
            if start is not None:
                size[start] = n
                start = sym = None
            m = trace.search(line)
            if m:
                runs[int(m.group(1), 16)] += 1
        elif sym is not None:
            m = insn.match(line)
            if m:
                if start is None:
                    start = int(m.group(1), 16)
                    name[start] = sym
                n += 1
    if start is not None:
        size[start] = n
by = collections.Counter()
for pc, r in runs.items():
    by[name.get(pc, "?")] += r * size.get(pc, 0)
for s, c in by.most_common():
    print(c, s)
PY
counter=$!
# shellcheck disable=SC2086 # $qemu is a command line
timeout 1800 $qemu -display none -icount shift=0,sleep=off \
  -semihosting-config enable=on,target=native -kernel "$elf" \
  -d in_asm,exec,nochain -D "$dir/log" </dev/null >"$dir/out" 2>&1 3>&-
status=$?
exec 3>&-
wait "$counter" || { echo "profile.sh: reading QEMU's log failed" >&2; exit 1; }
if [ "$status" -ne 0 ]; then
  echo "profile.sh: the program exited with status $status" >&2
  sed 's/^/    /' "$dir/out" >&2
  exit 1
fi
demangle=cat
command -v c++filt >/dev/null && demangle=c++filt
awk '{ t += $1 } END { printf "instructions: %d\n", t }' "$dir/counts"
awk -v top="$top" 'NR == FNR { t += $1; next }
  FNR <= top { c = $1; $1 = ""; printf "%12d %5.1f%% %s\n", c, t ? 100 * c / t : 0, substr($0, 2) }' \
  "$dir/counts" "$dir/counts" | $demangle
