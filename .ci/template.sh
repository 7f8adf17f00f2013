#!/usr/bin/env bash
# The real-board firmware template (issue 27, firmware/template): it cannot run here (no board),
# so CI checks that it builds for its target, is formatted and clippy-clean, and prints its sizes.
# Non-zero on any failure. Removes firmware/template/target afterwards unless CI_KEEP_TARGETS=1.
set -euo pipefail
cd "$(dirname "$0")/../firmware/template"

# Its flags come from its own .cargo/config.toml and build.rs: host flags must not reach it.
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET CARGO_TARGET_DIR
# Built through a fixed path, with source paths remapped to fixed prefixes, so its size does not
# depend on where the repository or the cargo home is (.ci/fixed-checkout.sh). These flags
# replace .cargo/config.toml's, so its target-cpu is repeated here.
# shellcheck source=fixed-checkout.sh
. ../../.ci/fixed-checkout.sh
export CARGO_ENCODED_RUSTFLAGS="-Ctarget-cpu=cortex-m7"$'\x1f'"$REMAP"

rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
rustup component add llvm-tools rustfmt clippy >/dev/null 2>&1 || true
host=$(rustc -vV | sed -n 's/^host: //p')
LLVM_SIZE="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-size"

cargo fmt --check
# Not --locked: picoformer itself is a path dependency, and a dependency added to it (another
# branch) must not fail this build; the committed Cargo.lock pins everything else.
cargo build --manifest-path "$FIXED/firmware/template/Cargo.toml" --release
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
out=$(ls -t target/thumbv7em-none-eabihf/release/build/picoformer-template-*/out/model.safetensors | head -1)
model=$(stat -c %s "$out")
dtype=$(sed -n 's/^pub const DTYPE: &str = "\(.*\)";$/\1/p' "$(dirname "$out")/model.rs")
dtcm=$((data + bss - ${axi:-0}))
# 1234567 -> "1 234 567", as the README's table groups digits.
group() { printf '%s' "$1" | rev | sed 's/[0-9]\{3\}/& /g; s/ $//' | rev; }
rows="| flash | $(group $((text + data))) | 2 097 152 | model file $(group "$model") ($dtype), code and constants $(group $((text + data - model))) |
| DTCM | $(group "$dtcm") | 131 072 | statics: scratch, logits, sampler, history, RTT buffer; the stack gets the other $(group $((131072 - dtcm))) |
| AXI SRAM | $(group "$axi") | 524 288 | KV cache (f16) |"
echo "$rows"

# README.md's sizes table is these rows: checked within 32 bytes (they move with the checkout's
# path, .ci/same-within.sh), or rewritten with TEMPLATE_WRITE_SIZES=1.
# shellcheck source=same-within.sh
. ../../.ci/same-within.sh
shown=$(sed -n '/^<!-- sizes:begin/,/^<!-- sizes:end/p' README.md | grep -E '^\| (flash|DTCM|AXI SRAM) ')
if [ "${TEMPLATE_WRITE_SIZES:-0}" = 1 ]; then
    printf '%s\n' "$rows" >target/sizes.md
    awk -v rows=target/sizes.md '
        /^<!-- sizes:end/ { while ((getline l < rows) > 0) print l; skip = 0 }
        skip && /^\| (flash|DTCM|AXI SRAM) / { next }
        { print }
        /^<!-- sizes:begin/ { skip = 1 }' README.md >README.md.new && mv README.md.new README.md
    echo "firmware/template/README.md: sizes rewritten"
elif ! same_within 32 "$shown" "$rows"; then
    echo "firmware/template/README.md: the sizes table differs from this build" \
        "(TEMPLATE_WRITE_SIZES=1 .ci/template.sh rewrites it):"
    diff <(printf '%s\n' "$shown") <(printf '%s\n' "$rows") || true
    exit 1
fi

[ "${CI_KEEP_TARGETS:-0}" = 1 ] || rm -rf target
echo "template: builds (release, thumbv7em-none-eabihf), formatted, clippy-clean"
