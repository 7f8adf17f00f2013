"""Golden fixtures for XTransformer (issue 25), made with the real x-transformers.

    .venv/bin/python tools/make_xtransformer_fixture.py [--out tests/fixtures]

Writes <name>.model.safetensors through tools/export.py (the XTransformer's own state_dict,
metadata `x_transformers` = {"xtransformer": kwargs}, every argument decided by the loader's rule)
and <name>.io.safetensors with `src`, `src_mask`, `tgt`, the encoder's output `enc` and
`full` = model.decoder.net(tgt, context=model.encoder(src, mask=src_mask, return_embeddings=True),
context_mask=src_mask), the decoder's logits (xt:4763-4773); `stepwise` = x-transformers' cached
decoding of `tgt` over the same context (one token per call, cache passed back). Parameters are
perturbed (p += 0.1 * randn).

* xt_pad: a padded source; rotary decoder, absolute positions in the encoder.
* xt_tie: tie_token_emb (one vocabulary), a rotary encoder without absolute positions
  (enc_use_abs_pos_emb=False), a GQA decoder with GLU and absolute positions; sources padded on
  either side.
* xt_bytes: byte-level vocabularies (256 tokens both sides, what `picoformer generate --source`
  reads), ASCII sources, the second one padded; also `gen_start` (b, 1) and `gen`, the tokens of
  x-transformers' greedy `XTransformer.generate(src, gen_start, GEN, mask=src_mask,
  temperature=0.)` (xt:4759-4761, its decoder's KV cache on).
* xt_mem: the encoder with memory tokens (enc_num_memory_tokens), a padded source.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import check_alignment, export, write_safetensors  # noqa: E402
from make_fixtures import perturb_  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FIXTURES = [
    dict(name="xt_pad", seed=50, n=6, m=5,
         src_mask=["111111", "111100"],
         kwargs=dict(dim=32, enc_num_tokens=40, enc_depth=2, enc_heads=2, enc_attn_dim_head=16, enc_max_seq_len=16,
                     dec_num_tokens=30, dec_depth=2, dec_heads=4, dec_attn_dim_head=8, dec_max_seq_len=16,
                     dec_rotary_pos_emb=True)),
    dict(name="xt_bytes", seed=52, n=6, m=5, src_text=["hello!", "abcd"],
         src_mask=["111111", "111100"], gen_start="xy", gen=8,
         kwargs=dict(dim=16, enc_num_tokens=256, enc_depth=1, enc_heads=2, enc_attn_dim_head=8, enc_max_seq_len=32,
                     dec_num_tokens=256, dec_depth=2, dec_heads=2, dec_attn_dim_head=8, dec_max_seq_len=32,
                     dec_rotary_pos_emb=True)),
    dict(name="xt_mem", seed=53, n=5, m=4,
         src_mask=["11111", "11000"],
         kwargs=dict(dim=16, enc_num_tokens=24, enc_depth=1, enc_heads=2, enc_attn_dim_head=8, enc_max_seq_len=8,
                     enc_num_memory_tokens=2, dec_num_tokens=18, dec_depth=1, dec_heads=2, dec_attn_dim_head=8,
                     dec_max_seq_len=8)),
    dict(name="xt_tie", seed=51, n=7, m=6,
         src_mask=["0011111", "1111100"],
         kwargs=dict(dim=24, tie_token_emb=True, ignore_index=0, pad_value=1,
                     enc_num_tokens=20, enc_depth=1, enc_heads=3, enc_attn_dim_head=8, enc_max_seq_len=12,
                     enc_rotary_pos_emb=True, enc_use_abs_pos_emb=False, enc_emb_dropout=0.1,
                     dec_num_tokens=20, dec_depth=2, dec_heads=4, dec_attn_dim_head=6, dec_attn_kv_heads=2,
                     dec_ff_glu=True, dec_max_seq_len=10)),
]


def make_one(spec, out_dir):
    from x_transformers import XTransformer

    torch.manual_seed(spec["seed"])
    kwargs = spec["kwargs"]
    model = XTransformer(**kwargs)
    perturb_(model)
    model.eval()
    b, n, m = 2, spec["n"], spec["m"]
    src = torch.randint(0, kwargs["enc_num_tokens"], (b, n))
    if "src_text" in spec:
        src = torch.tensor([list(t.encode().ljust(n, b"\0")) for t in spec["src_text"]])
    src_mask = torch.tensor([[c == "1" for c in r] for r in spec["src_mask"]])
    tgt = torch.randint(0, kwargs["dec_num_tokens"], (b, m))
    net = model.decoder.net
    with torch.no_grad():
        enc = model.encoder(src, mask=src_mask, return_embeddings=True)
        full = net(tgt, context=enc, context_mask=src_mask)
        rows, cache = [], None
        for i in range(m):
            out, cache = net(tgt[:, : i + 1], context=enc, context_mask=src_mask, cache=cache,
                             return_intermediates=True)
            rows.append(out[:, -1:])
        stepwise = torch.cat(rows, dim=1)
        gen = {}
        if "gen" in spec:
            start = torch.tensor([[c] for c in spec["gen_start"].encode()])
            out = model.generate(src, start, spec["gen"], mask=src_mask, temperature=0.)
            gen = {"gen_start": start, "gen": out}
    model_path = os.path.join(out_dir, f"{spec['name']}.model.safetensors")
    export(model, {"xtransformer": kwargs}, model_path, dtype="float32")
    io = {"src": src, "src_mask": src_mask, "tgt": tgt, "enc": enc.contiguous(), "full": full.contiguous(),
          "stepwise": stepwise.contiguous(), **gen}
    io_path = os.path.join(out_dir, f"{spec['name']}.io.safetensors")
    write_safetensors(io, io_path, {"format": "picoformer-io-1", "name": spec["name"]})
    check_alignment(io_path)
    state = model.state_dict()
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
