#!/usr/bin/env bash
# Set up everything (KIM API stack with LAMMPS and Open MPI, both Python
# environments, kimpy) and run the test suite in three stages, each chosen by
# the environment markers of tests/conftest.py (--stage): the legacy tests in
# .venv, then the end-to-end tests (e2e: KIM API, ASE, LAMMPS under MPI) in
# .venv, then the nequip >= 0.7 tests (modern_env, both_envs) in .venv-modern.
# As root (CI) KIM_GNN_TESTS_REQUIRED=1: a test that would skip for a missing
# component fails instead (tests/skip_policy.py) and any skip fails the run;
# every stage prints its skip reasons (-rs). The CUDA tests (marked cuda) are
# deselected where there is no CUDA device, with one summary line counting
# them (tests/conftest.py); a GPU machine runs them with -m cuda.
#
#   bash scripts/test.sh                 # everything (what CI runs)
#   bash scripts/test.sh -m "not slow"   # quick subset: no model matrices
#   bash scripts/test.sh -k mace         # any pytest arguments
#
# Tests run on KIM_GNN_TEST_WORKERS processes (default: the number of cores,
# at most 4), each with one torch thread.
set -euo pipefail
cd "$(dirname "$0")/.."
# The KIM stack first (KIM API, LAMMPS, Open MPI: root), so that kimpy's wheel
# (minutes of C++) compiles in the background while setup.sh installs the
# Python environments and the legacy suite runs.
kimpy_pid=
e2e_required=0
if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
    bash scripts/install_kim_stack.sh
    e2e_required=1
    mkdir -p build
    if ! { [ -x .venv/bin/python ] && .venv/bin/python -c "import kimpy" 2>/dev/null; }; then
        echo "kimpy: building its wheel in the background (log: build/kimpy-wheel.log)"
        bash scripts/install_kimpy.sh --wheel-only > build/kimpy-wheel.log 2>&1 &
        kimpy_pid=$!
    fi
else
    echo "not root: KIM API, LAMMPS and kimpy tests will be skipped unless their packages are installed" >&2
fi
bash scripts/setup.sh
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
WORKERS=${KIM_GNN_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}
[ "$WORKERS" -gt 4 ] && WORKERS=4
PARALLEL=()
if [ "$WORKERS" -gt 1 ]; then
    PARALLEL=(-n "$WORKERS")
    export OMP_NUM_THREADS=1  # one torch thread per worker: the workers share the cores
fi
export KIM_GNN_TESTS_REQUIRED=$e2e_required
echo "tests: legacy environment (.venv), pytest on $WORKERS worker(s)"
set +e
.venv/bin/python -m pytest -q -rs -p no:cacheprovider --durations=10 "${PARALLEL[@]}" --stage legacy "$@" tests
legacy=$?
set -e
[ $legacy -eq 5 ] && legacy=0  # the arguments selected no test here

# End-to-end runs through the real KIM API, ASE (kimpy) and LAMMPS under MPI:
# one pytest process (the driver is built once per session; the MPI runs
# start their own processes). As root the stack is installed above, so a
# test that would skip for a missing component fails instead.
kimpy_status=0
if [ -n "$kimpy_pid" ]; then
    echo "kimpy: waiting for the wheel build"
    if wait "$kimpy_pid"; then
        tail -n 1 build/kimpy-wheel.log
    else
        kimpy_status=1
        echo "kimpy: the wheel build failed; last lines of build/kimpy-wheel.log:" >&2
        tail -n 30 build/kimpy-wheel.log >&2
    fi
fi
if [ $e2e_required -eq 1 ] && [ $kimpy_status -eq 0 ]; then
    bash scripts/install_kimpy.sh || kimpy_status=1
fi
echo "tests: end to end (tests/kim_e2e: KIM API, ASE, LAMMPS + MPI)"
set +e
KIM_GNN_E2E_REQUIRED=$e2e_required .venv/bin/python -m pytest -q -rs -p no:cacheprovider --durations=10 --stage e2e "$@" tests
e2e=$?
set -e
[ $e2e -eq 5 ] && e2e=0  # the arguments selected no end-to-end test
[ $kimpy_status -ne 0 ] && e2e=1

if [ "${KIM_GNN_SKIP_MODERN:-0}" = 1 ]; then
    echo "tests: modern environment skipped (KIM_GNN_SKIP_MODERN=1)"
    echo "tests: legacy exit $legacy, end-to-end exit $e2e"
    [ $legacy -eq 0 ] && [ $e2e -eq 0 ]
    exit
fi
echo "tests: modern environment (.venv-modern: nequip >= 0.7, Allegro)"
set +e
KIM_GNN_LEGACY_PYTHON=$(pwd)/.venv/bin/python .venv-modern/bin/python -m pytest -q -rs -p no:cacheprovider \
    --durations=10 "${PARALLEL[@]}" --stage modern "$@" tests
modern=$?
set -e
[ $modern -eq 5 ] && modern=0  # the arguments selected no modern test
echo "tests: legacy exit $legacy, end-to-end exit $e2e, modern exit $modern"
[ $legacy -eq 0 ] && [ $e2e -eq 0 ] && [ $modern -eq 0 ]
