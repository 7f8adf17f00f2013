#!/usr/bin/env bash
# The link-time proof that loading and decoding cannot panic (issue 28): builds
# firmware/src/no_panic.rs, the device path with a panic handler that calls a symbol defined
# nowhere, for thumbv7em-none-eabihf and riscv32imac-unknown-none-elf. It links only if no panic path survives optimisation in the
# parts it covers (PROVEN below; a part left out is an opaque value to the others). Fails unless
# every build links, and unless the negative check (a deliberate out-of-bounds index) fails to
# link naming the symbol. Then, for information, the panic call sites left in the parts not yet
# proven (M4F build), by function. Removes firmware/target/no-panic unless CI_KEEP_TARGETS=1.
set -euo pipefail
cd "$(dirname "$0")/../firmware"

# The parts of the device path proven panic-free (features no-panic-<part> of the firmware
# crate): `load` (Model::from_safetensors_in), `decode` (forward_last and step), `sample`
# (sampling::Sampler). The rest are reported below.
PROVEN=(load decode sample)
ALL=(load decode sample)
TARGETS=(thumbv7em-none-eabihf riscv32imac-unknown-none-elf)
SYM=picoformer_no_panic_proof_failed_a_panic_path_survived_optimisation

# Flags from .cargo/config.toml and build.rs alone, as firmware/run.sh builds.
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET CARGO_TARGET_DIR
TARGET_DIR=target/no-panic
for t in "${TARGETS[@]}"; do rustup target add "$t" >/dev/null 2>&1 || true; done
rustup component add llvm-tools >/dev/null 2>&1 || true
host=$(rustc -vV | sed -n 's/^host: //p')
OBJDUMP="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-objdump"

features() { local f="" p; for p in "$@"; do f="$f,no-panic-$p"; done; echo "${f#,}"; }
# build TARGET FEATURES [rustc args...]: the no-panic binary; its output in $LOG.
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
build() {
  local t=$1 f=$2
  shift 2
  cargo rustc --quiet --release --target "$t" --features "$f" --bin no-panic \
    --target-dir "$TARGET_DIR" -- "$@" >"$LOG" 2>&1
}

failed=0
for t in "${TARGETS[@]}"; do
  if build "$t" "$(features "${PROVEN[@]}")"; then
    echo "ok   $t: no panic path in: ${PROVEN[*]}"
  else
    echo "FAIL $t: a panic path survives in: ${PROVEN[*]}"
    grep -E 'error|undefined symbol|referenced by' "$LOG" | sed 's/^/    /' | head -20
    failed=1
  fi
  # Negative check: the same build with one reachable out-of-bounds index must not link.
  if build "$t" "$(features "${PROVEN[@]}"),no-panic-negative"; then
    echo "FAIL $t: negative check linked (the proof cannot fail)"
    failed=1
  elif grep -q "undefined symbol: $SYM" "$LOG"; then
    echo "ok   $t: negative check (a deliberate panic path) fails to link"
  else
    echo "FAIL $t: negative check failed for another reason:"
    sed 's/^/    /' "$LOG" | tail -20
    failed=1
  fi
done

# The parts not yet proven: every call to a panic routine left in the whole path (M4F), by the
# innermost source line it was inlined from. Information only.
if [ "${#PROVEN[@]}" -lt "${#ALL[@]}" ]; then
  t=${TARGETS[0]}
  if build "$t" "$(features "${ALL[@]}")" -C "link-arg=--defsym=$SYM=0"; then
    elf=$TARGET_DIR/$t/release/no-panic
    # address and enclosing function of every call to a panic routine (outside core's own)
    sites=$("$OBJDUMP" -d --no-show-raw-insn -C "$elf" | awk '
      /^[0-9a-f]+ <.*>:$/ { fn = substr($0, index($0, "<") + 1); sub(/>:$/, "", fn); next }
      /[ \t](bl|b\.w|jal|j|tail|call)[ \t]/ && /<(core::panicking::|core::slice::index::|core::option::unwrap_failed|core::result::unwrap_failed|core::slice::copy_from_slice_impl::|core::str::slice_error_fail)/ {
        if (fn !~ /^core::panicking|^core::slice::index::|fail/) { a = $1; sub(/:$/, "", a); print a "\t" fn }
      }')
    n=$(printf '%s\n' "$sites" | grep -c . || true)
    rest=$(for p in "${ALL[@]}"; do [[ " ${PROVEN[*]} " == *" $p "* ]] || printf '%s ' "$p"; done)
    echo "not yet proven (${rest% }): $n panic call sites in the whole path on $t, by function:"
    printf '%s\n' "$sites" | cut -f2 | sed 's/::h[0-9a-f]\{16\}$//; s/\$LT\$/</g; s/\$GT\$/>/g; s/\$u20\$/ /g; s/\$u7b\$/{/g; s/\$u7d\$/}/g; s/\$RF\$/\&/g; s/\$C\$/,/g; s/\.\./::/g; s/^_<//' | sort | uniq -c | sort -rn | sed 's/^/    /'
  else
    echo "(the whole path did not build for the report)"
    tail -5 "$LOG"
  fi
fi

[ "${CI_KEEP_TARGETS:-0}" = 1 ] || rm -rf "$TARGET_DIR"
echo "no-panic: $([ "$failed" = 0 ] && echo passed || echo FAILED)"
exit "$failed"
