#!/usr/bin/env bash
# A short fuzz run of the model loader (fuzz/), when a nightly toolchain is available.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup toolchain list | grep -q nightly; then
    echo "fuzz smoke: no nightly toolchain; skipped"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cd fuzz
for target in $(cargo +nightly fuzz list); do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    # Work on a copy so the committed corpus stays as it is.
    work=$(mktemp -d)
    cp -r "$corpus/." "$work/" 2>/dev/null || true
    cargo +nightly fuzz run "$target" "$work" -- -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=2048
    rm -rf "$work"
done
echo "fuzz smoke: passed"
