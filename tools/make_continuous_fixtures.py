"""Golden fixtures for ContinuousTransformerWrapper (issue 25), made with the real x-transformers.

    .venv/bin/python tools/make_continuous_fixtures.py [--out tests/fixtures] [--only NAME ...]

Writes <name>.model.safetensors through tools/export.py (the wrapper's state_dict, float32 unless
the fixture says `dtype`; metadata
`x_transformers` = {"decoder" | "encoder": {...}, "continuous_wrapper": {...}}, every argument decided
by the loader's rule) and <name>.io.safetensors with `x`, optional `mask`, `context` and
`context_mask`, and `full` = model(x, mask=mask, context=context, context_mask=context_mask); for a
decoder `stepwise` = x-transformers' cached pass (one frame per call, cache passed back), or with
`uncached` its uncached pass over each prefix (the last row of each).
Parameters are perturbed (p += 0.1 * randn); a float16 model's parameters are rounded to float16
before the reference runs, so the expected outputs are exact for the stored weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import check_alignment, export, write_safetensors  # noqa: E402
from make_fixtures import _TORCH_DTYPE, perturb_, round_params_  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIXTURES = [
    # streaming: a Decoder, frames of 10 in, 6 out, absolute positions
    dict(name="cont_dec", seed=60, n=9, mask=None, layers="decoder",
         layer_kwargs=dict(dim=32, depth=2, heads=2, attn_dim_head=16),
         wrapper=dict(dim_in=10, dim_out=6, max_seq_len=16)),
    # an Encoder, a sequence out, rotary (no absolute positions), padded window
    dict(name="cont_enc", seed=61, n=8, mask=["11111100", "01111111"], layers="encoder",
         layer_kwargs=dict(dim=32, depth=2, heads=4, attn_dim_head=8, rotary_pos_emb=True),
         wrapper=dict(dim_in=10, dim_out=6, max_seq_len=16)),
    # keyword-spotting shaped: 49 frames x 10 features, pooled, 12 classes
    dict(name="cont_enc_pool", seed=62, n=49, mask=["1" * 45 + "0" * 4, "1" * 49], layers="encoder",
         layer_kwargs=dict(dim=32, depth=2, heads=4, attn_dim_head=8),
         wrapper=dict(dim_in=10, dim_out=12, max_seq_len=49, average_pool_embed=True)),
    # streaming with a context: cross-attention (padded context), post_emb_norm, frames already
    # `dim` wide (use_identity_if_same_dim: no project_in), GQA, absolute positions
    dict(name="cont_dec_ctx", seed=63, n=7, mask=None, layers="decoder", context=(5, ["11111", "11100"]),
         layer_kwargs=dict(dim=24, depth=2, heads=4, attn_dim_head=6, attn_kv_heads=2, cross_attend=True,
                           ff_glu=True),
         wrapper=dict(dim_in=24, dim_out=5, max_seq_len=12, post_emb_norm=True, use_identity_if_same_dim=True,
                      emb_dropout=0.1)),
    # memory tokens (num_memory_tokens): an Encoder window, padded, pooled, absolute positions and
    # post_emb_norm (the memory rows get neither)
    dict(name="cont_enc_mem", seed=64, n=7, mask=["1111100", "0111111"], layers="encoder",
         layer_kwargs=dict(dim=16, depth=2, heads=2, attn_dim_head=8),
         wrapper=dict(dim_in=6, dim_out=4, max_seq_len=8, num_memory_tokens=3, post_emb_norm=True,
                      average_pool_embed=True)),
    # memory tokens streaming through a rotary Decoder (the memory takes the first positions).
    # x-transformers' own cached forward fails here (an einops error unpacking the memory tokens
    # from the one new position), so `stepwise` is its uncached pass over each prefix (`uncached`)
    dict(name="cont_dec_mem", seed=65, n=6, mask=None, layers="decoder", uncached=True,
         layer_kwargs=dict(dim=16, depth=2, heads=2, attn_dim_head=8, rotary_pos_emb=True),
         wrapper=dict(dim_in=6, dim_out=3, max_seq_len=0, num_memory_tokens=2)),
    # the firmware's keyword-spotting example (firmware/src/kws.rs): 49 frames x 10 features (e.g.
    # MFCCs of 1 s of audio), 12 classes, pooled; float16 weights (about 270 KB); four windows: one
    # whole, two cut short (trailing padding), one with leading padding
    dict(name="kws", seed=64, n=49, b=4, dtype="float16", layers="encoder",
         mask=["1" * 49, "1" * 41 + "0" * 8, "1" * 27 + "0" * 22, "0" * 6 + "1" * 43],
         layer_kwargs=dict(dim=64, depth=4, heads=4, attn_dim_head=16, ff_mult=2),
         wrapper=dict(dim_in=10, dim_out=12, max_seq_len=49, average_pool_embed=True)),
]


def make_one(spec, out_dir):
    from x_transformers import ContinuousTransformerWrapper, Decoder, Encoder

    torch.manual_seed(spec["seed"])
    layers = (Decoder if spec["layers"] == "decoder" else Encoder)(**spec["layer_kwargs"])
    model = ContinuousTransformerWrapper(attn_layers=layers, **spec["wrapper"])
    perturb_(model)
    dtype = spec.get("dtype", "float32")
    if dtype != "float32":
        round_params_(model, _TORCH_DTYPE[dtype])
    model.eval()
    b, n = spec.get("b", 2), spec["n"]
    x = torch.randn(b, n, spec["wrapper"]["dim_in"])
    io = {"x": x}
    extra = {}
    if spec["mask"] is not None:
        io["mask"] = extra["mask"] = torch.tensor([[c == "1" for c in r] for r in spec["mask"]])
    step_extra = {}
    if spec.get("context") is not None:
        m, cmask = spec["context"]
        io["context"] = step_extra["context"] = torch.randn(b, m, spec["layer_kwargs"]["dim"])
        io["context_mask"] = step_extra["context_mask"] = torch.tensor([[c == "1" for c in r] for r in cmask])
        extra.update(step_extra)
    with torch.no_grad():
        full = model(x, **extra)
        if spec["layers"] == "decoder":
            rows, cache = [], None
            for i in range(n):
                if spec.get("uncached"):
                    out = model(x[:, : i + 1], **step_extra)
                else:
                    out, cache = model(x[:, : i + 1], cache=cache, return_intermediates=True, **step_extra)
                rows.append(out[:, -1:])
            stepwise = torch.cat(rows, dim=1)
        else:
            stepwise = full
    meta = {spec["layers"]: spec["layer_kwargs"], "continuous_wrapper": spec["wrapper"]}
    model_path = os.path.join(out_dir, f"{spec['name']}.model.safetensors")
    export(model, meta, model_path, dtype=dtype)
    state = model.state_dict()
    io["full"] = full.contiguous()
    io["stepwise"] = stepwise.contiguous()
    io_path = os.path.join(out_dir, f"{spec['name']}.io.safetensors")
    write_safetensors(io, io_path, {"format": "picoformer-io-1", "name": spec["name"]})
    check_alignment(io_path)
    print(spec["name"], tuple(full.shape), "|full-stepwise|", (full - stepwise).abs().max().item(),
          sorted(k for k in state if ".layers." not in k))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    ap.add_argument("--only", nargs="*", help="make only these fixtures")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    try:
        from loguru import logger

        logger.disable("x_transformers")
    except ImportError:
        pass
    for spec in FIXTURES:
        if args.only and spec["name"] not in args.only:
            continue
        make_one(spec, args.out)


if __name__ == "__main__":
    main()
