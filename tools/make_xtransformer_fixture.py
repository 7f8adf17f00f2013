"""Golden fixture for XTransformer (issue 25): a padded source, made with the real x-transformers.

    .venv/bin/python tools/make_xtransformer_fixture.py [--out tests/fixtures]

Writes xt_pad.model.safetensors (the XTransformer's own state_dict, metadata `x_transformers`
= {"xtransformer": kwargs}) and xt_pad.io.safetensors with `src`, `src_mask`, `tgt` and
`full` = model.decoder.net(tgt, context=model.encoder(src, mask=src_mask, return_embeddings=True),
context_mask=src_mask), the decoder's logits (xt:4763-4773); `stepwise` = x-transformers'
cached decoding of `tgt` over the same context (one token per call, cache passed back).
Parameters are perturbed (p += 0.1 * randn).
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

KWARGS = dict(dim=32, enc_num_tokens=40, enc_depth=2, enc_heads=2, enc_attn_dim_head=16, enc_max_seq_len=16,
              dec_num_tokens=30, dec_depth=2, dec_heads=4, dec_attn_dim_head=8, dec_max_seq_len=16,
              dec_rotary_pos_emb=True)


def main(argv=None):
    from x_transformers import XTransformer

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    torch.manual_seed(50)
    model = XTransformer(**KWARGS)
    perturb_(model)
    model.eval()
    src = torch.randint(0, 40, (2, 6))
    src_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    tgt = torch.randint(0, 30, (2, 5))
    net = model.decoder.net
    with torch.no_grad():
        enc = model.encoder(src, mask=src_mask, return_embeddings=True)
        full = net(tgt, context=enc, context_mask=src_mask)
        rows, cache = [], None
        for i in range(tgt.shape[1]):
            out, cache = net(tgt[:, : i + 1], context=enc, context_mask=src_mask, cache=cache,
                             return_intermediates=True)
            rows.append(out[:, -1:])
        stepwise = torch.cat(rows, dim=1)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    model_path = os.path.join(args.out, "xt_pad.model.safetensors")
    write_safetensors(state, model_path, {"x_transformers": json.dumps({"xtransformer": KWARGS}, sort_keys=True),
                                          "format": "picoformer-1"})
    check_alignment(model_path)
    io = {"src": src, "src_mask": src_mask, "tgt": tgt, "enc": enc.contiguous(), "full": full.contiguous(),
          "stepwise": stepwise.contiguous()}
    io_path = os.path.join(args.out, "xt_pad.io.safetensors")
    write_safetensors(io, io_path, {"format": "picoformer-io-1", "name": "xt_pad"})
    check_alignment(io_path)
    print("xt_pad", tuple(full.shape), "|full-stepwise|", (full - stepwise).abs().max().item())
    print(sorted(k for k in state if not ".layers." in k))


if __name__ == "__main__":
    main()
