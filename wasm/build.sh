#!/usr/bin/env bash
# Builds the two .wasm variants (plain and simd128, each in its own target dir, incrementally),
# the native host-tokens tool, the random byte-level bench model and a copy of models/demo.safetensors,
# into wasm/dist/.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p dist
# Built through a fixed path, with source paths remapped to fixed prefixes, so the module does not
# depend on where the repository or the cargo home is (wasm/README.md's sizes are compared byte
# for byte; .ci/fixed-checkout.sh says why).
# shellcheck source=../.ci/fixed-checkout.sh
. ../.ci/fixed-checkout.sh
remap=$REMAP
manifest=$FIXED/wasm/Cargo.toml
CARGO_ENCODED_RUSTFLAGS="$remap" cargo build --manifest-path "$manifest" --release --lib --target wasm32-unknown-unknown
cp target/wasm32-unknown-unknown/release/picoformer_wasm.wasm dist/picoformer.wasm
CARGO_TARGET_DIR=target/simd128 CARGO_ENCODED_RUSTFLAGS="$remap"$'\x1f'"-Ctarget-feature=+simd128" \
    cargo build --manifest-path "$manifest" --release --lib --target wasm32-unknown-unknown
cp target/simd128/wasm32-unknown-unknown/release/picoformer_wasm.wasm dist/picoformer-simd128.wasm
cargo build --release --bin host-tokens
[ -f dist/bench.model.safetensors ] || node tools/make-model.mjs dist/bench.model.safetensors 256 4
# The bundled demo model (byte level, trained on Jane Austen), served with the web demo.
cp ../models/demo.safetensors dist/demo.safetensors
