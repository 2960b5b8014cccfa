import os

# e3nn 0.4.4 loads its constants with torch.load, which torch >= 2.6 refuses
# by default; nequip and mace set this themselves only when imported first.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import pytest  # noqa: E402


class NequIPModels:
    """Seeded random NequIP deployed models, built once per session and option set."""

    def __init__(self, root):
        self.root = root
        self._built = {}

    def deployed(self, **options) -> str:
        from kim_gnn.nequip.example import build_example_nequip

        options.setdefault("r_max", 3.5)
        key = tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()))
        if key not in self._built:
            name = "_".join(f"{k}-{'-'.join(v) if isinstance(v, tuple) else v}" for k, v in key)
            path = os.path.join(self.root, f"{name}.pth")
            build_example_nequip(path, **options)
            self._built[key] = path
        return self._built[key]

    def converted(self, **options) -> str:
        from kim_gnn.nequip import convert_nequip

        deployed = self.deployed(**options)
        out = deployed[:-4] + ".staged.pt"
        if not os.path.exists(out):
            convert_nequip(deployed).save(out)
        return out


@pytest.fixture(scope="session")
def nequip_models(tmp_path_factory):
    pytest.importorskip("nequip")
    return NequIPModels(str(tmp_path_factory.mktemp("nequip-models")))


class MACEModels:
    """Seeded random MACE ``.model`` files, built once per session and option set."""

    def __init__(self, root):
        self.root = root
        self._built = {}

    @staticmethod
    def _name(options) -> str:
        parts = []
        for k, v in sorted(options.items()):
            v = "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
            parts.append(f"{k}-{v}".replace("RealAgnostic", "").replace("InteractionBlock", ""))
        return "_".join(parts) or "default"

    def model(self, **options) -> str:
        from kim_gnn.mace.example import build_example_mace

        name = self._name(options)
        if name not in self._built:
            path = os.path.join(self.root, f"{name}.model")
            build_example_mace(path, **options)
            self._built[name] = path
        return self._built[name]

    def converted(self, head=None, **options) -> str:
        from kim_gnn.mace import convert_mace

        source = self.model(**options)
        out = source[: -len(".model")] + (f".head-{head}" if head else "") + ".staged.pt"
        if not os.path.exists(out):
            convert_mace(source, head=head).save(out)
        return out


@pytest.fixture(scope="session")
def mace_models(tmp_path_factory):
    pytest.importorskip("mace")
    return MACEModels(str(tmp_path_factory.mktemp("mace-models")))
