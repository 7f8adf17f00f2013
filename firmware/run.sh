#!/usr/bin/env bash
# Builds the firmware programs for every board and runs them under QEMU; the exit status of
# each run is its verdict. The programs: `firmware` (src/main.rs, a decoder) on every board
# (and once more per weight type, PICOFORMER_FW_WEIGHTS, for the table by weight type),
# `decode-only` (src/decode_only.rs, the decoder without a model-file parser) on the Cortex-M4F,
# `kws` (src/kws.rs, the keyword spotter, an Encoder classifier) on the boards that have its
# model. Then the negative checks: the same ELF must fail with the right status when told to
# (semihosting argument) corrupt an expected value (1), panic (101) or fault (3). Fails if a
# stack peak exceeds 8 KiB (STACK_LIMIT). Prints llvm-size of each ELF and ends with
# `firmware: N passed, M failed`.
#
# Idempotent; installs what it needs (Rust targets, llvm-tools, QEMU from Debian if missing).
# Usage: firmware/run.sh [triple...]   (default: all five boards)
set -uo pipefail
cd "$(dirname "$0")"

# Cross builds take their flags from .cargo/config.toml and build.rs alone: a RUSTFLAGS meant
# for the host (e.g. -C target-cpu=native) must not reach them.
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_TARGET CARGO_TARGET_DIR
# Built through a fixed path, with source paths remapped to fixed prefixes: the image, its size
# and its instruction counts do not depend on where the repository or the cargo home is (the
# README's tables are compared with the build; .ci/fixed-checkout.sh says why).
# shellcheck source=../.ci/fixed-checkout.sh
. ../.ci/fixed-checkout.sh
export CARGO_ENCODED_RUSTFLAGS="$REMAP"

