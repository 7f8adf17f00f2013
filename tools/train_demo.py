"""Train picoformer's bundled demo model: a byte-level x-transformers decoder on Jane Austen's novels.

Data: the six novels as shipped by Debian's `r-cran-janeaustenr` package (R data of
Julia Silge's CRAN package `janeaustenr`, MIT licensed; the novels themselves are in the
public domain, transcribed by Project Gutenberg). R is not needed: the script reads the
package's lazy-load database (`data/Rdata.rdb`, zlib-compressed XDR serialisation of one
character vector per novel, one element per printed line) with the small reader below.
It looks for the file in this order: `--rdb PATH`, the installed package
(`/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb`), else it runs
`apt-get download r-cran-janeaustenr` into a temporary folder and unpacks the .deb with
`dpkg-deb -x` (no install, no R).

Text: the novels in `austen_books()` order (Sense and Sensibility, Pride and Prejudice,
Mansfield Park, Emma, Northanger Abbey, Persuasion), each printed paragraph unwrapped to one
line (lines joined with a space, paragraphs separated by one "\\n"), encoded as UTF-8 bytes
(the text is ASCII except one pound sign): the vocabulary is the 256 byte values. The last
5% of the bytes (the end of Persuasion) are held out.

Model: TransformerWrapper(num_tokens=256, max_seq_len=256, attn_layers=Decoder(dim=128,
depth=4, heads=4, attn_kv_heads=2, rotary_pos_emb=True, use_rmsnorm=True, ff_glu=True,
ff_swish=True, ff_mult=3, attn_flash=True)); AdamW, warm-up then cosine decay, batches of random 256-byte
windows, fixed seeds. Exported with tools/export.py as float16.

Bits per character (= bits per byte here): the mean of -log2 p(byte | previous bytes of its
window) over non-overlapping windows of `max_seq_len + 1` bytes: the model reads the first
`max_seq_len` bytes of each window and predicts bytes 1..=max_seq_len. That protocol is what
`picoformer bpc` implements, so the two numbers can be compared on the committed sample
`models/demo.heldout.txt` (the first SAMPLE_BYTES of the held-out part, plus one byte).
The torch number for the sample is computed with the float16-rounded weights (what the file
holds); both are written to `models/demo.json`.

Reproduce (about 20 minutes on one CPU thread; `attn_flash=True` uses torch's fused attention,
which trains 1.7x faster on CPU and computes the same function):

    .venv/bin/python tools/train_demo.py              # writes models/demo.{safetensors,json,heldout.txt,tokenizer.json}
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

RDB_INSTALLED = "/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
# austen_books() order
BOOKS = [
    ("sensesensibility", "Sense & Sensibility"),
    ("prideprejudice", "Pride & Prejudice"),
    ("mansfieldpark", "Mansfield Park"),
    ("emma", "Emma"),
    ("northangerabbey", "Northanger Abbey"),
    ("persuasion", "Persuasion"),
]
HELDOUT_FRACTION = 0.05
SAMPLE_BYTES = 8192  # scored bytes of the committed held-out sample (32 windows of 256)

DECODER = dict(dim=128, depth=4, heads=4, attn_kv_heads=2, rotary_pos_emb=True, use_rmsnorm=True,
               ff_glu=True, ff_swish=True, ff_mult=3, attn_flash=True)
WRAPPER = dict(num_tokens=256, max_seq_len=256)


# ---------------------------------------------------------------------------
# data: R lazy-load database reader (character vectors only)
# ---------------------------------------------------------------------------

class _XdrReader:
    """Reads R's XDR serialisation (format version 2 or 3) far enough for character vectors
    and the int vectors / names of the .rdx index."""

    def __init__(self, data: bytes):
        if data[:2] != b"X\n":
            raise ValueError("not an XDR R serialisation")
        self.d, self.p, self.refs = data, 2, []
        version = self.i32()
        self.i32()  # writer R version
        self.i32()  # minimal reader version
        if version == 3:
            n = self.i32()
            self.p += n  # native encoding name

    def i32(self) -> int:
        (v,) = struct.unpack(">i", self.d[self.p:self.p + 4])
        self.p += 4
        return v

    def item(self):
        flags = self.i32()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind == 254:  # R_NilValue
            return None
        if kind == 255:  # REFSXP: a symbol seen before
            return self.refs[(flags >> 8 or self.i32()) - 1]
        if kind == 9:  # CHARSXP
            n = self.i32()
            if n == -1:
                return None
            s = self.d[self.p:self.p + n].decode("utf-8")
            self.p += n
            return s
        if kind in (10, 13):  # LGLSXP, INTSXP
            n = self.i32()
            v = list(struct.unpack(f">{n}i", self.d[self.p:self.p + 4 * n]))
            self.p += 4 * n
        elif kind in (16, 19):  # STRSXP, VECSXP
            v = [self.item() for _ in range(self.i32())]
        elif kind == 2:  # LISTSXP (pairlist: attributes)
            out = {}
            while kind == 2:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else None
                out[tag] = self.item()
                flags = self.i32()
                kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
            assert kind == 254, kind
            return out
        elif kind == 1:  # SYMSXP: remembered for later references
            self.refs.append(self.item())
            return self.refs[-1]
        else:
            raise ValueError(f"unsupported R SEXP type {kind}")
        if has_attr:
            attrs = self.item()
            if isinstance(attrs, dict) and "names" in attrs:
                return dict(zip(attrs["names"], v))
        return v


def _locate_rdb(path: str | None) -> str:
    if path:
        return path
    if os.path.exists(RDB_INSTALLED):
        return RDB_INSTALLED
    tmp = tempfile.mkdtemp(prefix="janeaustenr-")
    print(f"fetching r-cran-janeaustenr into {tmp} (apt-get download, no install)", flush=True)
    subprocess.run(["apt-get", "download", "r-cran-janeaustenr"], cwd=tmp, check=True)
    deb = next(f for f in os.listdir(tmp) if f.endswith(".deb"))
    subprocess.run(["dpkg-deb", "-x", deb, "pkg"], cwd=tmp, check=True)
    return os.path.join(tmp, "pkg", RDB_INSTALLED.lstrip("/"))


def load_novels(rdb_path: str) -> dict[str, list[str]]:
    """{name: lines} for every novel in the package's data/Rdata.rdb (+ .rdx index)."""
    with open(rdb_path[:-4] + ".rdx", "rb") as f:
        index = _XdrReader(gzip.decompress(f.read())).item()
    with open(rdb_path, "rb") as f:
        rdb = f.read()
    novels = {}
    for name, (offset, length) in index["variables"].items():
        blob = rdb[offset:offset + length]
        # each entry: 4-byte big-endian uncompressed length, then a zlib stream
        novels[name] = _XdrReader(zlib.decompress(blob[4:])).item()
    return novels


