#!/usr/bin/env bash
# Set up everything (Python env, KIM API stack) and run the test suite.
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
echo "tests: pytest on $WORKERS worker(s)"
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=10 "${PARALLEL[@]}" "$@" tests
