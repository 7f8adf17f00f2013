"""Golden fixtures for ContinuousTransformerWrapper (issue 25), made with the real x-transformers.

    .venv/bin/python tools/make_continuous_fixtures.py [--out tests/fixtures]

Writes <name>.model.safetensors (the wrapper's state_dict; metadata `x_transformers` =
{"decoder" | "encoder": {...}, "continuous_wrapper": {...}}) and <name>.io.safetensors with `x`,
optional `mask`, and `full` = model(x, mask=mask); for a decoder `stepwise` = x-transformers' cached
pass (one frame per call, cache passed back). Parameters are perturbed (p += 0.1 * randn).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import check_alignment, write_safetensors  # noqa: E402
from make_fixtures import perturb_  # noqa: E402

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
]


def make_one(spec, out_dir):
    from x_transformers import ContinuousTransformerWrapper, Decoder, Encoder

    torch.manual_seed(spec["seed"])
    layers = (Decoder if spec["layers"] == "decoder" else Encoder)(**spec["layer_kwargs"])
    model = ContinuousTransformerWrapper(attn_layers=layers, **spec["wrapper"])
    perturb_(model)
    model.eval()
    b, n = 2, spec["n"]
    x = torch.randn(b, n, spec["wrapper"]["dim_in"])
    io = {"x": x}
    extra = {}
    if spec["mask"] is not None:
        io["mask"] = extra["mask"] = torch.tensor([[c == "1" for c in r] for r in spec["mask"]])
    with torch.no_grad():
        full = model(x, **extra)
        if spec["layers"] == "decoder":
            rows, cache = [], None
            for i in range(n):
                out, cache = model(x[:, : i + 1], cache=cache, return_intermediates=True)
                rows.append(out[:, -1:])
            stepwise = torch.cat(rows, dim=1)
        else:
            stepwise = full
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    meta = {spec["layers"]: spec["layer_kwargs"], "continuous_wrapper": spec["wrapper"]}
    model_path = os.path.join(out_dir, f"{spec['name']}.model.safetensors")
    write_safetensors(state, model_path, {"x_transformers": json.dumps(meta, sort_keys=True), "format": "picoformer-1"})
    check_alignment(model_path)
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
