"""Seeded random nequip 0.19 / Allegro models for the modern-environment
tests, built once per session and option set, in each artifact format."""

import os

import pytest
from skip_policy import missing

from kim_gnn.nequip.modern.load import is_modern_version, nequip_version

MODERN = is_modern_version(nequip_version())
SKIP_REASON = "needs nequip >= 0.7 (the modern environment: bash scripts/setup_modern.sh; bash scripts/test_modern.sh)"


def _key(options) -> str:
    parts = []
    for k, v in sorted(options.items()):
        if isinstance(v, dict):
            v = "-".join(f"{a}{b if not isinstance(b, dict) else '.'.join(map(str, b.values()))}" for a, b in v.items())
        elif isinstance(v, (list, tuple)):
            v = "-".join(map(str, v))
        parts.append(f"{k}-{v}")
    return "_".join(parts).replace(" ", "") or "default"


class ModernModels:
    def __init__(self, root):
        self.root = root
        self._memory = {}

    def in_memory(self, **options):
        from kim_gnn.nequip.modern.example import build_model

        key = _key(options)
        if key not in self._memory:
            self._memory[key] = build_model(**options)
        return self._memory[key]

    def checkpoint(self, **options) -> str:
        from kim_gnn.nequip.modern.example import save_checkpoint

        path = os.path.join(self.root, _key(options) + ".ckpt")
        if not os.path.exists(path):
            save_checkpoint(path, **options)
        return path

    def package(self, **options) -> str:
        from kim_gnn.nequip.modern.example import save_package

        path = os.path.join(self.root, _key(options) + ".nequip.zip")
        if not os.path.exists(path):
            save_package(self.checkpoint(**options), path)
        return path

    def compiled(self, **options) -> str:
        from kim_gnn.nequip.modern.example import save_compiled

        path = os.path.join(self.root, _key(options) + ".nequip.pth")
        if not os.path.exists(path):
            save_compiled(self.in_memory(**options), path)
        return path


@pytest.fixture(scope="session")
def modern_models(tmp_path_factory):
    if not MODERN:
        missing(SKIP_REASON)
    return ModernModels(str(tmp_path_factory.mktemp("nequip-modern-models")))

