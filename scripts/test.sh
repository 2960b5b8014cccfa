#!/usr/bin/env bash
# Set up everything (KIM API stack with LAMMPS and Open MPI, both Python
# environments, kimpy) and run the test suite in three stages, each chosen by
# the environment markers of tests/conftest.py (--stage): the legacy tests in
# .venv, the end-to-end tests (e2e: KIM API, ASE, LAMMPS under MPI) in .venv,
# and the nequip >= 0.7 tests (modern_env, both_envs) in .venv-modern.
# The end-to-end stage runs beside the other two: it starts after .venv is
# set up, with its own log (build/test-e2e.log, printed when it ends) and its
# own exit status; the modern environment is set up beside the legacy suite (build/setup-modern.log).
# On 2 cores this saved only about 1.5 of 45 minutes (the legacy suite keeps
# both cores busy; docs/testing.md has the measured times).
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
# at most 4), each with one torch thread. KIM_GNN_SERIAL_STAGES=1 runs the
# three stages one after the other (each with the terminal to itself).
set -euo pipefail
cd "$(dirname "$0")/.."
# The KIM stack first (KIM API, LAMMPS, Open MPI: root), so that kimpy's wheel
# (minutes of C++) compiles in the background while setup.sh installs the
# Python environments and the legacy suite runs.
mkdir -p build
rm -f build/kimpy-wheel.rc build/kimpy-wheel.rc.tmp
kimpy_building=0
e2e_required=0
if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
    bash scripts/install_kim_stack.sh
    e2e_required=1
    if ! { [ -x .venv/bin/python ] && .venv/bin/python -c "import kimpy" 2>/dev/null; }; then
        echo "kimpy: building its wheel in the background (log: build/kimpy-wheel.log)"
        # (its exit status goes to a file: the end-to-end job, not this shell, waits for it)
        { if bash scripts/install_kimpy.sh --wheel-only > build/kimpy-wheel.log 2>&1; then echo 0; else echo 1; fi \
              > build/kimpy-wheel.rc.tmp && mv build/kimpy-wheel.rc.tmp build/kimpy-wheel.rc; } &
        kimpy_building=1
    fi
else
    echo "not root: KIM API, LAMMPS and kimpy tests will be skipped unless their packages are installed" >&2
fi
serial=${KIM_GNN_SERIAL_STAGES:-0}
skip_modern=${KIM_GNN_SKIP_MODERN:-0}
modern_setup_pid=
if [ "$skip_modern" = 1 ] || [ "$serial" = 1 ]; then
    bash scripts/setup.sh
else
    # .venv now; .venv-modern beside the legacy suite (pip, mostly waiting on the disk)
    KIM_GNN_SKIP_MODERN=1 bash scripts/setup.sh
    echo "setup: the modern environment (.venv-modern) is set up in the background (log: build/setup-modern.log)"
    bash scripts/setup_modern.sh > build/setup-modern.log 2>&1 &
    modern_setup_pid=$!
fi
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
WORKERS=${KIM_GNN_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}
[ "$WORKERS" -gt 4 ] && WORKERS=4
PARALLEL=()
if [ "$WORKERS" -gt 1 ]; then
    PARALLEL=(-n "$WORKERS")
    export OMP_NUM_THREADS=1  # one torch thread per worker: the workers share the cores
fi
export KIM_GNN_TESTS_REQUIRED=$e2e_required

# End-to-end runs through the real KIM API, ASE (kimpy) and LAMMPS under MPI:
# one pytest process (the driver is built once per session; the MPI runs
# start their own processes). As root the stack is installed above, so a
# test that would skip for a missing component fails instead. Its exit
# status: the pytest's (5, nothing selected, counts as 0), or 1 when kimpy
# could not be built or installed.
e2e_stage() {
    local kimpy_status=0 status
    if [ "$kimpy_building" = 1 ]; then
        echo "kimpy: waiting for the wheel build"
        while [ ! -f build/kimpy-wheel.rc ]; do sleep 2; done
        if [ "$(cat build/kimpy-wheel.rc)" = 0 ]; then
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
    KIM_GNN_E2E_REQUIRED=$e2e_required .venv/bin/python -m pytest -q -rs -p no:cacheprovider --durations=10 \
        --stage e2e "$@" tests
    status=$?
    set -e
    [ $status -eq 5 ] && status=0  # the arguments selected no end-to-end test
    [ $kimpy_status -ne 0 ] && status=1
    return $status
}

e2e_pid=
if [ "$serial" != 1 ]; then
    echo "tests: end to end in the background, beside the legacy and modern suites (log: build/test-e2e.log)"
    ( if e2e_stage "$@" > build/test-e2e.log 2>&1; then exit 0; else exit $?; fi ) &
    e2e_pid=$!
fi

echo "tests: legacy environment (.venv), pytest on $WORKERS worker(s)"
set +e
.venv/bin/python -m pytest -q -rs -p no:cacheprovider --durations=10 "${PARALLEL[@]}" --stage legacy "$@" tests
legacy=$?
set -e
[ $legacy -eq 5 ] && legacy=0  # the arguments selected no test here

if [ "$serial" = 1 ]; then
    if e2e_stage "$@"; then e2e=0; else e2e=$?; fi
fi

modern=0
if [ "$skip_modern" = 1 ]; then
    echo "tests: modern environment skipped (KIM_GNN_SKIP_MODERN=1)"
else
    if [ -n "$modern_setup_pid" ]; then
        set +e
        wait "$modern_setup_pid"
        modern_setup=$?
        set -e
        cat build/setup-modern.log
        if [ $modern_setup -ne 0 ]; then
            echo "setup: the modern environment failed (exit $modern_setup; log above)" >&2
            modern=1
        fi
    fi
    if [ $modern -eq 0 ]; then
        echo "tests: modern environment (.venv-modern: nequip >= 0.7, Allegro)"
        set +e
        KIM_GNN_LEGACY_PYTHON=$(pwd)/.venv/bin/python .venv-modern/bin/python -m pytest -q -rs -p no:cacheprovider \
            --durations=10 "${PARALLEL[@]}" --stage modern "$@" tests
        modern=$?
        set -e
        [ $modern -eq 5 ] && modern=0  # the arguments selected no modern test
    fi
fi

if [ -n "$e2e_pid" ]; then
    echo "tests: waiting for the end-to-end stage (log: build/test-e2e.log)"
    set +e
    wait "$e2e_pid"
    e2e=$?
    set -e
    echo "----- build/test-e2e.log (the end-to-end stage) -----"
    cat build/test-e2e.log
    echo "----- end of build/test-e2e.log -----"
fi

if [ "$skip_modern" = 1 ]; then
    echo "tests: legacy exit $legacy, end-to-end exit $e2e"
    [ $legacy -eq 0 ] && [ $e2e -eq 0 ]
    exit
fi
echo "tests: legacy exit $legacy, end-to-end exit $e2e, modern exit $modern"
[ $legacy -eq 0 ] && [ $e2e -eq 0 ] && [ $modern -eq 0 ]
