#!/usr/bin/env bash
# The real-board firmware template (issue 27, firmware/template): it cannot run here (no board),
# so CI checks that it builds for its target, is formatted and clippy-clean, and prints its sizes.
# Non-zero on any failure. Removes firmware/template/target afterwards unless CI_KEEP_TARGETS=1.
set -euo pipefail
cd "$(dirname "$0")/../firmware/template"

# Its flags come from its own .cargo/config.toml and build.rs: host flags must not reach it.
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET CARGO_TARGET_DIR

rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
rustup component add llvm-tools rustfmt clippy >/dev/null 2>&1 || true
host=$(rustc -vV | sed -n 's/^host: //p')
LLVM_SIZE="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-size"

cargo fmt --check
# Not --locked: picoformer itself is a path dependency, and a dependency added to it (another
# branch) must not fail this build; the committed Cargo.lock pins everything else.
cargo build --release
cargo clippy --release -- -D warnings

elf=target/thumbv7em-none-eabihf/release/template
"$LLVM_SIZE" "$elf"
"$LLVM_SIZE" -A "$elf" | grep -E '^(\.vector_table|\.text|\.rodata|\.data|\.bss|\.uninit|\.axisram) '
# flash = text + data (code, the Q8_0 model, .data's initial values); DTCM = data + bss + .uninit
# (the RTT buffer), the stack gets the rest of DTCM's 128 KiB; AXI SRAM = .axisram (the KV cache).
read -r text data bss _ <<<"$("$LLVM_SIZE" "$elf" | awk 'NR == 2 { print $1, $2, $3 }')"
axi=$("$LLVM_SIZE" -A "$elf" | awk '$1 == ".axisram" { print $2 }')
# The file build.rs embedded (the newest, should an old build directory be kept).
# shellcheck disable=SC2012
model=$(stat -c %s "$(ls -t target/thumbv7em-none-eabihf/release/build/picoformer-template-*/out/model.safetensors | head -1)")
echo "template (STM32H743): flash $((text + data)) of 2097152 B (model file $model B, code and the rest $((text + data - model)) B);" \
    "DTCM static $((data + bss - ${axi:-0})) of 131072 B (the stack gets the rest); AXI SRAM $axi of 524288 B (KV cache)"

[ "${CI_KEEP_TARGETS:-0}" = 1 ] || rm -rf target
echo "template: builds (release, thumbv7em-none-eabihf), formatted, clippy-clean"
