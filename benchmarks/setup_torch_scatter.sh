#!/usr/bin/env bash
# Build torch-scatter (the scatter library the stock TorchML driver's models
# rely on) from its PyPI sdist into a separate benchmark virtualenv, for
# benchmarks/bench_aggregation.py's torch-scatter rows. Not part of the
# project's environments or tests.
#
#   bash benchmarks/setup_torch_scatter.sh                 # build/bench-venv
#   nice -n 19 bash benchmarks/setup_torch_scatter.sh > build/torch-scatter.log 2>&1 &
#
# The venv sees the legacy .venv's packages (torch 2.13.0+cpu and the rest)
# through a .pth file, so no torch is downloaded: pip is constrained to
# torch==2.13.0, which that torch satisfies. torch-scatter is compiled CPU-only
# (FORCE_ONLY_CPU=1) with one compiler job (MAX_JOBS, default 1): on 2 shared
# cores this takes many minutes. Then run
#
#   build/bench-venv/bin/python benchmarks/bench_aggregation.py --threads 2
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${BENCH_VENV:-build/bench-venv}
base=${BASE_VENV:-.venv}
version=${TORCH_SCATTER_VERSION:-2.1.2}

if [ ! -x "$base/bin/python" ]; then
    echo "no $base/bin/python: set up the legacy environment first (scripts/setup.sh)" >&2
    exit 1
fi
torch_version=$("$base/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
if [ "$torch_version" != "2.13.0" ]; then
    echo "the base environment has torch $torch_version; this script pins torch==2.13.0" >&2
    exit 1
fi
mkdir -p "$(dirname "$venv")"
if [ ! -x "$venv/bin/python" ]; then
    "$base/bin/python" -m venv "$venv"
fi
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
base_site=$("$base/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
base_site=$(cd "$base_site" && pwd -P)
# addsitedir (not a plain path line): the base venv's own .pth files (editable installs) apply too
echo "import site; site.addsitedir('$base_site')" > "$site/_kim_gnn_base_venv.pth"

if "$venv/bin/python" -c "import torch_scatter" 2>/dev/null; then
    echo "torch-scatter is already built in $venv"
    exit 0
fi
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==2.13.0" > "$constraints"
# --no-build-isolation builds with the venv's own setuptools, which needs wheel
"$venv/bin/python" -m pip install -c "$constraints" wheel setuptools
echo "building torch-scatter $version from its sdist in $venv ($(date -u +%H:%M:%S) UTC)"
FORCE_ONLY_CPU=1 MAX_JOBS=${MAX_JOBS:-1} "$venv/bin/python" -m pip install --no-build-isolation --no-binary torch-scatter \
    -c "$constraints" "torch-scatter==$version"
"$venv/bin/python" -c "import torch, torch_scatter; print('torch', torch.__version__, 'torch-scatter', torch_scatter.__version__)"
echo "done ($(date -u +%H:%M:%S) UTC)"
