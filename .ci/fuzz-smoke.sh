#!/usr/bin/env bash
# A short fuzz run of each target in fuzz/ (the safetensors/JSON parsers; the model loader and
# forward pass, seeded with the parity fixtures' model files; the sequence fuzzer, random call
# sequences on the fixture models checked by its oracle), with AddressSanitizer, when a nightly
# toolchain is available. FUZZ_SECONDS (default 60) is the time per target.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup toolchain list | grep -q nightly &&
    ! rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
    echo "fuzz smoke: no nightly toolchain (offline?); skipped"
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
    if [ "$target" = model ]; then
        # Real model files (decoders, wrappers, cross-attention, f16/bf16) to mutate.
        find ../tests/fixtures -name '*.model.safetensors' -size -500k -exec cp {} "$work/" \;
        # and two of them with Q8_0 matrices, for the int8 paths.
        for f in cross_wrap wrap_tied; do
            (cd .. && cargo run --quiet --release --features cli -- quantize \
                "tests/fixtures/$f.model.safetensors" "$work/$f.q8.safetensors")
        done
    fi
    # The sequence target embeds its models (include_bytes!); its inputs are call sequences,
    # seeded from corpus/sequence: let them grow to 2 KiB (a couple of dozen calls).
    extra=()
    if [ "$target" = sequence ]; then
        extra=(-max_len=2048)
    fi
    cargo +nightly fuzz run "$target" -s address "$work" -- \
        -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=2048 ${extra[@]+"${extra[@]}"}
    rm -rf "$work"
done
echo "fuzz smoke: passed"
