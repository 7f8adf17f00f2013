#!/usr/bin/env bash
# Bare metal under QEMU (issues 5, 26): firmware/run.sh builds the firmware for five boards, runs
# each under QEMU's exact instruction count, runs the negative checks, fails a stack peak above
# 8 KiB, checks firmware/README.md's sizes and instructions-per-token tables against the run and
# prints `firmware: N passed, M failed`; non-zero on failure.
set -euo pipefail
exec bash "$(dirname "$0")/../firmware/run.sh"
