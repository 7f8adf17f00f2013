#!/usr/bin/env bash
# The test suite with overflow checks and debug assertions on, optimised (a debug build would
# take the f64 reference and the property tests too long): an arithmetic overflow or a broken
# internal invariant that release builds wrap or skip fails here (issue 28: the fuzzers found one
# such underflow that the release tests could not see).
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
CARGO_TARGET_DIR=target/checked cargo test --release --all-features --tests >target/checked.log 2>&1
rc=$?
grep -E "^test result|FAILED|panicked" target/checked.log
passed=$(grep -E '^test result' target/checked.log | awk '{p += $4} END {print p + 0}')
echo "checked tests: $passed passed, exit status $rc"
exit $rc