def unwrap(lines: list[str]) -> str:
    """Printed lines -> one line per paragraph (paragraphs are separated by blank lines)."""
    paragraphs, cur = [], []
    for line in lines:
        line = (line or "").strip()
        if line:
            cur.append(line)
        elif cur:
            paragraphs.append(" ".join(cur))
            cur = []
    if cur:
        paragraphs.append(" ".join(cur))
    return "\n".join(paragraphs) + "\n"


def corpus(rdb_path: str) -> bytes:
    novels = load_novels(rdb_path)
    return "".join(unwrap(novels[name]) for name, _ in BOOKS).encode("utf-8")


# ---------------------------------------------------------------------------
# model, evaluation
# ---------------------------------------------------------------------------

def build(torch):
    from x_transformers import Decoder, TransformerWrapper

    return TransformerWrapper(attn_layers=Decoder(**DECODER), **WRAPPER)


def windows_bits(torch, model, data, seq: int, batch: int = 16) -> tuple[float, int]:
    """Sum of -log2 p over non-overlapping windows of seq+1 bytes (see the module doc), and the
    number of predicted bytes. A last partial window (>= 2 bytes) is scored too."""
    n = len(data)
    starts = list(range(0, n - 1, seq))
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        full = [s for s in starts if s + seq + 1 <= n]
        for i in range(0, len(full), batch):
            idx = torch.tensor(full[i:i + batch])
            w = torch.stack([data[s:s + seq + 1] for s in idx.tolist()]).long()
            logp = torch.log_softmax(model(w[:, :-1]).double(), dim=-1)
            total -= logp.gather(-1, w[:, 1:, None]).sum().item()
            count += w[:, 1:].numel()
        for s in starts[len(full):]:
            w = data[s:].long()[None]
            logp = torch.log_softmax(model(w[:, :-1]).double(), dim=-1)
            total -= logp.gather(-1, w[:, 1:, None]).sum().item()
            count += w.shape[1] - 1
    model.train()
    return total / math.log(2), count


