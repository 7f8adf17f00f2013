#!/usr/bin/env bash
# Bare metal under QEMU (issue 5): firmware/run.sh builds the firmware for four boards, runs
# each, runs the negative checks and prints `firmware: N passed, M failed`; non-zero on failure.
set -euo pipefail
exec bash "$(dirname "$0")/../firmware/run.sh"
