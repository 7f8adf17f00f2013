#!/usr/bin/env bash
# WASM CI (issue 5): the JS/WASM package, the library's own test suite under WASI, and the browser
# demo in headless Chromium. Idempotent; installs what it needs; builds incrementally into
# wasm/target. Ends with `wasm: N passed, M failed` and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TERM_COLOR=never
start=$(date +%s)
passed=0
failed=0
log=$(mktemp -d)
step() { echo; echo "=== wasm: $* ($(($(date +%s) - start)) s)"; }
# Adds the "N passed; M failed" counts of cargo's test summaries in file $1; a non-zero exit status
# ($2) with no failure counted (WASI aborts a test binary at its first failure) counts as one.
count_cargo() {
    local p f
    p=$(grep -Eo '[0-9]+ passed' "$1" | awk '{s += $1} END {print s + 0}')
    f=$(grep -Eo '[0-9]+ failed' "$1" | awk '{s += $1} END {print s + 0}')
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    echo "  $p passed, $f failed"
}
# Adds the counts of a `node --test` run's TAP summary in file $1.
count_tap() {
    local p f
    p=$(awk '/^# pass / {print $3}' "$1"); f=$(awk '/^# fail / {print $3}' "$1")
    p=${p:-0}; f=${f:-1}
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    grep -E '^not ok|^# (pass|fail)' "$1" | sed 's/^/  /' || true
}
check() { # NAME then a command that must succeed: one passed or failed check
    local name=$1; shift
    if "$@" >"$log/check" 2>&1; then passed=$((passed + 1)); echo "  ok: $name"
    else failed=$((failed + 1)); echo "  FAILED: $name"; tail -20 "$log/check"; fi
}

step "toolchain and packages"
rustup target add wasm32-unknown-unknown wasm32-wasip1
if [ ! -x /usr/bin/chromium ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
(cd wasm && npm ci --no-audit --no-fund)

step "build: plain and simd128 .wasm, host-tokens, bench model"
wasm/build.sh

step "format, clippy and unit tests of the wasm crate"
(cd wasm && cargo fmt --check)
(cd wasm && cargo clippy --release --lib --target wasm32-unknown-unknown -- -D warnings)
(cd wasm && cargo clippy --release --all-targets -- -D warnings)
set +e
(cd wasm && cargo test --release --lib) >"$log/unit" 2>&1; count_cargo "$log/unit" $?

step "node tests (both builds: torch parity, host tokens, errors, options, generation, installed tarball)"
(cd wasm && node --test test/) >"$log/node" 2>&1; count_tap "$log/node" $?

step "TypeScript types (tsc --noEmit)"
check "js/picoformer.d.mts type-checks test/types-check.ts" \
    bash -c "cd wasm && node_modules/.bin/tsc --noEmit -p test/tsconfig.json"

step "browser demo in headless Chromium"
(cd wasm && node --test browser/) >"$log/browser" 2>&1; count_tap "$log/browser" $?

export CARGO_TARGET_WASM32_WASIP1_RUNNER="node $root/wasm/wasi-runner.mjs"
# Each build's kernel tests fail unless its own kernels ran (PICOFORMER_REQUIRE_ISA), and the
# build keeps overflow checks and debug assertions on (this is the kernels' only checked run on
# portable and simd128 wasm32).
for variant in plain simd128; do
    step "library test suite on wasm32-wasip1 ($variant): cargo test --target wasm32-wasip1"
    flags=""; isa=portable; [ $variant = simd128 ] && flags="-C target-feature=+simd128" isa=simd128
    CARGO_TARGET_DIR=wasm/target/wasip1-$variant CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="$flags" \
    CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
    PICOFORMER_REQUIRE_ISA=$isa \
        cargo test --release --target wasm32-wasip1 --features parallel >"$log/wasi-$variant" 2>&1
    count_cargo "$log/wasi-$variant" $?
done

step "negative checks (a broken harness must fail)"
fixtures_wasm=$(ls -t wasm/target/wasip1-plain/wasm32-wasip1/release/deps/fixtures-*.wasm | head -1)
empty=$(mktemp -d)
check "WASI fixtures test fails when the fixtures cannot be read" \
    bash -c "! PICOFORMER_WASI_ROOT=$empty node wasm/wasi-runner.mjs $fixtures_wasm"
check "WASI runner propagates a failing exit status" bash -c "! node wasm/wasi-runner.mjs $fixtures_wasm --bogus-flag"
check "node tests fail when a build disagrees with the host" bash -c "
    cd wasm && ! PICOFORMER_FORCE_MISMATCH=1 node --test --test-name-pattern='greedy tokens' test/"
set -e

step "sizes and speed"
# wasm/README.md's sizes table is these rows: checked (or rewritten with WASM_WRITE_SIZES=1).
group() { printf '%s' "$1" | rev | sed 's/[0-9]\{3\}/&,/g; s/,$//' | rev; }
rows=""
for build in plain simd128; do
    file=wasm/dist/picoformer.wasm
    [ "$build" = simd128 ] && file=wasm/dist/picoformer-simd128.wasm
    bytes=$(stat -c %s "$file")
    gz=$(gzip -9 -c "$file" | wc -c)
    echo "  $file: $bytes bytes, $gz gzipped"
    # gzip's size is printed, not checked: it varies with bytes that the path changes at equal
    # length (symbol hashes), while the module's size does not.
    rows="$rows| $build | $(group "$bytes") B |"$'\n'
done
rows=${rows%$'\n'}
shown=$(sed -n '/^<!-- sizes:begin/,/^<!-- sizes:end/p' wasm/README.md | grep -E '^\| (plain|simd128) ' || true)
if [ "${WASM_WRITE_SIZES:-0}" = 1 ]; then
    printf '%s\n' "$rows" >"$log/rows"
    awk -v rows="$log/rows" '
      /^<!-- sizes:end/ { while ((getline l < rows) > 0) print l; skip = 0 }
      skip && /^\| (plain|simd128) / { next }
      { print }
      /^<!-- sizes:begin/ { skip = 1 }' wasm/README.md >"$log/README" && cp "$log/README" wasm/README.md
    echo "  wasm/README.md: sizes table rewritten"
elif [ "$shown" = "$rows" ]; then
    passed=$((passed + 1)); echo "  ok: wasm/README.md sizes table matches this build"
else
    failed=$((failed + 1))
    echo "  FAILED: wasm/README.md sizes table differs from this build (WASM_WRITE_SIZES=1 .ci/wasm.sh rewrites it)"
    diff <(printf '%s\n' "$shown") <(printf '%s\n' "$rows") | sed 's/^/    /' || true
fi
(cd wasm && node bench.mjs) | sed 's/^/  /'

echo
echo "wasm: done in $(($(date +%s) - start)) s"
echo "wasm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
