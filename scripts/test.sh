#!/usr/bin/env bash
# Set up everything (both Python environments, KIM API stack) and run the test
# suite: tests/ in .venv, then the nequip >= 0.7 tests in .venv-modern.
#
#   bash scripts/test.sh                 # everything (what CI runs)
#   bash scripts/test.sh -m "not slow"   # quick subset: no model matrices
#   bash scripts/test.sh -k mace         # any pytest arguments
#
# Tests run on KIM_GNN_TEST_WORKERS processes (default: the number of cores,
# at most 4), each with one torch thread.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
    bash scripts/install_kim_stack.sh
else
    echo "not root: KIM API build tests will be skipped unless libkim-api-dev is installed" >&2
fi
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
WORKERS=${KIM_GNN_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}
[ "$WORKERS" -gt 4 ] && WORKERS=4
PARALLEL=()
if [ "$WORKERS" -gt 1 ]; then
    PARALLEL=(-n "$WORKERS")
    export OMP_NUM_THREADS=1  # one torch thread per worker: the workers share the cores
fi
echo "tests: legacy environment (.venv), pytest on $WORKERS worker(s)"
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=10 "${PARALLEL[@]}" "$@" tests
legacy=$?
set -e
if [ "${KIM_GNN_SKIP_MODERN:-0}" = 1 ]; then
    echo "tests: modern environment skipped (KIM_GNN_SKIP_MODERN=1)"
    exit $legacy
fi
echo "tests: modern environment (.venv-modern: nequip >= 0.7, Allegro)"
set +e
KIM_GNN_LEGACY_PYTHON=$(pwd)/.venv/bin/python .venv-modern/bin/python -m pytest -q -p no:cacheprovider \
    --durations=10 "$@" tests/nequip_modern tests/test_nequip_modern_detection.py
modern=$?
set -e
[ $modern -eq 5 ] && modern=0  # the arguments selected no modern test
echo "tests: legacy exit $legacy, modern exit $modern"
[ $legacy -eq 0 ] && [ $modern -eq 0 ]
