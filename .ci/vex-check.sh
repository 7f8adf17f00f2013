#!/usr/bin/env bash
# Fails if an x86-64 SIMD kernel executes a legacy (non-VEX) SSE instruction. Inside AVX code
# whose upper register halves are in use, one such instruction (libm's inline-assembly `sqrtss`
# is one) costs a state transition per call, more than a whole RMSNorm. Checks the CLI and the kernel tests' binary (whose dev-dependencies switch on libm's
# assembly paths): every instruction on an xmm register inside picoformer's AVX2/AVX-512/AVX-VNNI
# target-feature functions must be VEX/EVEX-encoded (mnemonic starting with `v`; mask-register
# `k` instructions aside).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(uname -m)" = x86_64 ] || { echo "vex-check: not an x86-64 host; skipped"; exit 0; }
command -v objdump >/dev/null || { echo "vex-check: objdump (binutils) is required" >&2; exit 1; }

cargo build --quiet --release --features cli
tests=$(cargo test --quiet --release --no-run --test kernels --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)
status=0
for bin in "${CARGO_TARGET_DIR:-target}/release/picoformer" "$tests"; do
    # The target-feature functions (`*_target`) of the x86 kernel files avx2, avx512, avx_vnni
    # (mangled: ...7kernels3x864avx2..., 6avx512, 8avx_vnni).
    bad=$(objdump -d --no-show-raw-insn "$bin" | awk '
        /^[0-9a-f]+ <.*>:$/ { f = ($2 ~ /10picoformer7kernels3x86[0-9]+avx.*_target/) ? $2 : ""; next }
        f != "" && /%xmm/ {
            split($0, a, "\t"); ins = a[2]
            if (ins !~ /^(v|k)/) print f ": " ins
        }')
    n=$(grep -c . <<<"$bad" || true)
    if [ "$n" -gt 0 ]; then
        echo "vex-check: $bin: $n legacy SSE instruction(s) in the AVX kernels:" >&2
        head -20 <<<"$bad" >&2
        status=1
    else
        echo "vex-check: $bin: every xmm instruction of the x86 kernels is VEX/EVEX"
    fi
done
exit $status
