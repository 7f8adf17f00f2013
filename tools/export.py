"""Export an x-transformers decoder to one picoformer safetensors file.

After training, add (kwargs = exactly what you passed to the constructors):

    from export import export   # tools/ of picoformer on sys.path
    dec = dict(dim=512, depth=6, heads=8, rotary_pos_emb=True)
    wrap = dict(num_tokens=256, max_seq_len=1024)
    model = TransformerWrapper(attn_layers=Decoder(**dec), **wrap)   # ... train ...
    export(model, {"decoder": dec, "wrapper": wrap}, "model.safetensors", dtype="float16")

For a raw Decoder pass `{"decoder": dec, "wrapper": None}`.

The file holds exactly `module.state_dict()` (cast to `dtype`, except every
`rotary_pos_emb.inv_freq`, which stays float32) and the metadata
`x_transformers` (JSON of the kwargs), `x_transformers_version` and
`format` = "picoformer-1". Every tensor is aligned in the file to its element
size (the data section starts at a multiple of 64), so it can be viewed in place,
and every tensor whose byte size is a multiple of 64 (the matrices of usual
widths) starts on a 64-byte cache line: place the file at a 64-aligned address
and the kernels' row loads never span two lines.

Command line (a checkpoint saved with `torch.save(model.state_dict(), path)`
plus a JSON file `{"decoder": {...}, "wrapper": {...} or null}`):

    python tools/export.py --config config.json --weights model.pt --out model.safetensors --dtype float16
    python tools/export.py --check model.safetensors
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import re
import struct
import sys
from importlib.metadata import version as _pkg_version

FORMAT = "picoformer-1"

_DTYPES = {
    # name -> (safetensors dtype tag, element size)
    "float32": ("F32", 4),
    "float16": ("F16", 2),
    "bfloat16": ("BF16", 2),
}
_ALIASES = {"f32": "float32", "fp32": "float32", "f16": "float16", "fp16": "float16",
            "half": "float16", "bf16": "bfloat16"}

# Decoder kwargs that picoformer implements (value checks below).
DECODER_KWARGS = frozenset({
    "dim", "depth", "heads", "causal",
    "attn_dim_head", "attn_kv_heads", "attn_one_kv_head", "attn_flash",
    "cross_attend", "cross_attn_dim_context",
    "rotary_pos_emb", "rotary_emb_dim", "rotary_base_rescale_factor", "rotary_interpolation_factor",
    "use_rmsnorm", "use_simple_rmsnorm",
    "ff_mult", "ff_glu", "ff_swish", "ff_relu_squared", "ff_no_bias",
    # no effect at inference
    "attn_dropout", "ff_dropout", "layer_dropout",
    # only prints warnings
    "verbose",
})

# TransformerWrapper kwargs that picoformer implements (besides attn_layers).
WRAPPER_KWARGS = frozenset({
    "num_tokens", "max_seq_len", "use_abs_pos_emb", "tie_embedding", "emb_dropout",
})

# state_dict keys of the supported layout (decoder keys; a wrapper prefixes them with `attn_layers.`).
_DECODER_KEY_RE = re.compile(
    r"^(?:"
    r"layers\.\d+\.0\.0\.(?:gamma|g)"                  # pre-norm (LayerNorm gamma / RMSNorm g)
    r"|layers\.\d+\.1\.to_(?:q|k|v|out)\.weight"       # attention projections
    r"|layers\.\d+\.1\.ff\.0\.0\.(?:weight|bias)"      # FF input linear
    r"|layers\.\d+\.1\.ff\.0\.proj\.(?:weight|bias)"   # GLU input projection
    r"|layers\.\d+\.1\.ff\.2\.(?:weight|bias)"         # FF output linear
    r"|rotary_pos_emb\.inv_freq"
    r"|final_norm\.(?:gamma|g)"
    r")$"
)
_WRAPPER_KEY_RE = re.compile(r"^(?:token_emb\.emb\.weight|pos_emb\.emb\.weight|to_logits\.weight)$")

INV_FREQ_SUFFIX = "rotary_pos_emb.inv_freq"


# ---------------------------------------------------------------------------
# safetensors writing / checking (written by hand to control alignment)
# ---------------------------------------------------------------------------

def _tensor_bytes(t) -> bytes:
    """Raw little-endian bytes of a CPU torch tensor."""
    import torch

    if sys.byteorder != "little":
        raise RuntimeError("export.py writes little-endian data and needs a little-endian host")
    t = t.detach().to("cpu").contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


_TORCH_TAGS = None


def _torch_tag(t):
    global _TORCH_TAGS
    import torch

    if _TORCH_TAGS is None:
        _TORCH_TAGS = {
            torch.float64: ("F64", 8), torch.float32: ("F32", 4), torch.float16: ("F16", 2),
            torch.bfloat16: ("BF16", 2), torch.int64: ("I64", 8), torch.int32: ("I32", 4),
            torch.int16: ("I16", 2), torch.int8: ("I8", 1), torch.uint8: ("U8", 1), torch.bool: ("BOOL", 1),
        }
    if t.dtype not in _TORCH_TAGS:
        raise ValueError(f"unsupported tensor dtype {t.dtype}")
    return _TORCH_TAGS[t.dtype]


def write_safetensors(tensors: dict, path: str, metadata: dict | None = None) -> None:
    """Write torch tensors as a safetensors file whose data is aligned.

    The header is padded with spaces so the data section starts at a multiple
    of 64. Tensors are ordered by element size (largest first) and, within one
    element size, those whose byte size is a multiple of 64 come first, then
    those of a multiple of 8; there are no holes, so every tensor starts at a
    multiple of its element size, and at a multiple of 64 up to the first tensor
    whose byte size is not (a cache line: vector loads of its rows then never
    span two lines).
    """
    entries = []
    for i, (name, t) in enumerate(tensors.items()):
        tag, size = _torch_tag(t)
        data = _tensor_bytes(t)
        entries.append((name, tag, size, list(t.shape), data, i))
    entries.sort(key=lambda e: (-e[2], len(e[4]) % 64 != 0, len(e[4]) % 8 != 0, e[5]))

    header = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("safetensors metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, tag, size, shape, data, _ in entries:
        header[name] = {"dtype": tag, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)

    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((-(8 + len(hbytes))) % 64)  # 8 + N is then a multiple of 64
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for e in entries:
            f.write(e[4])


_ELEM_SIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4,
              "F16": 2, "BF16": 2, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def check_alignment(path: str) -> dict:
    """Re-read a safetensors file and assert the layout guarantees.

    Returns the parsed header. Raises AssertionError on any violation.
    """
    with open(path, "rb") as f:
        raw = f.read()
    assert len(raw) >= 8, "file too short"
    (n,) = struct.unpack("<Q", raw[:8])
    data_start = 8 + n
    assert data_start % 8 == 0, f"data section starts at {data_start}, not a multiple of 8"
    header = json.loads(raw[8:data_start].decode("utf-8"))
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        size = _ELEM_SIZE[info["dtype"]]
        start, end = info["data_offsets"]
        numel = 1
        for s in info["shape"]:
            numel *= s
        assert end - start == numel * size, f"{name}: byte size does not match its shape"
        assert (data_start + start) % size == 0, f"{name}: file offset {data_start + start} not a multiple of {size}"
        spans.append((start, end, name))
    spans.sort()
    pos = 0
    for start, end, name in spans:
        assert start == pos, f"{name}: hole or overlap at data offset {pos}..{start}"
        pos = end
    assert data_start + pos == len(raw), "trailing bytes after the last tensor"
    return header


# ---------------------------------------------------------------------------
# supported-subset check
# ---------------------------------------------------------------------------

def _param_default(fn, name):
    p = inspect.signature(fn).parameters.get(name)
    if p is None or p.default is inspect.Parameter.empty:
        return inspect.Parameter.empty
    return p.default


def _decoder_default(name):
    from x_transformers.x_transformers import AttentionLayers, Attention, FeedForward

    d = _param_default(AttentionLayers.__init__, name)
    if d is not inspect.Parameter.empty:
        return d
    for prefix, fn in (("cross_attn_", Attention.__init__), ("attn_", Attention.__init__), ("ff_", FeedForward.__init__)):
        if name.startswith(prefix):
            return _param_default(fn, name[len(prefix):])
    return inspect.Parameter.empty


def _wrapper_default(name):
    from x_transformers import TransformerWrapper

    return _param_default(TransformerWrapper.__init__, name)


def _is_off(value, default):
    """An unsupported kwarg is tolerated only when it is False/None *and* that is its default."""
    return (value is False or value is None) and default is value


def _check_kwargs(dec: dict, wrap: dict | None) -> None:
    if not isinstance(dec, dict):
        raise ValueError("kwargs['decoder'] must be a dict of Decoder kwargs")
    for k, v in dec.items():
        if k in DECODER_KWARGS:
            continue
        if k == "emb_dropout":
            raise ValueError("Decoder kwarg 'emb_dropout' does not exist in x-transformers "
                             f"{_pkg_version('x-transformers')}: it is a TransformerWrapper kwarg")
        if not _is_off(v, _decoder_default(k)):
            raise ValueError(f"unsupported Decoder option {k}={v!r} (picoformer supports: {', '.join(sorted(DECODER_KWARGS))}; "
                             "other options only at their default False/None)")
    if "causal" in dec and dec["causal"] is not True:
        raise ValueError(f"unsupported Decoder option causal={dec['causal']!r}: only causal decoders are supported")
    for k in ("dim", "depth"):
        if k not in dec:
            raise ValueError(f"Decoder kwarg '{k}' is required")
    if dec.get("rotary_pos_emb"):
        r = dec.get("rotary_emb_dim")
        if r is not None and (r < 2 or r % 2):
            raise ValueError(f"unsupported Decoder option rotary_emb_dim={r!r}: must be even and >= 2")

    if wrap is None:
        return
    if not isinstance(wrap, dict):
        raise ValueError("kwargs['wrapper'] must be a dict of TransformerWrapper kwargs or None")
    if "attn_layers" in wrap:
        raise ValueError("kwargs['wrapper'] must not contain 'attn_layers': put the Decoder kwargs in kwargs['decoder']")
    for k, v in wrap.items():
        if k in WRAPPER_KWARGS:
            continue
        if not _is_off(v, _wrapper_default(k)):
            raise ValueError(f"unsupported TransformerWrapper option {k}={v!r} (picoformer supports: "
                             f"{', '.join(sorted(WRAPPER_KWARGS))}; other options only at their default False/None)")
    for k in ("num_tokens", "max_seq_len"):
        if k not in wrap:
            raise ValueError(f"TransformerWrapper kwarg '{k}' is required")


def _check_keys(keys, wrapped: bool) -> None:
    for key in keys:
        if wrapped:
            if _WRAPPER_KEY_RE.match(key):
                continue
            if key.startswith("attn_layers.") and _DECODER_KEY_RE.match(key[len("attn_layers."):]):
                continue
        elif _DECODER_KEY_RE.match(key):
            continue
        raise ValueError(f"state_dict key {key!r} is outside the layout picoformer supports")


# ---------------------------------------------------------------------------
# building and exporting
# ---------------------------------------------------------------------------

def build_module(kwargs: dict):
    """Build a fresh x-transformers module (eval mode) from `{"decoder": ..., "wrapper": ...}`."""
    from x_transformers import Decoder, TransformerWrapper

    dec = dict(kwargs["decoder"])
    if dec.pop("causal", True) is not True:
        raise ValueError("only causal decoders are supported")
    decoder = Decoder(**dec)
    wrap = kwargs.get("wrapper")
    module = decoder if wrap is None else TransformerWrapper(attn_layers=decoder, **wrap)
    return module.eval()


def _probe_inputs(kwargs: dict, device):
    import torch

    g = torch.Generator().manual_seed(1234)
    dec = kwargs["decoder"]
    extra = {}
    if dec.get("cross_attend"):
        dctx = dec.get("cross_attn_dim_context") or dec["dim"]
        extra["context"] = torch.randn(1, 2, dctx, generator=g).to(device)
    wrap = kwargs.get("wrapper")
    if wrap is None:
        x = torch.randn(1, 3, dec["dim"], generator=g)
    else:
        n = min(3, wrap["max_seq_len"]) if wrap["max_seq_len"] > 0 else 3
        x = torch.randint(0, wrap["num_tokens"], (1, n), generator=g)
    return x.to(device), extra


def _verify_module_matches(module, kwargs: dict, state: dict) -> None:
    """Rebuild from kwargs, load the module's weights, and compare outputs."""
    import torch

    fresh = build_module(kwargs)
    fresh_sd = fresh.state_dict()
    if set(fresh_sd) != set(state):
        missing = sorted(set(fresh_sd) - set(state))[:5]
        extra = sorted(set(state) - set(fresh_sd))[:5]
        raise ValueError(f"kwargs do not describe the module: keys only from kwargs {missing}, only in module {extra}")
    for k, v in fresh_sd.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise ValueError(f"kwargs do not describe the module: {k} is {tuple(state[k].shape)} in the module, "
                             f"{tuple(v.shape)} from kwargs")
    fresh.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in state.items()})

    ref = copy.deepcopy(module).to("cpu", torch.float32).eval()
    x, extra = _probe_inputs(kwargs, "cpu")
    with torch.no_grad():
        a = ref(x, **extra)
        b = fresh(x, **extra)
    err = (a - b).abs().max().item()
    if not err <= 1e-5 * (1.0 + a.abs().max().item()):
        raise ValueError(f"kwargs do not describe the module: outputs differ by {err:.3g} "
                         "(an option that leaves the weights' shapes unchanged differs)")


