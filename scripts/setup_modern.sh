#!/usr/bin/env bash
# Create .venv-modern with the "modern" architecture set (torch 2.13.0,
# e3nn 0.6.x, nequip 0.19.1, nequip-allegro 0.8.3) and kim-gnn installed in
# editable mode from this checkout. nequip >= 0.7 needs e3nn 0.6 while
# mace-torch pins e3nn 0.4.4, so the two sets live in two environments
# (.venv: scripts/setup.sh; .venv-modern: this script).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=.venv-modern
if [ ! -x "$VENV/bin/python" ]; then
    echo "modern env: creating $VENV"
    "$PYTHON" -m venv "$VENV"
else
    echo "modern env: $VENV exists"
fi
PY="$VENV/bin/python"
PIP="$PY -m pip --disable-pip-version-check"
# torch first and pinned, as in scripts/setup.sh (KIM_GNN_TORCH_INDEX as there).
if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    if [ -n "${KIM_GNN_TORCH_INDEX:-}" ]; then
        echo "modern env: installing torch 2.13.0 from $KIM_GNN_TORCH_INDEX"
        $PIP install --quiet "torch==2.13.0" --index-url "$KIM_GNN_TORCH_INDEX"
    else
        echo "modern env: installing torch 2.13.0 (the build pip resolves; see scripts/setup.sh for CPU vs CUDA)"
        $PIP install --quiet "torch==2.13.0"
    fi
else
    echo "modern env: torch 2.13.0 present"
fi
# Every later install is constrained so that nothing can move torch.
CONSTRAINTS="$VENV/constraints.txt"
echo "torch==2.13.0" > "$CONSTRAINTS"
if ! "$PY" - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
want = {"nequip": "0.19.1", "nequip-allegro": "0.8.3"}
ok = all(version(k) == v for k, v in want.items()) and version("e3nn").startswith("0.6.")
for mod in ("ase", "vesin", "yaml", "numpy", "pytest", "xdist", "kim_edn"):
    __import__(mod)
sys.exit(0 if ok else 1)
PY
then
    echo "modern env: installing e3nn 0.6.x, nequip 0.19.1, nequip-allegro 0.8.3, ase, vesin, pyyaml, numpy, pytest (xdist), kim-edn"
    $PIP install --quiet -c "$CONSTRAINTS" "e3nn>=0.6,<0.7" "nequip==0.19.1" "nequip-allegro==0.8.3" \
        "ase>=3.22" "vesin>=0.3" pyyaml numpy "pytest>=7" "pytest-xdist>=3" "kim-edn>=1.4" 2> >(grep -v "is ignored: it is neither" >&2)
else
    echo "modern env: nequip 0.19.1, nequip-allegro 0.8.3, e3nn 0.6 present"
fi
# kim-gnn itself, editable, pointing at this checkout (not at another worktree).
# (checked from / so that the checkout on sys.path cannot answer for the venv)
if ! (cd / && "$REPO/$PY" -c "import kim_gnn, os, sys; sys.exit(os.path.dirname(os.path.dirname(os.path.realpath(kim_gnn.__file__))) != os.path.realpath(sys.argv[1]))" "$REPO") 2>/dev/null; then
    echo "modern env: installing kim-gnn (editable) from $REPO"
    # --no-build-isolation: the op library (csrc/) is built against this torch;
    # an up-to-date library from the same torch version is reused, not rebuilt.
    if ! "$PY" -c "import sys, setuptools; sys.exit(tuple(map(int, setuptools.__version__.split('.')[:2])) < (70, 1))" 2>/dev/null; then
        $PIP install --quiet -c "$CONSTRAINTS" "setuptools>=70.1" 2> >(grep -v "is ignored: it is neither" >&2)
    fi
    $PIP install --quiet --no-deps --no-build-isolation -c "$CONSTRAINTS" -e "$REPO" 2> >(grep -v "is ignored: it is neither" >&2)
else
    echo "modern env: kim-gnn (editable) from $REPO present"
fi
"$PY" -W ignore -c "import kim_gnn, torch, nequip, allegro, e3nn; print('modern env: kim-gnn', kim_gnn.__version__, '| torch', torch.__version__, '| nequip', nequip.__version__, '| allegro', allegro.__version__, '| e3nn', e3nn.__version__)"
