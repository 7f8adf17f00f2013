# Sourced by firmware/run.sh, .ci/template.sh and wasm/build.sh before they build an image whose
# size or instruction count a document shows.
#
# cargo names a path dependency outside the workspace (picoformer, seen from firmware/,
# firmware/template/ and wasm/) by a hash of its absolute path. The symbols named by that hash
# are what LTO and the linker order by, so a checkout at another path builds a slightly
# different image: a few bytes of padding, and on the Cortex-M3 (opt-level "z") a few hundred
# instructions more or less per token. Built through one fixed path, a symlink to this
# checkout, every checkout builds the same image. A lock serialises builds of different
# checkouts on one machine (each takes the symlink while it builds).
#
# Defines FIXED (build with `cargo build --manifest-path "$FIXED/<dir>/Cargo.toml"`) and REMAP
# (rustflags, 0x1f-separated, that map source paths to fixed prefixes in panic locations).
FIXED=/tmp/picoformer-checkout
fixed_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
exec 9>"$FIXED.lock"
flock 9
ln -sfn "$fixed_root" "$FIXED"
REMAP="--remap-path-prefix=$FIXED=/picoformer"$'\x1f'"--remap-path-prefix=$fixed_root=/picoformer"$'\x1f'"--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
