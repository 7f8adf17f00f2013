"""Export the bundled demo model (models/demo.safetensors) to ONNX for onnxruntime, in two graphs,
and check both against PyTorch with onnxruntime (tools/peers/ort_wasm.mjs runs them in Node on
onnxruntime-web's WASM backend, side by side with picoformer's WebAssembly build).

  full.onnx    tokens int64 [1, T]  ->  logits float32 [1, T, 256]          (T dynamic, 1..256)
               The x-transformers TransformerWrapper itself (its forward, attn_flash=True), traced.
  decode.onnx  token int64 [1, 1], past_keys, past_values float32 [L, 1, kv_heads, P, dim_head]
               ->  logits [1, 1, 256], present_keys, present_values [L, 1, kv_heads, P + 1, dim_head]
               (P dynamic, 0..255; the token is at position P). One decoding step with the cache as
               explicit inputs and outputs, as decoder exports for onnxruntime usually are: a small
               wrapper over the model's own modules (token embedding, RMSNorms, to_q/to_k/to_v/to_out,
               feed-forwards, final norm, to_logits, rotary embedding and x-transformers'
               apply_rotary_pos_emb). The keys are cached after the rotation (x-transformers caches
               them before and rotates the whole cache at every step: the same values).

The weights are the safetensors' float16 values widened to float32 (exact), as picoformer computes
them. Run with the reference environment plus onnx and onnxruntime:

    VENV=/tmp/ort-venv bash tools/setup_reference.sh
    /tmp/ort-venv/bin/pip install onnx onnxruntime
    /tmp/ort-venv/bin/python tools/peers/ort_export.py --out-dir target/peers/ort

The check: the full graph on the first 128 and 256 bytes of models/demo.heldout.txt (and a short
prompt), and the decode graph stepped from an empty cache through 256 tokens (so with caches of
0..255 positions), each against the PyTorch full forward of the same tokens (the logits of every
position); the largest absolute difference must be below --tol (default 1e-4). Writes
<out-dir>/export.json with the versions and the differences.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import version

import numpy as np
import torch
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_model():
    from safetensors.torch import load_file
    from x_transformers import Decoder, TransformerWrapper

    with open(os.path.join(REPO, "models", "demo.json")) as f:
        cfg = json.load(f)
    model = TransformerWrapper(attn_layers=Decoder(**cfg["decoder"]), **cfg["wrapper"])
    state = {k: v.float() for k, v in load_file(os.path.join(REPO, "models", "demo.safetensors")).items()}
    model.load_state_dict(state)
    return model.eval(), cfg


class Full(nn.Module):
    """tokens [1, T] -> logits [1, T, num_tokens]: the TransformerWrapper's forward."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        return self.model(tokens)


class DecodeStep(nn.Module):
    """One token after a cache of P positions, through the model's own modules."""

    def __init__(self, model):
        super().__init__()
        from x_transformers.x_transformers import apply_rotary_pos_emb

        self.apply_rotary = apply_rotary_pos_emb
        self.model = model
        layers = model.attn_layers
        self.types = list(layers.layer_types)
        attn = [block for t, (_, block, _) in zip(self.types, layers.layers) if t == "a"]
        self.heads, self.kv_heads = attn[0].heads, attn[0].kv_heads
        self.dim_head = attn[0].to_k.out_features // self.kv_heads
        self.scale = self.dim_head ** -0.5
        # What this wrapper computes: checked against the model's construction.
        assert type(model.pos_emb).__name__ == "always" and model.pos_emb.val == 0   # no absolute positions
        assert type(model.post_emb_norm).__name__ == "Identity" and type(model.project_emb).__name__ == "Identity"
        for t, (norms, block, residual) in zip(self.types, layers.layers):
            assert t in ("a", "f") and norms[1] is None and norms[2] is None
            assert type(residual).__name__ == "Residual" and residual.residual_scale is None
            assert residual.scale_residual_constant == 1
        assert layers.rotary_pos_emb is not None and layers.rotary_pos_emb.scale is None

    def forward(self, token, past_keys, past_values):
        m, layers = self.model, self.model.attn_layers
        p = past_keys.shape[3]
        x = m.token_emb(token)                                          # [1, 1, dim]
        pos = torch.arange(p, p + 1, device=token.device)
        freqs, _ = layers.rotary_pos_emb(pos)                           # [1, 1, rot_dim]
        new_k, new_v = [], []
        li = 0
        for t, (norms, block, _) in zip(self.types, layers.layers):
            h = norms[0](x)
            if t == "f":
                x = x + block(h)
                continue
            q = block.to_q(h).view(1, 1, self.heads, self.dim_head).transpose(1, 2)       # [1, H, 1, d]
            k = block.to_k(h).view(1, 1, self.kv_heads, self.dim_head).transpose(1, 2)    # [1, KV, 1, d]
            v = block.to_v(h).view(1, 1, self.kv_heads, self.dim_head).transpose(1, 2)
            q = self.apply_rotary(q, freqs)
            k = self.apply_rotary(k, freqs)
            k = torch.cat((past_keys[li], k), dim=2)                    # [1, KV, P + 1, d]
            v = torch.cat((past_values[li], v), dim=2)
            new_k.append(k)
            new_v.append(v)
            li += 1
            # query head h uses key/value head h % kv_heads (x-transformers' Attend repeats them
            # 'b kvh n d -> b (r kvh) n d')
            g = self.heads // self.kv_heads
            qg = q.reshape(1, g, self.kv_heads, self.dim_head).transpose(1, 2)   # [1, KV, g, d]
            s = torch.matmul(qg, k.transpose(-1, -2)) * self.scale      # [1, KV, g, P + 1]
            a = torch.softmax(s, dim=-1)
            o = torch.matmul(a, v).transpose(1, 2).reshape(1, self.heads * self.dim_head)
            x = x + block.to_out(o).view(1, 1, -1)
        x = layers.final_norm(x)
        return m.to_logits(x), torch.stack(new_k), torch.stack(new_v)


