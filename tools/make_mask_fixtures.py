"""Golden fixtures for padding masks (issue 25), made with the real x-transformers.

    .venv/bin/python tools/make_mask_fixtures.py [--out tests/fixtures]

For each configuration below it writes <name>.model.safetensors (tools/export.py) and
<name>.io.safetensors with the inputs (`x` or `tokens`, `mask` (bool, b x n, True = real),
optional `context` and `context_mask`) and `full` = x-transformers' full pass with the masks
(`model(seq, mask=mask, context=context, context_mask=context_mask)`). x-transformers' cached
decoding takes no padding mask, so the fixture's `stepwise` is `full` too: picoformer's step-wise
pass (prompt then one position per call, the mask of every cached position given again) must
reproduce the full pass, padded positions included (their attention outputs are zeroed,
xt:2751-2752). Parameters are perturbed (p += 0.1 * randn) as in tools/make_fixtures.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import build_module, check_alignment, export, layers_class, write_safetensors  # noqa: E402
from make_fixtures import perturb_  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures")

# masks: per batch element, a string of 1 (real) and 0 (padding) over positions / context rows
FIXTURES = [
    # left-padded prompts (as generate pads them), rotary and GQA, in a wrapper
    dict(name="mask_left_pad", seed=30, mask=["00011111", "01111111"], context_mask=None, kwargs={
        "decoder": dict(dim=32, depth=2, heads=4, attn_dim_head=8, attn_kv_heads=2, rotary_pos_emb=True),
        "wrapper": dict(num_tokens=40, max_seq_len=16)}),
    # absolute positions, padding on the left, in the middle and on the right
    dict(name="mask_abs", seed=31, mask=["00111111", "11011100"], context_mask=None, kwargs={
        "decoder": dict(dim=32, depth=2, heads=2, attn_dim_head=16),
        "wrapper": dict(num_tokens=40, max_seq_len=16)}),
    # a cross-attending decoder with a padded context and a left-padded input (flash attention path)
    dict(name="mask_cross", seed=32, mask=["0011111", "1111111"], context_mask=["11100", "01111"], kwargs={
        "decoder": dict(dim=32, depth=2, heads=4, attn_dim_head=8, attn_kv_heads=2, rotary_pos_emb=True,
                        cross_attend=True, cross_attn_dim_context=24, attn_flash=True),
        "wrapper": None}),
    # a context mask alone
    dict(name="mask_context_only", seed=33, n=7, mask=None, context_mask=["11110", "10111"], kwargs={
        "decoder": dict(dim=32, depth=1, heads=2, attn_dim_head=16, cross_attend=True, rotary_pos_emb=True),
        "wrapper": dict(num_tokens=30, max_seq_len=0)}),
    # Encoders (causal=False, issue 25): bare, without and with a padding mask; in a wrapper (logits)
    # with absolute positions and a mask; cross-attending with a context mask. An encoder has no
    # step-wise pass: `stepwise` is `full`.
    dict(name="enc_bare", seed=40, n=7, mask=None, context_mask=None, kwargs={
        "encoder": dict(dim=32, depth=2, heads=4, attn_dim_head=8, attn_kv_heads=2, rotary_pos_emb=True),
        "wrapper": None}),
    dict(name="enc_bare_mask", seed=40, mask=["0011111", "1111100"], context_mask=None, kwargs={
        "encoder": dict(dim=32, depth=2, heads=4, attn_dim_head=8, attn_kv_heads=2, rotary_pos_emb=True),
        "wrapper": None}),
    dict(name="enc_wrap", seed=41, mask=["11111100", "11111111"], context_mask=None, kwargs={
        "encoder": dict(dim=32, depth=2, heads=2, attn_dim_head=16, ff_glu=True, use_rmsnorm=True),
        "wrapper": dict(num_tokens=40, max_seq_len=16)}),
    dict(name="enc_cross", seed=42, mask=["1111110", "0111111"], context_mask=["11100", "11111"], kwargs={
        "encoder": dict(dim=32, depth=2, heads=4, attn_dim_head=8, cross_attend=True, rotary_pos_emb=True,
                        attn_flash=True),
        "wrapper": None}),
]


def bools(rows):
    return torch.tensor([[c == "1" for c in r] for r in rows], dtype=torch.bool)


def make_one(spec, out_dir):
    name, kwargs = spec["name"], spec["kwargs"]
    dec, wrap = kwargs[layers_class(kwargs)], kwargs["wrapper"]
    torch.manual_seed(spec["seed"])
    model = build_module(kwargs)
    perturb_(model)
    model.eval()
    n = spec.get("n") or len(spec["mask"][0])
    b = 2
    io = {}
    if wrap is None:
        io["x"] = torch.randn(b, n, dec["dim"])
        seq = io["x"]
    else:
        io["tokens"] = torch.randint(0, wrap["num_tokens"], (b, n), dtype=torch.int64)
        seq = io["tokens"]
    extra = {}
    if spec["mask"] is not None:
        io["mask"] = extra["mask"] = bools(spec["mask"])
    if dec.get("cross_attend"):
        m = len(spec["context_mask"][0]) if spec["context_mask"] else 5
        io["context"] = extra["context"] = torch.randn(b, m, dec.get("cross_attn_dim_context", dec["dim"]))
        if spec["context_mask"] is not None:
            io["context_mask"] = extra["context_mask"] = bools(spec["context_mask"])
    with torch.no_grad():
        full = model(seq, **extra)
    model_path = os.path.join(out_dir, f"{name}.model.safetensors")
    io_path = os.path.join(out_dir, f"{name}.io.safetensors")
    export(model, kwargs, model_path, dtype="float32")
    io["full"] = full.contiguous()
    io["stepwise"] = full.contiguous()
    write_safetensors(io, io_path, {"format": "picoformer-io-1", "name": name})
    check_alignment(io_path)
    print(f"{name:18s} full {tuple(full.shape)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    try:
        from loguru import logger

        logger.disable("x_transformers")
    except ImportError:
        pass
    for spec in FIXTURES:
        make_one(spec, args.out)


if __name__ == "__main__":
    main()
