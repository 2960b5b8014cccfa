#!/usr/bin/env bash
# The checks that need a CUDA device, in one run on a GPU machine (CI has no
# GPU, so it never runs these; docs/testing.md says where they were last run):
#
#   1. the op library built with its CUDA kernels (csrc/cuda) and the CUDA
#      kernel tests (tests marked cuda in tests/csrc/test_kernels.py);
#   2. converted models on CUDA in the Python executor: equal to the CPU, and
#      with the kim_gnn kernels the same bits on every call
#      (tests/csrc/test_cuda_models.py);
#   3. converted models on CUDA in kim-gnn's KIM driver through the KIM API
#      (KIM_MODEL_EXECUTION_DEVICE=cuda; tests/kim_e2e/test_driver_device.py):
#      equal to the driver on the CPU, and bit for bit repeatable with the
#      kernels;
#   4. the GPU benchmarks: benchmarks/bench_device.py (models, CUDA vs CPU)
#      and benchmarks/bench_aggregation.py --device cuda (kernels vs aten).
#
#   bash scripts/device_check.sh OUT_DIR
#
# Needs python3 with a CUDA torch, nvcc, cmake and a C++ compiler. What the
# machine lacks can be carried in the checkout (git-ignored folders):
#   .whl/*.whl            Python wheels (ase, vesin, kim-edn), installed into /tmp/site
#   .devicedeps/*.deb     the KIM API (libkim-api2, libkim-api-dev), unpacked into /
#   .devicedeps/bin, lib  make, libgfortran/libquadmath, used only where missing
#   .devicedeps/models    converted models (scripts/device_models.py), KIM_GNN_DEVICE_MODELS
# Every phase runs even when an earlier one failed (each says why in
# OUT_DIR/device-check.log); the script's exit status is 1 if any failed.
# DEVICE_CHECK_SECONDS (default 520) bounds the whole run; DEVICE_CHECK_PHASES
# (default "ops tests driver bench aggregation") picks phases.
set -u
cd "$(dirname "$0")/.."
out=$(mkdir -p "${1:-build/device-check}" && cd "${1:-build/device-check}" && pwd)
logfile="$out/device-check.log"
: > "$logfile"
exec > >(tee -a "$logfile") 2>&1
export PYTHONUNBUFFERED=1
deadline=$((SECONDS + ${DEVICE_CHECK_SECONDS:-520}))
summary=()
phases=" ${DEVICE_CHECK_PHASES:-ops tests driver bench aggregation} "
want() { [[ "$phases" == *" $1 "* ]]; }

log() { echo "[$(date -u +%H:%M:%S)] $*"; }

# phase NAME SECONDS COMMAND...: runs COMMAND with at most SECONDS (and never past the deadline)
phase() {
    local name=$1 budget=$2
    shift 2
    local left=$((deadline - SECONDS))
    [ "$budget" -gt "$left" ] && budget=$left
    if [ "$budget" -le 5 ]; then
        summary+=("$name: not run (out of time)")
        log "== $name: not run (out of time)"
        return
    fi
    log "== $name (at most ${budget} s)"
    local start=$SECONDS status
    timeout --kill-after=10 "$budget" "$@"
    status=$?
    local took=$((SECONDS - start))
    if [ $status -eq 0 ]; then
        summary+=("$name: ok (${took} s)")
    elif [ $status -eq 124 ] || [ $status -eq 137 ]; then
        summary+=("$name: TIMED OUT after ${took} s")
    else
        summary+=("$name: FAILED, exit $status (${took} s)")
    fi
    log "== $name: ${summary[-1]#*: }"
}

log "== machine"
nvidia-smi -L 2>&1 | head -n 4
python3 -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda, '| device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
for tool in nvcc cmake make c++ pkg-config wget curl; do printf '%s: %s\n' "$tool" "$(command -v $tool || echo missing)"; done

