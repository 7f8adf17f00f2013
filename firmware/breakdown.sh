#!/usr/bin/env bash
# Where a firmware image's code goes: the flash bytes of its symbols (functions, constants and
# initialised data, from `llvm-nm --size-sort`), grouped by crate and, for picoformer, by module,
# largest first. The embedded model file and the host's reference values (`<program>::expected`)
# are not code and are left out; what no symbol covers (merged string literals, padding) is
# a row of its own, so the rows add up to CODE.
#
# Usage: firmware/breakdown.sh ELF CODE   (CODE: the code bytes of firmware/run.sh's sizes table)
# Prints the table's rows, | part | bytes | share of the code |, and last picoformer's modules
# together.
set -euo pipefail
elf=$1
code=$2
host=$(rustc -vV | sed -n 's/^host: //p')
nm="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-nm"
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT

"$nm" --demangle --print-size --size-sort --radix=d "$elf" | awk -v code="$code" '
  # address size type name...: flash is text (t/T), read-only data (r/R) and initialised data (d/D)
  NF >= 4 && $3 ~ /^[tTrRdD]$/ {
    size = $2 + 0
    name = $4
    for (i = 5; i <= NF; i++) name = name " " $i
    if (size == 0 || name ~ /^[a-z_]+::expected::/ || seen[$1]++) next  # (aliases: one address, one count)
    # Escapes llvm-nm leaves in some legacy-mangled names.
    gsub(/\$LT\$/, "<", name); gsub(/\$GT\$/, ">", name); gsub(/\$u20\$/, " ", name)
    gsub(/\$RF\$/, "\\&", name); gsub(/\$C\$/, ",", name); gsub(/\$u5b\$/, "[", name)
    gsub(/\$u5d\$/, "]", name); gsub(/\$BP\$/, "*", name); gsub(/\.\./, "::", name)
    # "<picoformer::x::Y as core::fmt::Display>::fmt" and "_<impl picoformer::x::Y>::f" are
    # picoformer::x; generic instances name their own crate first; "<&T as ...>" and other
    # impls on core types are core.
    sub(/^_</, "<", name)
    sub(/^<(impl )?/, "", name)
    split(name, path, "::")
    crate = path[1]
    if (name ~ /^\.Lanon\./) part = "constants without a name (tables, strings)"
    else if (crate ~ /^[&\[*]|^(char|str|u8|u16|u32|u64|usize|i8|i16|i32|i64|isize|f32|f64|bool)($| )/) part = (name ~ /core::fmt/) ? "core::fmt" : "core (other)"
    else if (crate == "picoformer") part = "picoformer::" path[2]
    else if (name ~ /^picoformer_cortexm_/) part = "picoformer::kernels"
    else if (crate == "core" && (path[2] == "fmt" || path[2] == "num" || path[2] == "str")) part = "core::" path[2]
    else if (crate == "core" || crate == "alloc") part = "core (other)"
    else if (crate ~ /^(firmware|kws|decode_only)$/) part = "firmware (the harness and the program)"
    else if (crate ~ /^(cortex_m|cortex_m_rt|riscv|riscv_rt|semihosting|critical_section|__rustc)$/ || name ~ /^(__INTERRUPTS|__EXCEPTIONS|__RESET_VECTOR|Reset|DefaultHandler|HardFault.*|_start.*)$/) part = "runtime (cortex-m-rt / riscv, semihosting)"
    else if (crate == "libm") part = "libm"
    else if (crate == "compiler_builtins" || name ~ /^__aeabi_|^__[a-z]+[sdt]f[0-9]$|^mem(cpy|move|set|cmp)$/) part = "compiler_builtins (soft float, memcpy)"
    else if (crate == "half") part = "half"
    else part = "other symbols"
    total[part] += size
    named += size
  }
  END {
    for (p in total) printf "%d\t%s\n", total[p], p
    printf "%d\t%s\n", code - named, "no symbol (merged string literals, alignment padding)"
  }' | sort -t$'\t' -k1,1nr >"$rows"
# Then picoformer's modules together.
awk -F'\t' '$2 ~ /^picoformer::/ { s += $1 } END { printf "%d\tpicoformer, all its modules\n", s }' "$rows" >>"$rows"
while IFS=$'\t' read -r bytes part; do
  printf '| %s | %s | %s%% |\n' "$part" \
    "$(printf '%s' "$bytes" | rev | sed 's/[0-9]\{3\}/& /g; s/ $//' | rev)" \
    "$(awk -v b="$bytes" -v c="$code" 'BEGIN { printf "%.1f", 100 * b / c }')"
done <"$rows"