def export(module, kwargs: dict, path: str, dtype: str = "float32", verify: bool = True) -> dict:
    """Write `module` (x-transformers Decoder or TransformerWrapper) to `path`.

    kwargs: `{"decoder": {...Decoder kwargs...}, "wrapper": {...TransformerWrapper kwargs
    without attn_layers...} or None}`. dtype: "float32", "float16" or "bfloat16".
    verify: rebuild the module from kwargs and check it computes the same thing.
    Returns the header written (tensor entries plus `__metadata__`).
    """
    import torch
    from x_transformers import TransformerWrapper
    from x_transformers.x_transformers import AttentionLayers

    dtype = _ALIASES.get(dtype, dtype)
    if dtype not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}: use float32, float16 or bfloat16")
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]

    if not isinstance(kwargs, dict) or "decoder" not in kwargs:
        raise ValueError('kwargs must be {"decoder": {...}, "wrapper": {...} or None}')
    unknown = set(kwargs) - {"decoder", "wrapper"}
    if unknown:
        raise ValueError(f"unexpected top-level kwargs keys {sorted(unknown)}")
    dec_kwargs = kwargs["decoder"]
    wrap_kwargs = kwargs.get("wrapper")

    if isinstance(module, TransformerWrapper):
        if wrap_kwargs is None:
            raise ValueError("module is a TransformerWrapper but kwargs['wrapper'] is None")
        layers = module.attn_layers
    elif isinstance(module, AttentionLayers):
        if wrap_kwargs is not None:
            raise ValueError("module is a Decoder but kwargs['wrapper'] is not None")
        layers = module
    else:
        raise ValueError(f"unsupported module type {type(module).__name__}: expected Decoder or TransformerWrapper")
    if not isinstance(layers, AttentionLayers) or not layers.causal:
        raise ValueError(f"unsupported attention layers {type(layers).__name__}: only a causal Decoder is supported")

    _check_kwargs(dec_kwargs, wrap_kwargs)
    try:
        config_json = json.dumps({"decoder": dec_kwargs, "wrapper": wrap_kwargs}, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"kwargs must be JSON-serialisable: {e}") from None
    config = json.loads(config_json)  # tuples -> lists, exactly what is stored

    state = module.state_dict()
    _check_keys(state.keys(), wrapped=wrap_kwargs is not None)
    if verify:
        _verify_module_matches(module, config, state)

    tensors = {}
    for k, v in state.items():
        v = v.detach().to("cpu")
        if not v.is_floating_point():
            raise ValueError(f"state_dict entry {k} has non-float dtype {v.dtype}")
        tensors[k] = v.to(torch.float32) if k.endswith(INV_FREQ_SUFFIX) else v.to(torch_dtype)

    metadata = {
        "x_transformers": config_json,
        "x_transformers_version": _pkg_version("x-transformers"),
        "format": FORMAT,
    }
    write_safetensors(tensors, path, metadata)

    header = check_alignment(path)
    _check_roundtrip(path, tensors)
    return header


