#!/usr/bin/env bash
# Set up everything (Python env, KIM API stack) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
    bash scripts/install_kim_stack.sh
else
    echo "not root: KIM API build tests will be skipped unless libkim-api-dev is installed" >&2
fi
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=10 "$@" tests
