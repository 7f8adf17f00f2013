#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench` run (target/criterion/**/new) as markdown tables.

GFLOP/s for gemv/gemm groups (with the shares of the same run's FMA peak and f16 roof), times and ratios for attention (single-head and grouped), tokens/s and GB/s for
decode, with ratios against the named peers of the same run."""
import json, os, sys

root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
rows = {}     # group -> function -> (median ns per iteration, throughput)
fastest = {}  # the same with the fastest sample's ns per iteration
for dirpath, _, files in os.walk(root):
    if "benchmark.json" in files and dirpath.endswith("/new"):
        b = json.load(open(os.path.join(dirpath, "benchmark.json")))
        e = json.load(open(os.path.join(dirpath, "estimates.json")))
        med = e["median"]["point_estimate"]  # ns per iteration
        thr = b.get("throughput") or {}
        rows.setdefault(b["group_id"], {})[b["full_id"][len(b["group_id"]) + 1:]] = (med, thr)
        smp = json.load(open(os.path.join(dirpath, "sample.json")))
        fastest.setdefault(b["group_id"], {})[b["full_id"][len(b["group_id"]) + 1:]] = (
            min(t / i for t, i in zip(smp["times"], smp["iters"])), thr)

def table(*header):
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")

def rate(med, thr, key):
    return thr[key] / med if key in thr else float("nan")  # per ns = G/s

def present(groups, cols):
    """The columns measured in at least one of `groups` (AVX-512 ones only exist on such CPUs)."""
    return [c for c in cols if any(c in rows[g] for g in groups)]

def products(kind):
    groups = sorted((g for g in rows if g.startswith(kind + "/")), key=lambda g: [int(v) for v in g.split("/")[1].split(",")])
    cols = present(groups, ["picoformer", "picoformer_avx2", "picoformer_panels", "picoformer_panels_avx2", "picoformer_f16", "picoformer_q8_0", "gemm",
                            "matrixmultiply", "portable", "naive", "fma_peak", "fma_peak_avx512", "bf16_dot_peak", "f16_roof"])
    ratios = [(a, b) for a, b in [("picoformer", "gemm"), ("picoformer", "matrixmultiply"), ("picoformer", "portable"), ("picoformer", "picoformer_avx2"),
                                  ("picoformer", "fma_peak"), ("picoformer", "fma_peak_avx512"), ("picoformer_f16", "f16_roof"),
                                  ("picoformer_panels", "gemm"), ("picoformer_panels", "matrixmultiply"), ("picoformer_panels", "picoformer"),
                                  ("picoformer_panels", "fma_peak_avx512"), ("picoformer_panels_avx2", "matrixmultiply"),
                                  ("picoformer_panels_avx2", "fma_peak"), ("bf16_dot_peak", "fma_peak_avx512")] if a in cols and b in cols]
    table("shape M,K,N", *cols, *(f"{a.replace('picoformer', 'ours')}/{b}" for a, b in ratios))
    for g in groups:
        r = {k: rate(*v, "Elements") for k, v in rows[g].items()}
        f = lambda k: f"{r.get(k, float('nan')):.1f}"
        ratio = lambda a, b: f"{r.get(a, float('nan')) / r.get(b, float('nan')):.2f}"
        print(f"| {g.split('/')[1]} | " + " | ".join(f(c) for c in cols) + " | " + " | ".join(ratio(a, b) for a, b in ratios) + " |")

def int8(kind):
    """The int8 path beside f32 and Q8_0 with f32 products; `bytes/f32` is the weight bytes per
    second over f32's (34 bytes per 32 weights against 128)."""
    groups = sorted((g for g in rows if g.startswith(kind + "/")), key=lambda g: [int(v) for v in g.split("/")[1].split(",")])
    cols = present(groups, ["picoformer", "picoformer_panels", "picoformer_q8_0", "picoformer_int8", "picoformer_int8_avxvnni", "picoformer_int8_avx2",
                            "picoformer_int8_panels", "picoformer_int8_panels_avxvnni", "picoformer_int8_panels_avx2", "gemm"])
    if not any(c.startswith("picoformer_int8") for c in cols):
        return
    base = "picoformer_panels" if "picoformer_panels" in cols else "picoformer"
    table("int8: shape M,K,N", *cols, "int8_panels/q8_0", "int8_panels/int8", "int8_panels/gemm", f"int8_panels bytes/{base} bytes")
    for g in groups:
        r = {k: rate(*v, "Elements") for k, v in rows[g].items()}
        get = lambda k: r.get(k, float("nan"))
        print(f"| {g.split('/')[1]} | " + " | ".join(f"{get(c):.1f}" for c in cols)
              + f" | {get('picoformer_int8_panels') / get('picoformer_q8_0'):.2f} | {get('picoformer_int8_panels') / get('picoformer_int8'):.2f}"
              + f" | {get('picoformer_int8_panels') / get('gemm'):.2f} | {get('picoformer_int8_panels') * 34 / 128 / get(base):.2f} |")

print("GFLOP/s (median), single thread\n")
products("gemv"); print(); int8("gemv"); print(); products("gemm"); print(); int8("gemm"); print()
# The shared machine slows whole stretches of a run; the fastest of a function's samples shows
# what it does undisturbed, so these shares of the peak vary far less between runs.
gemm_groups = sorted(g for g in fastest if g.startswith("gemm/"))
if gemm_groups:
    cols = present(gemm_groups, ["picoformer", "picoformer_avx2", "picoformer_panels", "picoformer_panels_avx2", "picoformer_f16", "picoformer_q8_0",
                                 "gemm", "fma_peak", "fma_peak_avx512"])
    peak = "fma_peak_avx512" if "fma_peak_avx512" in cols else "fma_peak"
    table("fastest samples: shape M,K,N", *cols, "ours/gemm", f"ours/{peak}", f"panels/{peak}", "panels_avx2/fma_peak")
    for g in gemm_groups:
        r = {k: rate(*v, "Elements") for k, v in fastest[g].items()}
        get = lambda k: r.get(k, float("nan"))
        print(f"| {g.split('/')[1]} | " + " | ".join(f"{get(c):.1f}" for c in cols)
              + f" | {get('picoformer') / get('gemm'):.2f} | {get('picoformer') / get(peak):.2f}"
              + f" | {get('picoformer_panels') / get(peak):.2f} | {get('picoformer_panels_avx2') / get('fma_peak'):.2f} |")
    print()
def groups(prefix):
    """The groups named `prefix/<label>/<cached positions>`, by position count."""
    return sorted((g for g in rows if g.startswith(prefix + "/")), key=lambda g: int(g.split("/")[2]))

if groups("attention"):
    avx2 = present(groups("attention"), ["picoformer_avx2/f32"])
    table("attention d=64, cached positions", "picoformer f32", *(["AVX2 f32"] if avx2 else []), "picoformer f16", "portable", "naive", "f32/naive",
          *(["AVX2/naive"] if avx2 else []), "f16/naive", "f32/portable")
    for g in groups("attention"):
        t = {k: v[0] for k, v in rows[g].items()}
        us = lambda k: t[k] / 1e3
        a = [f"{us('picoformer_avx2/f32'):.2f} µs"] if avx2 else []
        b = [f"{t['naive/f32'] / t['picoformer_avx2/f32']:.2f}x"] if avx2 else []
        print(f"| {g.split('/')[2]} | {us('picoformer/f32'):.2f} µs | " + " | ".join(a + [f"{us('picoformer/f16'):.2f} µs", f"{us('portable/f32'):.2f} µs", f"{us('naive/f32'):.2f} µs",
              f"{t['naive/f32'] / t['picoformer/f32']:.2f}x"] + b + [f"{t['naive/f32'] / t['picoformer/f16']:.2f}x", f"{t['portable/f32'] / t['picoformer/f32']:.2f}x"]) + " |")
    print()
if groups("attention_gqa"):
    table("grouped-query attention, cached positions", "one grouped call", "one call per head", "grouped speed-up")
    for g in groups("attention_gqa"):
        t = {k: v[0] for k, v in rows[g].items()}
        print(f"| {g.split('/')[1]} {g.split('/')[2]} | {t['picoformer_group'] / 1e3:.2f} µs | {t['picoformer_per_head'] / 1e3:.2f} µs"
              f" | {t['picoformer_per_head'] / t['picoformer_group']:.2f}x |")
    print()
dec = [g for g in rows if g.startswith("decode")]
for g in sorted(dec):
    table(g, "weights", "tokens/s", "weight GB/s", "vs f32")
    base = rows[g].get("f32", (float("nan"),))[0]
    for k, (med, thr) in sorted(rows[g].items(), key=lambda kv: -kv[1][0]):
        gbs = thr.get("Bytes", float("nan")) / med
        print(f"| | {k} | {1e9 / med:.0f} | {gbs:.1f} | {base / med:.2f}x |")
for g in sorted(g for g in rows if g.startswith("prefill")):
    table(g, "weights", "tokens/s", "panels tokens/s", "panels/stored")
    for k in sorted(k for k in rows[g] if not k.endswith("_panels")):
        a, b = rows[g][k], rows[g].get(k + "_panels")
        tok = lambda v: v[1].get("Elements", float("nan")) * 1e9 / v[0]
        print(f"| | {k} | {tok(a):.0f} | {tok(b) if b else float('nan'):.0f} | {tok(b) / tok(a) if b else float('nan'):.2f}x |")
