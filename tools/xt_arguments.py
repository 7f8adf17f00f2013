"""Generate the table of every x-transformers argument picoformer's loader and exporter decide on.

    .venv/bin/python tools/xt_arguments.py          # rewrite the three outputs
    .venv/bin/python tools/xt_arguments.py --check  # exit 1 if a committed output is stale

Read from x-transformers' own signatures and source (the installed version, pinned to 2.31.10 by
tools/setup_reference.sh), never typed by hand:

* `AttentionLayers.__init__`: every named parameter (group `layers`);
* `Decoder.__init__`: the values it forces (`causal = True`; group `decoder`);
* `Attention.__init__` as `attn_<name>` (group `attn`) and `cross_attn_<name>` (group
  `cross_attn`), and `FeedForward.__init__` as `ff_<name>` (group `ff`): `AttentionLayers` takes
  them through `**kwargs` and splits them with `groupby_prefix_and_trim('ff_' | 'attn_' |
  'cross_attn_', kwargs)`. A parameter that `AttentionLayers` passes to `Attention(...)` /
  `FeedForward(...)` itself (found by reading those calls in its source) cannot be given that way
  and is left out, except names it pops from the prefixed group first (`cross_attn_inverted_attention`).
  A prefixed name equal to a named `AttentionLayers` parameter (`cross_attn_tokens_dropout`)
  binds to that parameter and is listed once, in `layers`;
* `TransformerWrapper.__init__` (group `wrapper`), without `attn_layers` (the Decoder itself);
* `ContinuousTransformerWrapper.__init__` (group `continuous`), without `attn_layers`;
* `XTransformer.__init__` (group `xtransformer`): its named parameters, and the wrapper arguments it
  takes out of its `enc_` and `dec_` groups (`groupby_prefix_and_trim`) before passing the rest to
  `Encoder(dim=dim, ...)` / `Decoder(dim=dim, cross_attend=True, ...)`: found by reading its source,
  `pick_and_pop([...], enc_kwargs)` (required) and `enc_kwargs.pop('name', default)`, listed as
  `enc_<name>` / `dec_<name>`. Every other `enc_<x>` / `dec_<x>` is argument `<x>` of the Encoder /
  Decoder, in the groups above.

Outputs (both committed):
* src/options/xt_args.rs: `pub const ARGS: &[Arg]` for the Rust loader (which classifies every
  row by hand in src/options/classes.rs; `cargo test --test options` writes that classification
  with these rows to tools/options.json for tools/export.py and to docs/options.md, and fails
  when a committed copy is stale);
* docs/x-transformers-arguments.md: the same rows for people.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import sys
import textwrap
from importlib.metadata import version as pkg_version

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUST_OUT = os.path.join(REPO, "src", "options", "xt_args.rs")
MD_OUT = os.path.join(REPO, "docs", "x-transformers-arguments.md")

EMPTY = inspect.Parameter.empty


def _calls(fn, callee):
    """Keyword names of every call `callee(...)` in the source of `fn`, in order."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == callee:
            out.append((node.lineno, [k.arg for k in node.keywords if k.arg is not None]))
    return [kw for _, kw in sorted(out)]


def _popped(fn, dict_name):
    """Names popped as `dict_name.pop('name', ...)` in the source of `fn`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    out = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "pop"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == dict_name
                and node.args and isinstance(node.args[0], ast.Constant)):
            out.add(node.args[0].value)
    return out


def _forced(cls):
    """Keyword constants `cls.__init__` passes to `super().__init__(...)`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__":
            for k in node.keywords:
                if k.arg is not None and isinstance(k.value, ast.Constant):
                    out[k.arg] = k.value.value
    return out


