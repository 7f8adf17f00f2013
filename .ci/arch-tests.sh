#!/usr/bin/env bash
# Kernel tests on every instruction-set path, each run failing unless that path really ran
# (PICOFORMER_REQUIRE_ISA):
#   x86-64 host        AVX2+FMA+F16C, AVX-VNNI and AVX-512F if the CPU has them, and portable (each forced in
#                      turn, with the decoder properties and fixtures; a set the CPU lacks is
#                      skipped: QEMU cannot run AVX-512)
#   aarch64            NEON, and NEON with sdot (FEAT_DotProd), under qemu-aarch64 (user mode)
#   wasm32-wasip1      +simd128,+relaxed-simd under Node (tools/wasi-runner.mjs); the portable and
#                      +simd128 builds run the whole suite, each failing unless its path ran, in
#                      .ci/wasm.sh
# The emulated runs are optimised builds with overflow checks and debug assertions on: a debug
# build took 6 to 7 minutes per kernel run under QEMU, an optimised one half a minute.
# Installs what it needs on first use (Debian packages, rustup targets); idempotent. Each build
# has its own target dir under target/, so reruns are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> %s\n' "$*"; }

if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null \
    || [ ! -e /usr/aarch64-linux-gnu/lib/libc.so.6 ]; then
    step "installing qemu-user and the aarch64 cross linker"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
fi
installed=$(rustup target list --installed)
for t in aarch64-unknown-linux-gnu wasm32-wasip1; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
command -v node >/dev/null || { echo "node is required for the wasm32 runs" >&2; exit 1; }

# On the host, the decoder's properties, the x-transformers fixtures and the split decode step
# (bit for bit one thread's numbers) run on each kernel set too (the seed property must hold on
# every one).
host() { # isa
    PICOFORMER_REQUIRE_ISA="$1" cargo test --quiet --release --features parallel --test kernels --test decoder --test fixtures \
        --test parallel
}
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
    step "x86-64 host: AVX2"
    host avx2
fi
if grep -qw avx_vnni /proc/cpuinfo; then
    step "x86-64 host: AVX2 with AVX-VNNI (int8 products)"
    host avxvnni
else
    echo "x86-64 host: no AVX-VNNI on this CPU; its int8 kernels were not run here"
fi
if grep -qw avx512f /proc/cpuinfo; then
    step "x86-64 host: AVX-512"
    host avx512
else
    echo "x86-64 host: no AVX-512F on this CPU; its kernels were not run here"
fi
step "x86-64 host: portable"
host portable

# Base NEON on a Cortex-A53 (no FEAT_DotProd: any sdot would be an illegal instruction there),
# then NEON with sdot's int8 products on QEMU's default CPU (`max`, which has it).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
aarch64() { # qemu cpu, isa, test arguments...
    local cpu=$1 isa=$2; shift 2
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $cpu -L /usr/aarch64-linux-gnu" \
    PICOFORMER_REQUIRE_ISA="$isa" cargo test --quiet --release --target aarch64-unknown-linux-gnu \
        --features parallel "$@"
}
step "aarch64: neon under qemu-aarch64 -cpu cortex-a53"
aarch64 cortex-a53 neon --test kernels
step "aarch64: neondot under qemu-aarch64 -cpu max"
aarch64 max neondot --test kernels
# The split decoder (a prompt's chunks by positions, a step by rows) against one thread, bit for
# bit, on NEON's kernels (4 lanes: other tile and broadcast thresholds than x86's). Only the
# wrapper's test: the one over a 600-row cache takes two minutes under QEMU and tests nothing
# NEON-specific beyond it.
step "aarch64: the split decoder under qemu-aarch64 -cpu max"
aarch64 max neondot --test parallel -- split_steps_equal_one_thread_bit_for_bit

step "wasm32-wasip1 (+simd128,+relaxed-simd) under Node"
CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings --experimental-wasm-relaxed-simd $root/tools/wasi-runner.mjs" \
CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" \
PICOFORMER_REQUIRE_ISA=simd128 \
    cargo test --quiet --release --target wasm32-wasip1 --target-dir target/wasi-relaxed --test kernels

if [ "${ARCH_TESTS_SPEED:-0}" = 1 ]; then
    unset CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS
    # GEMV speed of scalar wasm vs simd128 under Node (the issue's >= 3x goal), GFLOP/s.
    for b in plain:"" simd:"-C target-feature=+simd128"; do
        step "wasm32 GEMV speed (${b%%:*})"
        CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $root/tools/wasi-runner.mjs" \
        CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="${b#*:}" \
            cargo run --quiet --release --example gemv_speed --target wasm32-wasip1 --target-dir "target/wasi-${b%%:*}"
    done
fi
step "arch tests passed"
