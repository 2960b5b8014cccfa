#!/usr/bin/env bash
# Set up the modern environment (.venv-modern: nequip 0.19, nequip-allegro,
# e3nn 0.6) and run the nequip >= 0.7 / Allegro tests: the modern stage of
# scripts/test.sh (tests/conftest.py's markers modern_env and both_envs).
# The cross-environment tests also use the legacy interpreter
# ($KIM_GNN_LEGACY_PYTHON, else .venv/bin/python from scripts/setup.sh) and
# are skipped without it. About 3 minutes on 2 idle cores with -n 2 (pytest-xdist;
# about 7 in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_modern.sh
exec .venv-modern/bin/python -m pytest -q -rs -p no:cacheprovider --durations=10 --stage modern "$@" tests