# --- what the machine lacks -------------------------------------------------
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && log "installed $(ls .whl | tr '\n' ' ')"
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
if ! ldconfig -p | grep -q 'libkim-api.so.2' && ls .devicedeps/*.deb >/dev/null 2>&1; then
    for deb in .devicedeps/*.deb; do dpkg -x "$deb" /; done
    ldconfig
    log "unpacked the KIM API: $(ls .devicedeps/*.deb | xargs -n1 basename | tr '\n' ' ')"
fi
for lib in libgfortran.so.5 libquadmath.so.0; do
    if ! ldconfig -p | grep -q "$lib" && [ -f ".devicedeps/lib/$lib" ]; then
        export LD_LIBRARY_PATH="$PWD/.devicedeps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        log "using the carried $lib"
    fi
done
mkdir -p /tmp/device-bin
export PATH="$PATH:/tmp/device-bin"
command -v make >/dev/null || { cp .devicedeps/bin/make /tmp/device-bin/ 2>/dev/null && log "using the carried make"; }
if ! command -v wget >/dev/null && ! command -v curl >/dev/null; then
    # kim-api-collections-management refuses to start without one; installing local items never downloads
    printf '#!/bin/sh\necho "wget: no network on this machine" >&2\nexit 1\n' > /tmp/device-bin/wget
    chmod +x /tmp/device-bin/wget
fi
if ! command -v pkg-config >/dev/null; then
    # only libkim-api is asked for (tests/kim_e2e); its flags as Debian's libkim-api.pc gives them
    cat > /tmp/device-bin/pkg-config <<'EOF'
#!/bin/sh
case "$*" in *libkim-api*) ;; *) exit 1 ;; esac
out=
for a in "$@"; do
    case $a in
        --cflags) out="$out -I/usr/include/kim-api" ;;
        --libs) out="$out -L/usr/lib/x86_64-linux-gnu -lkim-api" ;;
    esac
done
[ -n "$out" ] && echo $out
exit 0
EOF
    chmod +x /tmp/device-bin/pkg-config
fi
if [ -d .devicedeps/models ]; then
    export KIM_GNN_DEVICE_MODELS="$PWD/.devicedeps/models"
    log "device models: $(ls "$KIM_GNN_DEVICE_MODELS" | tr '\n' ' ')"
fi
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1

# --- 1. the op library with CUDA, and the kernel tests ------------------------------
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
want ops && phase "build the op library with CUDA" 180 python3 csrc/build_ops.py --force
python3 -c "from kim_gnn import kernels; print(kernels.build_info())"

# The driver compiles against libtorch meanwhile (CPU work while the CUDA tests run).
export KIM_GNN_TEST_DRIVER_BUILD_DIR=/tmp/kim-gnn-driver-build
(mkdir -p /tmp/driver-prebuild && KIM_API_MODEL_DRIVERS_DIR=/tmp/driver-prebuild timeout 400 python3 -c \
    "from kim_gnn.kim_driver import install_driver; print(install_driver('environment', '$KIM_GNN_TEST_DRIVER_BUILD_DIR'))" \
    > "$out/driver-prebuild.txt" 2>&1; echo "driver prebuild exit $?" >> "$out/driver-prebuild.txt") &
prebuild=$!
want driver || { kill $prebuild 2>/dev/null; prebuild=; }

PYTEST=(python3 -m pytest -q -rs -p no:cacheprovider --durations=8)
kernel_tests=tests/csrc/test_kernels.py
tests_k=()
[ -n "${DEVICE_CHECK_TESTS_K:-}" ] && tests_k=(-k "$DEVICE_CHECK_TESTS_K")
want tests && phase "CUDA kernel and model tests" 200 "${PYTEST[@]}" -s -m cuda "${tests_k[@]}" "$kernel_tests" \
    tests/csrc/test_cuda_models.py

# --- 3. the driver on CUDA ---------------------------------------------------------
[ -n "$prebuild" ] && wait $prebuild && log "$(tail -n 3 "$out/driver-prebuild.txt")"
driver_models=${DEVICE_CHECK_DRIVER_MODELS:-"toy or nequip-float64-kernels or mace-float64 or on_cpu"}
want driver && phase "kim-gnn's driver on CUDA through the KIM API" 200 "${PYTEST[@]}" -s tests/kim_e2e/test_driver_device.py \
    -k "$driver_models"

# --- 4. the GPU benchmarks -------------------------------------------------------
want bench && phase "benchmark: models on CUDA vs CPU" 150 python3 benchmarks/bench_device.py --threads 16 --repeats 3 --warmup 2 \
    --out "$out"
want aggregation && phase "benchmark: aggregation on CUDA" 60 python3 benchmarks/bench_aggregation.py --device cuda --repeats 5 \
    --out "$out"

log "== summary"
failed=0
for line in "${summary[@]}"; do
    echo "  $line"
    case $line in *": ok "*) ;; *) failed=1 ;; esac
done
exit $failed
