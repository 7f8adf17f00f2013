"""The stories15M-shaped model the peer comparisons share (issue 30).

dim 288, 6 layers, 6 heads of 48, SwiGLU hidden 768, RMSNorm, rotary, vocab 32000, untied logits,
random weights (seeded): an x-transformers `TransformerWrapper`, exported for picoformer by
`tools/export.py`, whose tensors each peer's script writes again in its own format. Also the
picoformer side of every run: `picoformer bench` decode tokens/s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

DIM, HIDDEN, LAYERS, HEADS, VOCAB, SEQ = 288, 768, 6, 6, 32000, 256

DECODER = dict(dim=DIM, depth=LAYERS, heads=HEADS, attn_dim_head=DIM // HEADS, rotary_pos_emb=True,
               use_rmsnorm=True, ff_glu=True, ff_swish=True, ff_mult=HIDDEN / DIM, ff_no_bias=True)
WRAPPER = dict(num_tokens=VOCAB, max_seq_len=SEQ, use_abs_pos_emb=False)


def make_model():
    """The x-transformers model, random init with seed 0."""
    from x_transformers import Decoder, TransformerWrapper

    torch.manual_seed(0)
    return TransformerWrapper(attn_layers=Decoder(**DECODER), **WRAPPER).eval()


def export_model(model, path: str, dtype: str = "float32") -> str:
    """`model` as picoformer reads it (`tools/export.py`)."""
    from export import export

    export(model, {"decoder": DECODER, "wrapper": WRAPPER}, path, dtype=dtype)
    return path


def state(model) -> tuple[dict, list]:
    """The state dict in f32 and the names of the 2 * LAYERS sublayers (attention, feedforward)."""
    sd = {k: v.float().contiguous() for k, v in model.state_dict().items()}
    return sd, [f"attn_layers.layers.{i}" for i in range(2 * LAYERS)]


def build_picoformer() -> str:
    subprocess.run(["cargo", "build", "--release", "--features", "cli", "--bin", "picoformer"], cwd=REPO,
                   check=True)
    return os.path.join(REPO, "target", "release", "picoformer")


def quantize_picoformer(exe: str, model: str, out: str) -> str:
    subprocess.run([exe, "quantize", model, out], check=True, capture_output=True)
    return out


def run_picoformer(exe: str, model: str, threads: int, prompt: int = 2, tokens: int = SEQ - 2,
                   capacity: int = SEQ, extra: tuple = ()) -> float:
    """Decode tokens/s of one `picoformer bench` process (one repeat: prefill, then greedy decode)."""
    out = subprocess.run([exe, "bench", "--model", model, "--prompt-tokens", str(prompt), "--tokens", str(tokens),
                          "--repeat", "1", "--capacity", str(capacity), "--threads", str(threads), "--json",
                          *extra], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["decode_tokens_per_s"]