def heldout_tokens(n: int) -> list[int]:
    with open(os.path.join(REPO, "models", "demo.heldout.txt"), "rb") as f:
        return list(f.read()[:n])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=os.path.join(REPO, "target", "peers", "ort"))
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(0)
    model, cfg = load_model()
    step = DecodeStep(model).eval()
    L = sum(1 for t in step.types if t == "a")
    kvh, dh = step.kv_heads, step.dim_head
    max_len = cfg["wrapper"]["max_seq_len"]

    full_path = os.path.join(args.out_dir, "full.onnx")
    decode_path = os.path.join(args.out_dir, "decode.onnx")
    with torch.no_grad():
        torch.onnx.export(Full(model), (torch.tensor([heldout_tokens(16)]),), full_path, dynamo=False,
                          external_data=False, opset_version=args.opset, input_names=["tokens"],
                          output_names=["logits"], dynamic_axes={"tokens": {1: "T"}, "logits": {1: "T"}})
        # Distinct example tensors for the past keys and values (a shared one lets the exporter merge
        # the two inputs), of a length the tracer cannot mistake for a constant.
        pk = torch.randn(L, 1, kvh, 5, dh)
        pv = torch.randn(L, 1, kvh, 5, dh) + 1.0
        torch.onnx.export(step, (torch.tensor([[65]]), pk, pv), decode_path, dynamo=False,
                          external_data=False, opset_version=args.opset,
                          input_names=["token", "past_keys", "past_values"],
                          output_names=["logits", "present_keys", "present_values"],
                          dynamic_axes={"past_keys": {3: "P"}, "past_values": {3: "P"},
                                        "present_keys": {3: "P1"}, "present_values": {3: "P1"}})

    import onnx
    import onnxruntime as ort

    for path in (full_path, decode_path):
        onnx.checker.check_model(onnx.load(path))
        names = [i.name for i in onnx.load(path).graph.input]
        print(f"{os.path.relpath(path)}: inputs {names}, {os.path.getsize(path)} bytes")

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    full = ort.InferenceSession(full_path, so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(decode_path, so, providers=["CPUExecutionProvider"])

    report = {"torch": torch.__version__, "x_transformers": version("x-transformers"), "onnx": onnx.__version__,
              "onnxruntime_python": ort.__version__, "opset": args.opset, "tol": args.tol, "checks": {}}
    worst = 0.0

    def record(name, a, b):
        nonlocal worst
        d = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
        report["checks"][name] = d
        worst = max(worst, d)
        print(f"  {name}: max |diff| {d:.3g}")

    toks = heldout_tokens(max_len)
    with torch.no_grad():
        ref = model(torch.tensor([toks])).numpy()[0]                    # [256, 256] every position
        for n in (7, 128, max_len):
            # causal: the first n positions of the 256-token forward are the n-token forward
            ref_n = model(torch.tensor([toks[:n]])).numpy()[0]
            record(f"torch full forward T={n} vs torch T={max_len} rows", ref_n, ref[:n])
            out = full.run(None, {"tokens": np.array([toks[:n]], dtype=np.int64)})[0][0]
            record(f"onnx full T={n} vs torch", out, ref_n)

        # torch decode wrapper, then the onnx decode graph, from an empty cache through 256 tokens
        k = torch.zeros(L, 1, kvh, 0, dh)
        v = torch.zeros(L, 1, kvh, 0, dh)
        ok = np.zeros((L, 1, kvh, 0, dh), np.float32)
        ov = np.zeros((L, 1, kvh, 0, dh), np.float32)
        t_rows, o_rows = [], []
        for t in toks:
            lg, k, v = step(torch.tensor([[t]]), k, v)
            t_rows.append(lg.numpy()[0, 0])
            lo, ok, ov = dec.run(None, {"token": np.array([[t]], np.int64), "past_keys": ok, "past_values": ov})
            o_rows.append(lo[0, 0])
        record("torch decode wrapper (P=0..255) vs torch full forward", np.stack(t_rows), ref)
        record("onnx decode (P=0..255) vs torch full forward", np.stack(o_rows), ref)
        record("onnx decode present_keys vs torch decode wrapper", ok, k.numpy())
        record("onnx decode present_values vs torch decode wrapper", ov, v.numpy())
    report["max_abs_diff"] = worst
    with open(os.path.join(args.out_dir, "export.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    if worst > args.tol:
        print(f"FAIL: largest difference {worst:.3g} > {args.tol}", file=sys.stderr)
        return 1
    print(f"ok: largest difference {worst:.3g} <= {args.tol}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
