#!/usr/bin/env bash
# Create .venv with the "legacy" architecture set (torch 2.13.0 CPU, e3nn 0.4.4,
# nequip 0.6.2, mace-torch 0.3.16) and kim-gnn installed in editable mode.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
# torch first and pinned: an unpinned resolve downloads the CUDA build.
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    $PIP install --quiet --disable-pip-version-check "torch==2.13.0"
fi
$PIP install --quiet --disable-pip-version-check -e ".[legacy,test]"
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 .venv/bin/python -W ignore -c "import kim_gnn, torch, nequip, e3nn; print('kim-gnn', kim_gnn.__version__, '| torch', torch.__version__, '| nequip', nequip.__version__, '| e3nn', e3nn.__version__)"
