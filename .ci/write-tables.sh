#!/usr/bin/env bash
# Rewrites every size table a document shows from a fresh build (CI checks them and fails when
# one disagrees with its run): firmware/README.md, firmware/template/README.md, wasm/README.md.
# Run after a change that moves code size or stack, then commit the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
FIRMWARE_WRITE_SIZES=1 bash firmware/run.sh
TEMPLATE_WRITE_SIZES=1 bash .ci/template.sh
WASM_WRITE_SIZES=1 bash .ci/wasm.sh
