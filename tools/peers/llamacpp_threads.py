"""picoformer against llama.cpp on one and two threads, whole processes interleaved (issue 30).

    /work/venv/bin/python tools/peers/llamacpp_threads.py --llamacpp PATH [--build DIR] [--rounds 5]
        [--weights f32,f16,q8_0] [--work DIR]

PATH is a checkout of https://github.com/ggml-org/llama.cpp (not vendored). Without --build the
script configures and builds it in the work directory (default /tmp/picoformer-peers):
`cmake -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF`, CPU
only, targets `llama-bench` and `llama-quantize`; --build DIR uses a build directory made that way.

The model is the stories15M shape of `stories_shape.py` (the one `llama2c_threads.py` uses) with
random weights, written twice from the same tensors: as a GGUF file of llama.cpp's `llama`
architecture through the `gguf` package of the checkout's `gguf-py` (imported from there; it needs
`pyyaml`, `sentencepiece` and `tqdm` besides numpy), f32, then F16 and Q8_0 by `llama-quantize`,
with a dummy SentencePiece-style vocabulary of 32000 tokens (the loader wants `tokenizer.ggml.*`
keys); and as the x-transformers `TransformerWrapper` exported by `tools/export.py`, f32 and f16,
Q8_0 by `picoformer quantize` run with `--dot int8` (llama.cpp quantises the activations of Q8_0
products too). Outputs are not compared; the work per token differs only in that x-transformers
rotates 24 of each head's 48 dimensions, the llama architecture all 48.

Both keep an f16 KV cache (llama-bench's default; it offers no f32 cache). llama.cpp:
`llama-bench -p 0 -n 254 -r 1 -t 1|2`, its generation figure: 254 single-token decodes at
positions 0..253 after one warm-up token, no sampling (each next token is random). picoformer:
`bench --prompt-tokens 2 --tokens 254 --capacity 256 --repeat 1 --kv f16 --threads 1|2`: 254
greedy decode steps at positions 2..255 after a 2-token prompt (the sampling, one pass over 32,000
logits, is inside its time). Rounds alternate the engines and thread counts (A1 B1 A2 B2 ...); the
table gives medians of decode tokens/s, their ratio, and the best round of each (on a shared
machine, the least disturbed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stories_shape import (DIM, HEADS, HIDDEN, LAYERS, SEQ, VOCAB, build_picoformer, export_model,  # noqa: E402
                           make_model, quantize_picoformer, run_picoformer, state)

GEN = SEQ - 2  # generated tokens on both sides


def build_llamacpp(src: str, build: str | None, work: str) -> str:
    """The directory holding `llama-bench` and `llama-quantize`."""
    if build is None:
        build = os.path.join(work, "llama.cpp-build")
        subprocess.run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
                        "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF"], check=True)
        subprocess.run(["cmake", "--build", build, "-j", str(os.cpu_count() or 1), "--target", "llama-bench",
                        "llama-quantize"], check=True)
    return os.path.join(build, "bin")


def write_gguf(src: str, model, path: str) -> str:
    """The model's tensors as an f32 GGUF file of the `llama` architecture."""
    sys.path.insert(0, os.path.join(src, "gguf-py"))
    import gguf

    sd, layers = state(model)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("stories15M-shaped random")
    w.add_context_length(SEQ)
    w.add_embedding_length(DIM)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(HIDDEN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(DIM // HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(VOCAB)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    # a dummy vocabulary shaped like LLaMA's: <unk> <s> </s>, 256 byte tokens, then placeholders
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(len(tokens), VOCAB)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (VOCAB - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * VOCAB)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def t(name, x):
        w.add_tensor(name, np.ascontiguousarray(x.numpy().astype(np.float32)))

    t("token_embd.weight", sd["token_emb.emb.weight"])
    for i in range(LAYERS):
        a, f = layers[2 * i], layers[2 * i + 1]
        t(f"blk.{i}.attn_norm.weight", sd[f"{a}.0.0.g"])
        t(f"blk.{i}.attn_q.weight", sd[f"{a}.1.to_q.weight"])
        t(f"blk.{i}.attn_k.weight", sd[f"{a}.1.to_k.weight"])
        t(f"blk.{i}.attn_v.weight", sd[f"{a}.1.to_v.weight"])
        t(f"blk.{i}.attn_output.weight", sd[f"{a}.1.to_out.weight"])
        t(f"blk.{i}.ffn_norm.weight", sd[f"{f}.0.0.g"])
        # x-transformers' GLU: the first half of the projection is the value, the second the gate
        proj = sd[f"{f}.1.ff.0.proj.weight"]
        t(f"blk.{i}.ffn_up.weight", proj[:HIDDEN])
        t(f"blk.{i}.ffn_gate.weight", proj[HIDDEN:])
        t(f"blk.{i}.ffn_down.weight", sd[f"{f}.1.ff.2.weight"])
    t("output_norm.weight", sd["attn_layers.final_norm.g"])
    t("output.weight", sd["to_logits.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def make_models(src: str, bindir: str, pico: str, work: str, weights: list[str]) -> dict:
    """weights -> (GGUF path, picoformer model path, extra picoformer bench arguments)."""
    model = make_model()
    f32 = write_gguf(src, model, os.path.join(work, "stories15M-f32.gguf"))
    st32 = export_model(model, os.path.join(work, "stories15M-f32.safetensors"))
    out = {}
    for wt in weights:
        if wt == "f32":
            out[wt] = (f32, st32, ())
            continue
        g = os.path.join(work, f"stories15M-{wt}.gguf")
        subprocess.run([os.path.join(bindir, "llama-quantize"), f32, g, {"f16": "F16", "q8_0": "Q8_0"}[wt]],
                       check=True, capture_output=True)
        if wt == "f16":
            out[wt] = (g, export_model(model, os.path.join(work, "stories15M-f16.safetensors"), "float16"), ())
        else:
            q = quantize_picoformer(pico, st32, os.path.join(work, "stories15M-q8_0.safetensors"))
            out[wt] = (g, q, ("--dot", "int8"))
    return out


def run_llamacpp(bindir: str, model: str, threads: int) -> float:
    out = subprocess.run([os.path.join(bindir, "llama-bench"), "-m", model, "-p", "0", "-n", str(GEN), "-r", "1",
                          "-t", str(threads), "-ctk", "f16", "-ctv", "f16", "-o", "json"],
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout)[0]["avg_ts"])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamacpp", required=True, help="a checkout of ggml-org/llama.cpp")
    ap.add_argument("--build", help="its CMake build directory (default: build one in --work)")
    ap.add_argument("--work", default="/tmp/picoformer-peers")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--weights", default="f32,f16,q8_0")
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    weights = args.weights.split(",")
    pico = build_picoformer()
    bindir = build_llamacpp(args.llamacpp, args.build, args.work)
    models = make_models(args.llamacpp, bindir, pico, args.work, weights)
    commit = subprocess.run(["git", "-C", args.llamacpp, "rev-parse", "--short=9", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    kv = ("--kv", "f16")  # llama-bench's cache types are f16 and quantised ones, not f32
    res = {(e, wt, t): [] for wt in weights for t in (1, 2) for e in ("llama.cpp", "picoformer")}
    for r in range(args.rounds):
        for wt in weights:
            g, st, extra = models[wt]
            for t in (1, 2):
                res[("llama.cpp", wt, t)].append(run_llamacpp(bindir, g, t))
                res[("picoformer", wt, t)].append(run_picoformer(pico, st, t, 2, GEN, SEQ, extra + kv))
        print(f"round {r + 1}: " + ", ".join(f"{e} {wt} {t}t {v[-1]:.0f}" for (e, wt, t), v in res.items()),
              file=sys.stderr)
    med = {k: statistics.median(v) for k, v in res.items()}
    best = {k: max(v) for k, v in res.items()}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu}; llama.cpp {commit}; KV cache f16; {args.rounds} interleaved rounds, medians (and "
          f"best) of decode tokens/s (llama-bench tg{GEN}; picoformer 2 + {GEN} tokens)\n")
    print("| weights | threads | llama.cpp tg | picoformer | picoformer / llama.cpp | best: llama.cpp, picoformer |")
    print("|---|---|---:|---:|---:|---|")
    for wt in weights:
        for t in (1, 2):
            l, p = med[("llama.cpp", wt, t)], med[("picoformer", wt, t)]
            name = {"f32": "f32", "f16": "f16", "q8_0": "Q8_0 (picoformer `--dot int8`)"}[wt]
            print(f"| {name} | {t} | {l:.0f} | {p:.0f} | {p / l:.2f}× | "
                  f"{best[('llama.cpp', wt, t)]:.0f}, {best[('picoformer', wt, t)]:.0f} |")
    for e in ("llama.cpp", "picoformer"):
        print(f"\nTwo threads over one, {e}: " + ", ".join(
            f"{wt} {med[(e, wt, 2)] / med[(e, wt, 1)]:.2f}× (best {best[(e, wt, 2)] / best[(e, wt, 1)]:.2f}×)"
            for wt in weights), end="")
    print()


if __name__ == "__main__":
    main()
