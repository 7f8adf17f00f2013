"""picoformer against llama2.c on one and two threads, whole processes interleaved (issue 30).

    /work/venv/bin/python tools/peers/llama2c_threads.py --llama2c PATH [--rounds 5] [--work DIR]

PATH is a checkout of https://github.com/karpathy/llama2.c (not vendored: the script builds it
in the work directory, default /tmp/picoformer-peers). The model is the stories15M shape (dim 288,
6 layers, 6 heads of 48, SwiGLU hidden 768, RMSNorm, rotary, vocab 32000, untied logits) with
random weights, written twice from the same tensors: in llama2.c's `run.c` format (and a dummy
tokenizer of 32000 tokens) and as an x-transformers `TransformerWrapper` exported by
`tools/export.py` (f32). Both decode 254 tokens greedily after a 2-token prompt (capacity 256):
llama2.c `run` built with `-Ofast -march=native -fopenmp` (OMP_NUM_THREADS = 1, 2), picoformer
`bench --threads 1|2` (rayon's pool; the same numbers on every thread count). Rounds alternate
the engines and thread counts (A1 B1 A2 B2 ...); the table gives medians of decode tokens/s and
the same-run ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stories_shape import (DIM, HEADS, HIDDEN, LAYERS, SEQ, VOCAB, build_picoformer, export_model,  # noqa: E402
                           make_model, run_picoformer, state)


def build_llama2c(src: str, work: str) -> str:
    exe = os.path.join(work, "run_omp")
    subprocess.run(["gcc", "-Ofast", "-march=native", "-fopenmp", os.path.join(src, "run.c"), "-lm",
                    "-o", exe], check=True)
    return exe


def make_models(work: str) -> tuple[str, str, str]:
    """The x-transformers model (random init, seeded) exported for picoformer, and the same
    tensors in llama2.c's format."""
    model = make_model()
    st = export_model(model, os.path.join(work, "stories15M.safetensors"))
    sd, layers = state(model)

    def stack(fmt):
        return torch.stack([sd[fmt.format(a=layers[2 * i], f=layers[2 * i + 1])] for i in range(LAYERS)])

    # RMSNorm gains: x-transformers' `g` times sqrt(dim) is llama2.c's weight (both normalise the
    # same way up to that scale; random weights only need the same amount of work)
    parts = [
        sd["token_emb.emb.weight"],
        stack("{a}.0.0.g"),
        stack("{a}.1.to_q.weight"), stack("{a}.1.to_k.weight"), stack("{a}.1.to_v.weight"),
        stack("{a}.1.to_out.weight"),
        stack("{f}.0.0.g"),
        stack("{f}.1.ff.0.proj.weight")[:, :HIDDEN], stack("{f}.1.ff.2.weight"),
        stack("{f}.1.ff.0.proj.weight")[:, HIDDEN:],
        sd["attn_layers.final_norm.g"],
        torch.zeros(SEQ * (DIM // HEADS) // 2), torch.zeros(SEQ * (DIM // HEADS) // 2),
        sd["to_logits.weight"],
    ]
    bin_path = os.path.join(work, "stories15M.bin")
    with open(bin_path, "wb") as f:
        # a negative vocabulary size: unshared classifier weights, as the export's to_logits
        f.write(struct.pack("7i", DIM, HIDDEN, LAYERS, HEADS, HEADS, -VOCAB, SEQ))
        for p in parts:
            f.write(p.numpy().astype("<f4").tobytes())
    tok = os.path.join(work, "tokenizer.bin")
    with open(tok, "wb") as f:
        f.write(struct.pack("i", 8))
        for i in range(VOCAB):
            piece = bytes([i]) if i < 256 else f"<{i}>".encode()
            f.write(struct.pack("fi", 0.0, len(piece)) + piece)
    return st, bin_path, tok


def run_llama2c(exe: str, model: str, tok: str, threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([exe, model, "-z", tok, "-t", "0", "-n", str(SEQ), "-i", "ab"], env=env,
                         capture_output=True, text=True, check=True)
    m = re.search(r"achieved tok/s: ([0-9.]+)", out.stderr + out.stdout)
    return float(m.group(1))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama2c", required=True, help="a checkout of karpathy/llama2.c")
    ap.add_argument("--work", default="/tmp/picoformer-peers")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    pico = build_picoformer()
    exe = build_llama2c(args.llama2c, args.work)
    st, bin_path, tok = make_models(args.work)
    results = {(e, t): [] for e in ("llama2.c", "picoformer") for t in (1, 2)}
    for r in range(args.rounds):
        for t in (1, 2):
            results[("llama2.c", t)].append(run_llama2c(exe, bin_path, tok, t))
            results[("picoformer", t)].append(run_picoformer(pico, st, t))
        print(f"round {r + 1}: " + ", ".join(f"{e} {t}t {v[-1]:.0f}" for (e, t), v in results.items()),
              file=sys.stderr)
    med = {k: statistics.median(v) for k, v in results.items()}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}; {args.rounds} interleaved rounds, medians of decode tokens/s (2 + 254 tokens)\n")
    print("| threads | llama2.c run.c -Ofast -fopenmp | picoformer f32 | picoformer / llama2.c | 2 threads / 1 |")
    print("|---|---:|---:|---:|---|")
    for t in (1, 2):
        l, p = med[("llama2.c", t)], med[("picoformer", t)]
        speedup = "" if t == 1 else (f"llama2.c {l / med[('llama2.c', 1)]:.2f}×, "
                                      f"picoformer {p / med[('picoformer', 1)]:.2f}×")
        print(f"| {t} | {l:.0f} | {p:.0f} | {p / l:.2f}× | {speedup} |")
    shutil.rmtree(args.work, ignore_errors=True) if os.environ.get("PEERS_CLEAN") else None


if __name__ == "__main__":
    main()