def _prefix_picks(fn):
    """XTransformer's wrapper arguments: `(prefix, name, default)` for every
    `pick_and_pop([names], <p>_kwargs)` (required: no default) and `<p>_kwargs.pop('name', default)`
    in the source of `fn`, where `<p>_kwargs` is a group made by `groupby_prefix_and_trim('<p>_', ...)`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    groups = {}  # dict name -> prefix
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id == "groupby_prefix_and_trim"
                and isinstance(node.value.args[0], ast.Constant) and isinstance(node.targets[0], ast.Tuple)):
            groups[node.targets[0].elts[0].id] = node.value.args[0].value
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "pick_and_pop" and len(node.args) == 2:
            names, d = node.args
            if isinstance(d, ast.Name) and d.id in groups:
                for e in names.elts:
                    out.append((node.lineno, e.col_offset, groups[d.id], e.value, EMPTY))
        elif (isinstance(f, ast.Attribute) and f.attr == "pop" and isinstance(f.value, ast.Name)
              and f.value.id in groups and node.args and isinstance(node.args[0], ast.Constant)):
            default = ast.literal_eval(node.args[1]) if len(node.args) > 1 else EMPTY
            out.append((node.lineno, node.col_offset, groups[f.value.id], node.args[0].value, default))
    return [(p, n, d) for _, _, p, n, d in sorted(out, key=lambda r: (r[0], r[1]))]


def _params(fn):
    return [(n, p.default) for n, p in inspect.signature(fn).parameters.items()
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _default(v):
    """(kind, value, python repr) of a default."""
    if v is EMPTY:
        return ("required", None, "required")
    if v is None:
        return ("none", None, "None")
    if isinstance(v, bool):
        return ("bool", v, repr(v))
    if isinstance(v, int):
        return ("int", v, repr(v))
    if isinstance(v, float):
        return ("float", v, repr(v))
    if isinstance(v, str):
        return ("str", v, repr(v))
    if isinstance(v, dict) and not v:
        return ("empty_dict", None, "{}")
    return ("other", None, repr(v))


def collect():
    from x_transformers import ContinuousTransformerWrapper, Decoder, TransformerWrapper, XTransformer
    from x_transformers.x_transformers import Attention, AttentionLayers, FeedForward

    init = AttentionLayers.__init__
    layer_params = _params(init)
    layer_names = {n for n, _ in layer_params}
    attn_calls = _calls(init, "Attention")  # 'a' then 'c', in source order
    ff_calls = _calls(init, "FeedForward")
    assert len(attn_calls) == 2 and len(ff_calls) == 1, (attn_calls, ff_calls)
    self_explicit, cross_explicit = set(attn_calls[0]), set(attn_calls[1])
    ff_explicit = set(ff_calls[0])
    cross_popped = _popped(init, "cross_attn_kwargs")
    forced = _forced(Decoder)
    assert forced == {"causal": True}, forced

    rows = []

    def add(name, group, default, source):
        kind, value, text = _default(default)
        rows.append(dict(name=name, group=group, kind=kind, value=value, python=text, source=source))

    for n, d in layer_params:
        if n in forced:
            add(n, "decoder", forced[n], "Decoder.__init__ (forced)")
        else:
            add(n, "layers", d, "AttentionLayers.__init__")
    for prefix, group, fn, explicit, popped, src in (
        ("attn_", "attn", Attention.__init__, self_explicit, set(), "Attention.__init__"),
        ("cross_attn_", "cross_attn", Attention.__init__, cross_explicit, cross_popped, "Attention.__init__"),
        ("ff_", "ff", FeedForward.__init__, ff_explicit, set(), "FeedForward.__init__"),
    ):
        for n, d in _params(fn):
            if n == "dim" or (n in explicit and n not in popped):
                continue
            name = prefix + n
            if name in layer_names:
                continue  # binds to the AttentionLayers parameter of that name
            add(name, group, d, f"{src} `{n}`")
    for n, d in _params(TransformerWrapper.__init__):
        if n == "attn_layers":
            continue
        add(n, "wrapper", d, "TransformerWrapper.__init__")
    for n, d in _params(ContinuousTransformerWrapper.__init__):
        if n == "attn_layers":
            continue
        add(n, "continuous", d, "ContinuousTransformerWrapper.__init__")
    for n, d in _params(XTransformer.__init__):
        add(n, "xtransformer", d, "XTransformer.__init__")
    picks = _prefix_picks(XTransformer.__init__)
    assert {p for p, _, _ in picks} == {"enc_", "dec_"}, picks
    for p, n, d in picks:
        how = "pick_and_pop" if d is EMPTY else "pop"
        add(p + n, "xtransformer", d, f"XTransformer.__init__ (`{p}kwargs` {how})")
    names = [(TABLE[r["group"]], r["name"]) for r in rows]
    assert len(set(names)) == len(names), "duplicate argument"
    return rows


GROUP_RUST = {"decoder": "Decoder", "layers": "Layers", "attn": "Attn", "cross_attn": "CrossAttn",
              "ff": "Ff", "wrapper": "Wrapper", "continuous": "Continuous", "xtransformer": "XTransformer"}
# The constructor whose arguments a group belongs to: a name is unique within one.
TABLE = {"decoder": "layers", "layers": "layers", "attn": "layers", "cross_attn": "layers", "ff": "layers",
         "wrapper": "wrapper", "continuous": "continuous", "xtransformer": "xtransformer"}


def _rust_default(r):
    k, v = r["kind"], r["value"]
    if k == "required":
        return "PyDefault::Required"
    if k == "none":
        return "PyDefault::None"
    if k == "bool":
        return f"PyDefault::Bool({'true' if v else 'false'})"
    if k == "int":
        return f"PyDefault::Int({v})"
    if k == "float":
        s = repr(v)
        return f"PyDefault::Float({s if ('.' in s or 'e' in s) else s + '.0'})"
    if k == "str":
        return f"PyDefault::Str({json.dumps(v)})"
    if k == "empty_dict":
        return "PyDefault::EmptyDict"
    return f"PyDefault::Other({json.dumps(r['python'])})"


def render_rust(rows, xt_version):
    out = [
        f"// generated by tools/xt_arguments.py from x-transformers {xt_version}, do not edit",
        "",
        "//! Every argument of x-transformers' `Decoder` (`AttentionLayers` with its `attn_`, `cross_attn_`",
        "//! and `ff_` groups), `TransformerWrapper`, `ContinuousTransformerWrapper` and `XTransformer` (its",
        "//! own and the wrapper arguments of its `enc_` / `dec_` groups), with its default.",
        "",
        "use super::{Arg, Group, PyDefault};",
        "",
        f"/// The x-transformers version this table was read from.",
        f"pub const XT_VERSION: &str = {json.dumps(xt_version)};",
        "",
        "/// Every argument, in signature order per group.",
        "#[rustfmt::skip] // one line per argument, as generated (`--check` compares the text)",
        "pub const ARGS: &[Arg] = &[",
    ]
    for r in rows:
        out.append(f"    Arg::new({json.dumps(r['name'])}, Group::{GROUP_RUST[r['group']]}, {_rust_default(r)}),")
    out.append("];")
    return "\n".join(out) + "\n"


def render_md(rows, xt_version):
    out = [
        "<!-- generated by tools/xt_arguments.py, do not edit -->",
        f"# x-transformers {xt_version} arguments",
        "",
        "Every argument of `Decoder` (its own, and those of `Attention` and `FeedForward` that it takes with",
        "the prefixes `attn_`, `cross_attn_` and `ff_`), of `TransformerWrapper`, of `ContinuousTransformerWrapper`",
        "and of `XTransformer`, with its default, read from x-transformers' signatures and source by",
        "`tools/xt_arguments.py`. `cross_attn_<x>` overrides `attn_<x>` for cross-attention only; `attn_<x>`",
        "applies to both. `XTransformer` takes the `enc_` / `dec_` rows below for its two `TransformerWrapper`s",
        "and passes every other `enc_<x>` / `dec_<x>` to its `Encoder` / `Decoder` as `<x>`. What picoformer",
        "does with each one is in [options.md](options.md).",
        "",
        f"{len(rows)} arguments.",
        "",
        "| argument | group | default | read from |",
        "|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| `{r['name']}` | {r['group']} | `{r['python']}` | {r['source']} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check that the committed outputs are current")
    args = ap.parse_args(argv)
    try:
        from loguru import logger

        logger.disable("x_transformers")
    except ImportError:
        pass
    xt_version = pkg_version("x-transformers")
    rows = collect()
    outputs = {RUST_OUT: render_rust(rows, xt_version), MD_OUT: render_md(rows, xt_version)}
    stale = []
    for path, text in outputs.items():
        old = open(path).read() if os.path.exists(path) else None
        if old != text:
            stale.append(path)
            if not args.check:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
    if args.check:
        for p in stale:
            print(f"stale: {os.path.relpath(p, REPO)}")
        return 1 if stale else 0
    print(f"{len(rows)} arguments of x-transformers {xt_version}; wrote "
          + ", ".join(os.path.relpath(p, REPO) for p in outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