# triple | QEMU command (without the common options) | the board's name in README.md's tables |
# the programs run on it (the keyword spotter where build/boards.rs gives it room: `kws: true`)
BOARDS=(
  "thumbv7em-none-eabihf|qemu-system-arm -machine mps2-an386 -cpu cortex-m4|Cortex-M4F \`mps2-an386\`|firmware decode-only kws"
  "thumbv8m.main-none-eabihf|qemu-system-arm -machine mps3-an547 -cpu cortex-m55|Cortex-M55 \`mps3-an547\`|firmware kws"
  "thumbv7m-none-eabi|qemu-system-arm -machine lm3s6965evb -cpu cortex-m3|Cortex-M3 \`lm3s6965evb\`|firmware"
  "thumbv6m-none-eabi|qemu-system-arm -machine microbit -cpu cortex-m0|Cortex-M0 \`microbit\`|firmware"
  "riscv32imac-unknown-none-elf|qemu-system-riscv32 -machine virt -bios none -m 64M|riscv32imac \`virt\`|firmware"
)
# Every (board, program) run: the README's tables are checked only after all of them.
ALL_RUNS=0
for b in "${BOARDS[@]}"; do for _ in ${b##*|}; do ALL_RUNS=$((ALL_RUNS + 1)); done; done
if [ $# -gt 0 ]; then
  selected=()
  for b in "${BOARDS[@]}"; do
    for t in "$@"; do [ "${b%%|*}" = "$t" ] && selected+=("$b"); done
  done
  BOARDS=("${selected[@]}")
fi

# Stack budget of every board (issue 26): prefill and step must fit in 8 KiB.
STACK_LIMIT=8192

# Virtual time = instructions executed (1 ns each), without waiting for the host's clock: the
# board timer the firmware reads then counts instructions exactly (src/clock.rs, count.sh).
ICOUNT="-icount shift=0,sleep=off"

LOGS=target/qemu-logs
mkdir -p "$LOGS"
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

# ---- tools
for b in "${BOARDS[@]}"; do rustup target add "${b%%|*}" >/dev/null 2>&1 || true; done
rustup component add llvm-tools >/dev/null 2>&1 || true
if ! command -v qemu-system-arm >/dev/null || ! command -v qemu-system-riscv32 >/dev/null; then
  echo "installing QEMU (qemu-system-arm, qemu-system-misc)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    qemu-system-arm qemu-system-misc >/dev/null
fi
host=$(rustc -vV | sed -n 's/^host: //p')
LLVM_SIZE="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-size"

# run TRIPLE QEMU-CMD PROGRAM NAME EXPECTED-STATUS [semihosting args...]
run() {
  local triple=$1 qemu=$2 prog=$3 name=$4 want=$5
  shift 5
  local semi="enable=on,target=native"
  for a in "$@"; do semi="$semi,arg=$a"; done
  local log="$LOGS/$triple-$prog-$name.log"
  # shellcheck disable=SC2086 # $qemu is a command line
  timeout 300 $qemu -display none $ICOUNT -semihosting-config "$semi" \
    -kernel "target/$triple/release/$prog" </dev/null >"$log" 2>&1
  local got=$?
  if [ "$got" = "$want" ]; then
    pass "$triple $prog $name (exit $got)"
  else
    fail "$triple $prog $name: exit $got, expected $want"
    sed 's/^/    /' "$log"
  fi
}

# The decoder programs' instructions per prompt token and per decoded token (src/timed.rs's
# report line) from LOG into $prefill and $decode.
read_timing() {
  prefill=$(sed -n 's/^instructions: prefill \([0-9]*\) per token.*/\1/p' "$1")
  decode=$(sed -n 's/^instructions: .*, decode \([0-9]*\) per token.*/\1/p' "$1")
}

SIZES=()
ROWS=()  # sizes table: the decoder firmware's rows, then the keyword spotter's (KROWS)
KROWS=()
DROWS=()  # the decode-only program's rows (after the decoder firmware's)
DIROWS=()
IROWS=() # instructions per token (firmware)
WROWS=() # instructions per window (kws)
WTROWS=() # instructions per token by weight type (firmware rebuilt with PICOFORMER_FW_WEIGHTS)
runs=0
# 1234567 -> "1 234 567", as the README's table groups digits.
group() { printf '%s' "$1" | rev | sed 's/[0-9]\{3\}/& /g; s/ $//' | rev; }
for b in "${BOARDS[@]}"; do
  IFS='|' read -r triple qemu label programs <<<"$b"
  # The Cortex-M3 and M0 parts have 256 KiB of flash: picoformer at opt-level "z" on the M3
  # and "s" on the M0 (smaller than "z" there, and faster; README.md, "Optimisation level");
  # at 3 on the others.
  opt=3
  case $triple in
    thumbv7m-none-eabi) opt='"z"' ;;
    thumbv6m-none-eabi) opt='"s"' ;;
  esac
  for prog in $programs; do
    features=()
    [ "$prog" = kws ] && features=(--features kws)
    # The decode-only model is f16: its build leaves picoformer's Q8_0 code out.
    [ "$prog" = decode-only ] && features=(--no-default-features)
    echo "== $triple $prog: build"
    if ! cargo build --manifest-path "$FIXED/firmware/Cargo.toml" --release --quiet --target "$triple" \
        --config "profile.release.package.picoformer.opt-level=$opt" --bin "$prog" "${features[@]}"; then
      fail "$triple $prog build"
      continue
    fi
    echo "== $triple $prog: run ($qemu)"
    log="$LOGS/$triple-$prog-check.log"
    run "$triple" "$qemu" "$prog" check 0
    sed 's/^/    /' "$log"
    run "$triple" "$qemu" "$prog" negative-mismatch 1 "$prog" mismatch
    run "$triple" "$qemu" "$prog" negative-panic 101 "$prog" panic
    run "$triple" "$qemu" "$prog" negative-fault 3 "$prog" fault
    sizes=$("$LLVM_SIZE" "target/$triple/release/$prog" | awk 'NR == 2 { print $1, $2, $3 }')
    stack=$(sed -n 's/^stack: peak \([0-9]*\) B.*/\1/p' "$log")
    if [ -z "$stack" ]; then
      fail "$triple $prog stack peak: not in the report"
    elif [ "$stack" -gt "$STACK_LIMIT" ]; then
      fail "$triple $prog stack peak $stack B exceeds the budget of $STACK_LIMIT B"
    else
      pass "$triple $prog stack peak $stack B within $STACK_LIMIT B"
    fi
    model=$(sed -n 's/.*model file \([0-9]*\) B.*/\1/p' "$log")
    # "host reference logits N B" (firmware), "host reference windows and scores N B" (kws)
    reference=$(sed -n 's/.*host reference[a-z ]* \([0-9]*\) B.*/\1/p' "$log")
    dtype=$(sed -n 's/^picoformer [a-z-]*: .*(\([a-z0-9]*\), [0-9]* bytes at .*/\1/p' "$log")
    read -r text data bss <<<"$sizes"
    row="$(group $((text + data - ${model:-0} - ${reference:-0}))) | $(group "${model:-0}") (${dtype:-?}) | $(group "${reference:-0}") | $(group $((text + data))) | $(group $((data + bss))) | $(group "${stack:-0}") | $(group $((data + bss + ${stack:-0}))) |"
    SIZES+=("$triple $prog $sizes ${model:-0} ${reference:-0} ${stack:-0}")
    # Where the decoder firmware's and the decode-only program's code goes on the Cortex-M4F
    # (README.md, "Where the code goes").
    if [ "$triple" = thumbv7em-none-eabihf ] && [ "$prog" != kws ]; then
      if ! bash breakdown.sh "target/$triple/release/$prog" \
          "$((text + data - ${model:-0} - ${reference:-0}))" >"$LOGS/breakdown-$prog.md"; then
        fail "$triple $prog code breakdown"
      fi
    fi
    # Issue 26's budget: picoformer's code in a decode-only image at most 64 KiB on thumbv7em.
    if [ "$triple" = thumbv7em-none-eabihf ] && [ "$prog" = decode-only ]; then
      pico=$(sed -n 's/^| picoformer, all its modules | \([0-9 ]*\) |.*/\1/p' "$LOGS/breakdown-$prog.md" | tr -d ' ')
      if [ -n "$pico" ] && [ "$pico" -le $((64 * 1024)) ]; then
        pass "$triple $prog picoformer code $pico B within 65536 B"
      else
        fail "$triple $prog picoformer code ${pico:-?} B over 65536 B"
      fi
    fi
    case $prog in
      firmware | decode-only)
        # Both decoder programs print the same timing lines (src/timed.rs).
        read_timing "$log"
        if [ -z "$prefill" ] || [ -z "$decode" ]; then
          fail "$triple $prog instructions per token: not in the report"
        fi
        irow="| $label | ${dtype:-?} | $(group "${prefill:-0}") | $(group "${decode:-0}") |"
        if [ "$prog" = firmware ]; then
          IROWS+=("$irow")
          ROWS+=("| $label | $row")
        else
          DIROWS+=("${irow/"| $label |"/"| $label, decode only |"}")
          DROWS+=("| $label, decode only | $row")
        fi
        ;;
      kws)
        window=$(sed -n 's/^instructions: per window \([0-9]*\) .*/\1/p' "$log")
        frame=$(sed -n 's/^instructions: per window .*; \([0-9]*\) per frame.*/\1/p' "$log")
        if [ -z "$window" ] || [ -z "$frame" ]; then
          fail "$triple $prog instructions per window: not in the report"
        fi
        WROWS+=("| $label | ${dtype:-?} | $(group "${window:-0}") | $(group "${frame:-0}") |")
        KROWS+=("| $label, keyword spotter | $row")
        ;;
    esac
    runs=$((runs + 1))
  done
  # The same model with other weights (PICOFORMER_FW_WEIGHTS, build/boards.rs): the decoder
  # firmware rebuilt and run once per type, its instructions per token into the table by weight
  # type. f32 overflows the 256 KiB of flash of the M3 and the M0.
  case $triple in
    thumbv7m-none-eabi | thumbv6m-none-eabi) variants="f16 q8_0 int8" ;;
    riscv32imac-unknown-none-elf) variants="f32 f16 bf16 q8_0 int8" ;;
    *) variants="f32 f16 q8_0 int8" ;;
  esac
  for w in $variants; do
    log="$LOGS/$triple-weights-$w.log"
    if ! PICOFORMER_FW_WEIGHTS=$w cargo build --manifest-path "$FIXED/firmware/Cargo.toml" --release --quiet \
        --target "$triple" --config "profile.release.package.picoformer.opt-level=$opt" --bin firmware; then
      fail "$triple firmware ($w weights) build"
      continue
    fi
    # shellcheck disable=SC2086 # $qemu is a command line
    timeout 300 $qemu -display none $ICOUNT -semihosting-config enable=on,target=native \
      -kernel "target/$triple/release/firmware" </dev/null >"$log" 2>&1
    got=$?
    read_timing "$log"
    macs=$(sed -n 's/^weights: \([0-9]*\) multiply-adds.*/\1/p' "$log")
    if [ "$got" != 0 ] || [ -z "$prefill" ] || [ -z "$decode" ] || [ -z "$macs" ]; then
      fail "$triple firmware ($w weights): exit $got"
      sed 's/^/    /' "$log"
      continue
    fi
    stack=$(sed -n 's/^stack: peak \([0-9]*\) B.*/\1/p' "$log")
    if [ "${stack:-99999}" -gt "$STACK_LIMIT" ]; then
      fail "$triple firmware ($w weights) stack peak ${stack:-?} B over $STACK_LIMIT B"
      continue
    fi
    pass "$triple firmware ($w weights): decode $decode instructions per token, stack peak $stack B"
    # Which kernels the products ran on (src/kernels/mod.rs's dispatch on these targets).
    case "$triple/$w" in
      thumbv7em*/f32 | thumbv7em*/f16) kernels="FPU (\`cortexm.rs\`)" ;;
      thumbv7em*/int8) kernels="DSP \`SMLAD\` (\`cortexm.rs\`)" ;;
      thumbv8m*/*) kernels="Helium (\`helium.rs\`)" ;;
      *) kernels=portable ;;
    esac
    name=$w
    [ "$w" = int8 ] && name="Q8_0, int8 path"
    [ "$w" = q8_0 ] && name="Q8_0"
    per=$(awk -v d="$decode" -v m="$macs" 'BEGIN { printf "%.2f", d / m }')
    WTROWS+=("| $label | $name | $kernels | $(group "$prefill") | $(group "$decode") | $per |")
  done
done

echo
echo "== sizes in bytes (llvm-size: flash = text + data = code + model file + the host's reference;"
echo "   RAM = data + bss (KV cache, scratch, outputs) + the measured stack peak)"
printf '%-30s %-9s %10s %6s %8s %8s %9s %9s %7s %8s\n' target program text data bss code model reference stack RAM
for s in "${SIZES[@]}"; do
  read -r t prog text data bss model reference stack <<<"$s"
  printf '%-30s %-9s %10s %6s %8s %8s %9s %9s %7s %8s\n' "$t" "$prog" "$text" "$data" "$bss" \
    "$((text + data - model - reference))" "$model" "$reference" "$stack" "$((data + bss + stack))"
done

# shellcheck source=../.ci/same-within.sh
. ../.ci/same-within.sh

# README.md's tables are these rows: checked here (or rewritten with FIRMWARE_WRITE_SIZES=1),
# so the figures it shows are always the current build's: the sizes within SIZE_TOLERANCE bytes
# (they move with the checkout's path, .ci/same-within.sh), the instruction counts exactly. check_table NAME ROWS-FILE TOLERANCE
SIZE_TOLERANCE=32
check_table() {
  local name=$1 rows=$2 tol=$3 shown
  shown=$(sed -n "/^<!-- $name:begin/,/^<!-- $name:end/p" README.md | grep '^| [^-t]' | grep -v '^| target')
  if [ "${FIRMWARE_WRITE_SIZES:-0}" = 1 ]; then
    awk -v rows="$rows" -v name="$name" '
      $0 ~ "^<!-- " name ":end" { while ((getline l < rows) > 0) print l; skip = 0 }
      skip && /^\| / && !/^\| target/ && !/^\|---/ { next }
      { print }
      $0 ~ "^<!-- " name ":begin" { skip = 1 }' README.md >"$LOGS/README.new" && mv "$LOGS/README.new" README.md
    echo "README.md: $name table rewritten"
  elif same_within "$tol" "$shown" "$(cat "$rows")"; then
    pass "README.md $name table matches this build (within $tol)"
  else
    fail "README.md $name table differs from this build (FIRMWARE_WRITE_SIZES=1 firmware/run.sh rewrites it):"
    diff <(printf '%s\n' "$shown") "$rows" | sed 's/^/    /'
  fi
}
if [ "$runs" -eq "$ALL_RUNS" ]; then
  printf '%s\n' "${ROWS[@]}" "${DROWS[@]}" "${KROWS[@]}" >"$LOGS/sizes.md"
  check_table sizes "$LOGS/sizes.md" "$SIZE_TOLERANCE"
  printf '%s\n' "${IROWS[@]}" "${DIROWS[@]}" >"$LOGS/icount.md"
  check_table icount "$LOGS/icount.md" 0
  printf '%s\n' "${WROWS[@]}" >"$LOGS/icount-kws.md"
  check_table icount-kws "$LOGS/icount-kws.md" 0
  printf '%s\n' "${WTROWS[@]}" >"$LOGS/icount-weights.md"
  check_table icount-weights "$LOGS/icount-weights.md" 0
  check_table breakdown "$LOGS/breakdown-firmware.md" "$SIZE_TOLERANCE"
  check_table breakdown-decode-only "$LOGS/breakdown-decode-only.md" "$SIZE_TOLERANCE"
fi

echo
echo "firmware: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
