#!/usr/bin/env bash
# The minimum supported Rust version (Cargo.toml's rust-version): the library, with and without
# its features, checked with that toolchain. It needs the toolchain from rustup's servers; where
# they cannot be reached (this development machine reaches only package registries) the step
# says so and is skipped, so a CI machine with the network checks it and this one does not.
set -uo pipefail
cd "$(dirname "$0")/.."
msrv=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
if ! timeout 180 rustup toolchain install "$msrv" --profile minimal >/dev/null 2>&1; then
    echo "msrv: SKIPPED: rustup cannot install Rust $msrv here (no access to its servers)"
    exit 0
fi
set -e
echo "msrv: Rust $msrv"
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --lib
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --lib --features rayon
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --features cli --bin picoformer
echo "msrv: the library and the CLI build with Rust $msrv"