def score_only(torch, out: str) -> int:
    """Scores the exported (float16) model on the committed sample, window by window, and adds
    the numbers to the JSON (what the Rust test compares against)."""
    from safetensors.torch import load_file

    model = build(torch)
    state = {k: v.float() for k, v in load_file(out + ".safetensors").items()}
    model.load_state_dict(state)
    seq = WRAPPER["max_seq_len"]
    with open(out + ".heldout.txt", "rb") as f:
        sample = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    bits, n = windows_bits(torch, model, sample, seq)
    per_window = [windows_bits(torch, model, sample[s:s + seq + 1], seq)[0] for s in range(0, len(sample) - 1, seq)]
    with open(out + ".json") as f:
        info = json.load(f)
    info.update({"sample_bpc_f16": bits / n, "sample_scored_bytes": n, "sample_window_bits_f16": per_window})
    with open(out + ".json", "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(f"sample: {bits / n:.6f} bits per character over {n} bytes")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rdb", help="path of janeaustenr's data/Rdata.rdb (default: installed, else apt-get download)")
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "demo"), help="output prefix")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=50)
    # One thread: on a shared 2-core machine two OpenMP threads ran 5x slower than one.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--bench", type=int, default=0, help="only time this many steps and exit")
    ap.add_argument("--score", action="store_true",
                    help="only re-score the exported model on the sample (adds the per-window bits to the JSON)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.score:
        return score_only(torch, args.out)
    text = corpus(_locate_rdb(args.rdb))
    data = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    split = int(len(data) * (1 - HELDOUT_FRACTION))
    train, held = data[:split], data[split:]
    seq = WRAPPER["max_seq_len"]
    print(f"corpus: {len(text)} bytes, train {len(train)}, held-out {len(held)}", flush=True)

    model = build(torch)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(args.seed)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    steps = args.bench or args.steps
    t0 = time.time()
    for step in range(steps):
        starts = torch.randint(0, len(train) - seq - 1, (args.batch,), generator=gen)
        w = torch.stack([train[s:s + seq + 1] for s in starts.tolist()]).long()
        logits = model(w[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item() / math.log(2):.3f} bits  {time.time() - t0:7.1f} s", flush=True)
        if args.eval_every and step and step % args.eval_every == 0 and not args.bench:
            bits, n = windows_bits(torch, model, held[:65537], seq)
            print(f"          held-out (first 64 KiB) {bits / n:.4f} bpc", flush=True)
    train_seconds = time.time() - t0
    if args.bench:
        print(f"{steps} steps in {train_seconds:.1f} s: {train_seconds / steps:.3f} s/step")
        return 0

    bits, n = windows_bits(torch, model, held, seq)
    heldout_bpc = bits / n
    print(f"held-out: {heldout_bpc:.4f} bits per character over {n} bytes", flush=True)

    # export as float16, then score the sample with the rounded weights (what picoformer reads)
    from export import export

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    model_path = args.out + ".safetensors"
    export(model, {"decoder": DECODER, "wrapper": WRAPPER}, model_path, dtype="float16")
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if not name.endswith("inv_freq"):
                p.copy_(p.half().float())
    heldout_f16_bits, _ = windows_bits(torch, model, held, seq)
    sample = held[:SAMPLE_BYTES + 1]
    sample_bits, sample_n = windows_bits(torch, model, sample, seq)
    per_window = [windows_bits(torch, model, sample[s:s + seq + 1], seq)[0] for s in range(0, len(sample) - 1, seq)]
    with open(args.out + ".heldout.txt", "wb") as f:
        f.write(bytes(sample.tolist()))
    with open(args.out + ".tokenizer.json", "w") as f:
        json.dump({"type": "bytes", "num_tokens": 256,
                   "description": "token i is the byte i; text is UTF-8; decode the bytes, replacing invalid sequences"},
                  f, indent=2)
        f.write("\n")
    info = {
        "source": "Debian package r-cran-janeaustenr 1.0.0-1 (data/Rdata.rdb of CRAN janeaustenr by Julia Silge, "
                  "MIT); the novels are public domain (Project Gutenberg transcriptions)",
        "books": [title for _, title in BOOKS],
        "preprocessing": "paragraphs unwrapped to one line each, separated by a newline; UTF-8 bytes",
        "corpus_bytes": len(text), "train_bytes": len(train), "heldout_bytes": len(held),
        "decoder": DECODER, "wrapper": WRAPPER, "parameters": n_params,
        "steps": args.steps, "batch": args.batch, "seq": seq, "lr": args.lr, "warmup": args.warmup,
        "seed": args.seed, "threads": args.threads, "train_seconds": round(train_seconds, 1),
        "heldout_bpc_f32": heldout_bpc, "heldout_bpc_f16": heldout_f16_bits / n, "heldout_scored_bytes": n,
        "sample_bpc_f16": sample_bits / sample_n, "sample_scored_bytes": sample_n,
        "sample_window_bits_f16": per_window,
        "torch": torch.__version__,
    }
    with open(args.out + ".json", "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
