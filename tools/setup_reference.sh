#!/usr/bin/env bash
# Create the Python reference environment used to export models and to
# regenerate the golden fixtures (real x-transformers on CPU).
#
#   bash tools/setup_reference.sh            # venv at <repo>/.venv
#   VENV=/some/where bash tools/setup_reference.sh
#
# Idempotent: if the venv already has the pinned versions, it does nothing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"

TORCH_VERSION="${TORCH_VERSION:-2.15.0}"
XT_VERSION="${XT_VERSION:-2.31.10}"

PY="$VENV/bin/python"

have_pinned() {
    [ -x "$PY" ] || return 1
    "$PY" - "$TORCH_VERSION" "$XT_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
want_torch, want_xt = sys.argv[1], sys.argv[2]
assert version("torch").split("+")[0] == want_torch
assert version("x-transformers") == want_xt
import safetensors, numpy  # noqa: F401
PYEOF
}

if have_pinned; then
    echo "reference env already set up at $VENV (torch $TORCH_VERSION, x-transformers $XT_VERSION)"
    exit 0
fi

if [ ! -x "$PY" ]; then
    echo "creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
fi

"$PY" -m pip install --quiet --upgrade pip
"$PY" -m pip install \
    "torch==$TORCH_VERSION" \
    "x-transformers==$XT_VERSION" \
    safetensors numpy

if ! have_pinned; then
    echo "error: venv at $VENV does not have torch $TORCH_VERSION and x-transformers $XT_VERSION" >&2
    exit 1
fi
"$PY" -c 'import torch, x_transformers, safetensors, numpy; from importlib.metadata import version; print("torch", torch.__version__, "| x-transformers", version("x-transformers"), "| safetensors", safetensors.__version__, "| numpy", numpy.__version__)'