def _check_roundtrip(path: str, tensors: dict) -> None:
    import numpy as np
    import torch
    from safetensors.numpy import load_file as np_load
    from safetensors.torch import load_file as torch_load

    loaded = torch_load(path)
    assert set(loaded) == set(tensors), "tensor names changed on reload"
    for k, t in tensors.items():
        assert loaded[k].dtype == t.dtype and torch.equal(loaded[k], t), f"{k} changed on reload"
    if not any(t.dtype == torch.bfloat16 for t in tensors.values()):  # numpy has no bfloat16
        arrays = np_load(path)
        for k, t in tensors.items():
            assert np.array_equal(arrays[k], t.numpy()), f"{k} differs when loaded with safetensors.numpy"


def read_config(path: str) -> tuple[dict, dict]:
    """Return (metadata, config) of a picoformer file."""
    header = check_alignment(path)
    meta = header.get("__metadata__", {})
    return meta, json.loads(meta["x_transformers"])


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Export an x-transformers Decoder / TransformerWrapper checkpoint to a picoformer safetensors file.",
        epilog='config JSON: {"decoder": {...Decoder kwargs...}, "wrapper": {...TransformerWrapper kwargs...} or null}',
    )
    ap.add_argument("--config", help="JSON file with the constructor kwargs")
    ap.add_argument("--weights", help="checkpoint from torch.save(model.state_dict()) (.pt) or a .safetensors state_dict")
    ap.add_argument("--state-key", default=None, help="take the state_dict from this key of the checkpoint dict (e.g. 'model')")
    ap.add_argument("--out", help="output .safetensors path")
    ap.add_argument("--dtype", default="float32", choices=sorted(set(_DTYPES) | set(_ALIASES)))
    ap.add_argument("--no-verify", action="store_true", help="skip rebuilding the module to compare outputs")
    ap.add_argument("--check", metavar="FILE", help="only check the alignment of FILE and print its metadata")
    args = ap.parse_args(argv)

    if args.check:
        meta, config = read_config(args.check)
        print(json.dumps({"metadata": {k: v for k, v in meta.items() if k != "x_transformers"},
                          "config": config}, indent=2))
        print(f"{args.check}: alignment OK")
        return 0
    if not (args.config and args.weights and args.out):
        ap.error("--config, --weights and --out are required (or use --check FILE)")

    import torch

    with open(args.config) as f:
        kwargs = json.load(f)
    if args.weights.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(args.weights)
    else:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
    if args.state_key:
        state = state[args.state_key]
    module = build_module(kwargs)
    module.load_state_dict(state)
    header = export(module, kwargs, args.out, dtype=args.dtype, verify=not args.no_verify)
    n = sum(1 for k in header if k != "__metadata__")
    print(f"wrote {args.out}: {n} tensors, dtype {args.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
