#!/usr/bin/env bash
# kimpy 2.1.4 (the KIM API's Python bindings, for ASE's KIM calculator) into
# .venv. PyPI has only its sdist: 23 pybind11 extensions compiled against
# Debian's KIM API (libkim-api-dev, pkg-config, g++: scripts/install_kim_stack.sh;
# and the interpreter's headers, Debian: python3-dev).
#
#   bash scripts/install_kimpy.sh              # build the wheel if needed, install it into .venv
#   bash scripts/install_kimpy.sh --wheel-only # build the wheel only (needs no .venv: scripts/test.sh
#                                              # runs this in the background while setup.sh runs)
#
# The wheel is built once into build/kimpy-wheel/ from a private build
# environment (build/kimpy-venv/, so .venv is never touched by two pips at
# once) and reused. It is built faster than pip's default: all extensions in
# parallel (KIM_GNN_KIMPY_JOBS, default: the number of cores) and at -O1
# without debug information (KIM_GNN_KIMPY_CFLAGS, default "-O1 -g0"; pip's
# default is the interpreter's "-g -O3"). kimpy's speed does not matter here:
# it hands arrays to the KIM API once per call.
#
# Safe to run again: with kimpy 2.1.4 importable from .venv it does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
KIMPY_VERSION=2.1.4
WHEEL_DIR=build/kimpy-wheel
BUILD_VENV=build/kimpy-venv
step() { echo "kimpy: $*"; }
die() { echo "install_kimpy.sh: $*" >&2; exit 1; }

wheel_only=no
case "${1:-}" in
    --wheel-only) wheel_only=yes ;;
    "") ;;
    *) die "unknown argument $1 (use --wheel-only or nothing)" ;;
esac

has_kimpy() {
    "$1" -c "import sys, kimpy; sys.exit(kimpy.__version__ != '$KIMPY_VERSION')" 2>/dev/null
}

if [ "$wheel_only" = no ]; then
    [ -x .venv/bin/python ] || die ".venv does not exist: run scripts/setup.sh first"
    if has_kimpy .venv/bin/python; then
        step "$KIMPY_VERSION already installed in .venv"
        exit 0
    fi
fi

# The build environment's interpreter: the one .venv was made from (so that
# the wheel's tag fits .venv), else $PYTHON / python3 as in scripts/setup.sh.
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then
    PYTHON=$(.venv/bin/python -c "import sys; print(getattr(sys, '_base_executable', '') or sys.executable)")
fi
PYTHON=${PYTHON:-python3}

find_wheel() {
    # a wheel of this version for the build interpreter's tag (cp311 ...)
    local tag
    tag=$("$PYTHON" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
    ls "$WHEEL_DIR"/kimpy-"$KIMPY_VERSION"-"$tag"-*.whl 2>/dev/null | head -n 1
}

wheel=$(find_wheel || true)
if [ -n "$wheel" ]; then
    step "wheel present ($wheel)"
else
    # What the build needs, named, before minutes of compiling.
    command -v pkg-config >/dev/null 2>&1 || die "pkg-config is missing (run scripts/install_kim_stack.sh as root)"
    pkg-config --exists libkim-api || die "the KIM API is missing (libkim-api-dev; run scripts/install_kim_stack.sh as root)"
    command -v g++ >/dev/null 2>&1 || die "g++ is missing (run scripts/install_kim_stack.sh as root)"
    include=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
    [ -f "$include/Python.h" ] || die "the headers of $("$PYTHON" --version 2>&1) are missing ($include/Python.h; Debian: apt-get install python3-dev)"

    if [ ! -x "$BUILD_VENV/bin/python" ]; then
        step "creating the build environment $BUILD_VENV"
        "$PYTHON" -m venv "$BUILD_VENV"
    fi
    jobs=${KIM_GNN_KIMPY_JOBS:-$(nproc 2>/dev/null || echo 1)}
    flags=${KIM_GNN_KIMPY_CFLAGS:--O1 -g0}
    # setuptools reads extra build_ext options from $DIST_EXTRA_CONFIG: the
    # extensions are compiled $jobs at a time.
    mkdir -p "$WHEEL_DIR"
    config=$(mktemp)
    trap 'rm -f "$config"' EXIT
    printf '[build_ext]\nparallel = %s\n' "$jobs" > "$config"
    step "building the $KIMPY_VERSION wheel from PyPI's sdist ($jobs parallel jobs, CFLAGS '$flags'; a few minutes)"
    start=$(date +%s)
    DIST_EXTRA_CONFIG=$config CFLAGS="$flags" CXXFLAGS="$flags" \
        "$BUILD_VENV/bin/python" -m pip --disable-pip-version-check wheel --quiet --no-deps \
        --no-binary kimpy -w "$WHEEL_DIR" "kimpy==$KIMPY_VERSION" \
        2> >(grep -v "is ignored: it is neither" >&2)
    wheel=$(find_wheel || true)
    [ -n "$wheel" ] || die "pip wheel finished but no kimpy $KIMPY_VERSION wheel is in $WHEEL_DIR"
    step "built $wheel in $(( $(date +%s) - start )) s"
fi

if [ "$wheel_only" = yes ]; then
    exit 0
fi
step "installing $wheel into .venv"
if ! .venv/bin/python -m pip --disable-pip-version-check install --quiet "$wheel"; then
    rm -f "$wheel"
    die "installing $wheel failed; the wheel was removed, run this script again to rebuild it"
fi
has_kimpy .venv/bin/python || die "kimpy $KIMPY_VERSION still does not import from .venv"
step "ready: kimpy $(.venv/bin/python -c 'import kimpy; print(kimpy.__version__)') in .venv"
