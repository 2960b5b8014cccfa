#!/usr/bin/env bash
# Create .venv with the "legacy" architecture set (torch 2.13.0, e3nn 0.4.4,
# nequip 0.6.2, mace-torch 0.3.16) and kim-gnn installed in editable mode, then
# .venv-modern (scripts/setup_modern.sh: nequip 0.19.1, nequip-allegro 0.8.3,
# e3nn 0.6; KIM_GNN_SKIP_MODERN=1 skips it).
# Safe to run again: it only installs what is missing. Prints one line per step.
#
# Which torch build you get: torch is installed first, pinned to 2.13.0, so that
# no later resolve can pick another version. On plain PyPI, `torch==2.13.0` for
# Linux x86_64 is the CUDA build (it pulls several GB of nvidia-* packages): the
# right choice on a machine with an NVIDIA GPU. Without a GPU, point
# KIM_GNN_TORCH_INDEX at PyTorch's CPU wheel index
# (KIM_GNN_TORCH_INDEX=https://download.pytorch.org/whl/cpu) to get the ~200 MB
# CPU build instead. Machines whose pip is configured with a local CPU wheel
# (this project's CI) get that one without setting anything.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
step() { echo "setup: $*"; }

if [ ! -x .venv/bin/python ]; then
    step "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
else
    step ".venv exists ($(.venv/bin/python --version 2>&1))"
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

if .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    step "torch $TORCH_VERSION already installed"
else
    if [ -n "${KIM_GNN_TORCH_INDEX:-}" ]; then
        step "installing torch==$TORCH_VERSION from $KIM_GNN_TORCH_INDEX (about 1 minute)"
        "${PIP[@]}" install --quiet "torch==$TORCH_VERSION" --index-url "$KIM_GNN_TORCH_INDEX"
    else
        step "installing torch==$TORCH_VERSION (about 1 minute; see the comment at the top for CPU vs CUDA builds)"
        "${PIP[@]}" install --quiet "torch==$TORCH_VERSION"
    fi
fi

step "installing kim-gnn (editable) with e3nn 0.4.4, nequip 0.6.2, mace-torch 0.3.16 and the test tools"
step "  (and building its op library kim_gnn/lib/libkim_gnn_ops.so from csrc/: about 1-2 minutes the first time)"
# The constraint keeps pip from replacing the torch installed above.
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"
# --no-build-isolation: setup.py builds the op library against the torch
# installed above (an isolated build environment would fetch another torch);
# that needs setuptools >= 70.1 (bdist_wheel built in) in .venv itself.
if ! .venv/bin/python -c "import sys, setuptools; sys.exit(tuple(map(int, setuptools.__version__.split('.')[:2])) < (70, 1))" 2>/dev/null; then
    "${PIP[@]}" install --quiet -c "$CONSTRAINTS" "setuptools>=70.1"
fi
"${PIP[@]}" install --quiet -c "$CONSTRAINTS" --no-build-isolation -e ".[legacy,test]"
.venv/bin/python -c "import kim_gnn.kernels as k; print('setup: op library:', k.library_path() if k.available() else 'not built (kim-gnn works without it; convert --kernels kim_gnn needs it; see docs/kernels.md)')"

step "checking the environment"
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 .venv/bin/python -W ignore -c "import kim_gnn, torch, nequip, e3nn; print('setup: ready: kim-gnn', kim_gnn.__version__, '| torch', torch.__version__, '| nequip', nequip.__version__, '| e3nn', e3nn.__version__)"

# nequip >= 0.7 and Allegro need e3nn 0.6, which cannot share .venv with
# mace-torch's e3nn 0.4.4: their own environment, .venv-modern.
if [ "${KIM_GNN_SKIP_MODERN:-0}" = 1 ]; then
    step "skipping .venv-modern (KIM_GNN_SKIP_MODERN=1)"
else
    step "the modern environment (.venv-modern: nequip 0.19.1, nequip-allegro 0.8.3, e3nn 0.6)"
    TORCH_VERSION=$TORCH_VERSION bash scripts/setup_modern.sh
fi
