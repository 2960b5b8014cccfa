"""Bad inputs, across the command line and the Python API: each answered
with one clear error (CLI: one ``kim-gnn: error:`` line, exit 2, no
traceback; Python: a ``KimGnnError``) and no partial output (nothing new
in the working directory)."""

import os

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.io import write

from kim_gnn import contract
from kim_gnn.cli import main
from kim_gnn.errors import KimGnnError

ITEM = "Bad_Test__MO_000000000000_000"


class Inputs:
    """Good models to start from, and a directory to make bad inputs in."""

    def __init__(self, tmp, deployed, converted, mace_model, mace_converted):
        self.tmp = tmp
        self.deployed = deployed
        self.converted = converted
        self.mace_model = mace_model
        self.mace_converted = mace_converted

    def path(self, name):
        return str(self.tmp / name)

    def file(self, name, data: bytes):
        p = self.tmp / name
        p.write_bytes(data)
        return str(p)

    def truncated(self, source, name):
        data = open(source, "rb").read()
        return self.file(name, data[: len(data) // 2])

    def structures(self, atoms, name="s.extxyz"):
        p = self.path(name)
        write(p, atoms)
        return p

    def plain_torchscript(self):
        p = self.path("plain.pt")
        torch.jit.script(torch.nn.Linear(3, 1)).save(p)
        return p

    def nequip_with_nan_weights(self):
        from kim_gnn.nequip.v06.convert import METADATA_KEYS

        extra = {k: "" for k in METADATA_KEYS}
        module = torch.jit.load(self.deployed, _extra_files=extra)
        with torch.no_grad():
            next(p for p in module.parameters() if p.numel() > 1).view(-1)[0] = float("nan")
        p = self.path("nan.pth")
        torch.jit.save(module, p, _extra_files={k: v for k, v in extra.items() if v})
        return p

    def mace_with_nan_weights(self):
        from kim_gnn.mace.convert import load_mace_model

        model = load_mace_model(self.mace_model)
        with torch.no_grad():
            model.readouts[0].linear.weight.view(-1)[0] = float("inf")
        p = self.path("nan.model")
        torch.save(model, p)
        return p

    def mace_state_dict(self):
        from kim_gnn.mace.convert import load_mace_model

        p = self.path("checkpoint.model")
        torch.save({"model": load_mace_model(self.mace_model).state_dict(), "epoch": 3}, p)
        return p

    def converted_with_metadata(self, **changes):
        extra = contract.empty_extra_files()
        module = torch.jit.load(self.converted, _extra_files=extra)
        for k, v in changes.items():
            extra[contract.METADATA_PREFIX + k] = v
        p = self.path("tampered.pt")
        torch.jit.save(module, p, _extra_files=extra)
        return p


def si(n=(2, 2, 2)):
    a = bulk("Si", "diamond", a=5.43, cubic=True) * n
    a.rattle(0.02, seed=1)
    return a


def overlapping():
    a = si((1, 1, 1))
    a.positions[1] = a.positions[0] + 1e-3
    return a


def huge_cell():
    return Atoms("Si2", positions=[[0, 0, 0], [2.3, 0, 0]], cell=[1e6, 10, 10], pbc=True)


def tiny_cell():
    return Atoms("Si", positions=[[0, 0, 0]], cell=[0.2, 0.2, 0.2], pbc=True)


def verify_args(x, structures):
    return ["verify", x.deployed, x.converted, "--structures", structures, "-q", "--json", x.path("report.json")]


# (id, how to make the command line from Inputs, fragment of the one error line)
CLI_CASES = [
    ("convert-missing-file", lambda x: ["convert", x.path("nothing.pth"), "-o", x.path(ITEM)], "no such file"),
    ("convert-empty-file", lambda x: ["convert", x.file("empty.pth", b""), "-o", x.path(ITEM)], "not a model file"),
    ("convert-random-bytes", lambda x: ["convert", x.file("r.pth", os.urandom(4096)), "-o", x.path(ITEM)],
     "not a model file"),
    ("convert-truncated-nequip", lambda x: ["convert", x.truncated(x.deployed, "t.pth"), "-o", x.path(ITEM)],
     "truncated or corrupt"),
    ("convert-truncated-mace", lambda x: ["convert", x.truncated(x.mace_model, "t.model"), "-o", x.path(ITEM)],
     "truncated or corrupt"),
    ("convert-plain-torchscript", lambda x: ["convert", x.plain_torchscript(), "-o", x.path(ITEM)],
     "not a model of a supported architecture"),
    ("convert-converted-model", lambda x: ["convert", x.converted, "-o", x.path(ITEM)], "already a converted"),
    ("convert-nequip-nan-weights", lambda x: ["convert", x.nequip_with_nan_weights(), "-o", x.path(ITEM)],
     "non-finite"),
    ("convert-mace-inf-weights", lambda x: ["convert", x.mace_with_nan_weights(), "-o", x.path(ITEM)],
     "non-finite"),
    ("convert-mace-checkpoint", lambda x: ["convert", x.mace_state_dict(), "-o", x.path(ITEM)], "state dict or training checkpoint"),
    ("convert-head-on-nequip", lambda x: ["convert", x.deployed, "--head", "a", "-o", x.path(ITEM)],
     "do not apply"),
    ("convert-bad-item-name", lambda x: ["convert", x.deployed, "-o", x.path("not-a-kim-name")],
     "invalid KIM portable model name"),
    ("convert-bad-driver-name", lambda x: ["convert", x.deployed, "-o", x.path(ITEM), "--driver-name", "TorchML"],
     "invalid KIM model driver name"),
    ("verify-missing-converted", lambda x: ["verify", x.deployed, x.path("none.pt"), "-q"], "no such model file"),
    ("verify-truncated-converted", lambda x: ["verify", x.deployed, x.truncated(x.converted, "t.pt"), "-q"],
     "not a loadable TorchScript file"),
    ("verify-plain-torchscript", lambda x: ["verify", x.deployed, x.plain_torchscript(), "-q"],
     "not a kim-gnn converted model"),
    ("verify-corrupt-metadata", lambda x: ["verify", x.deployed, x.converted_with_metadata(species="Si Si"), "-q"],
     "repeats Si"),
    ("verify-other-architecture", lambda x: ["verify", x.deployed, x.mace_converted, "-q"],
     "is a mace model but the original is a nequip model"),
    ("verify-garbage-structures", lambda x: verify_args(x, x.file("s.extxyz", b"\x00\x01garbage\n3\n")),
     "cannot read structures"),
    ("verify-zero-atoms", lambda x: verify_args(x, x.structures(Atoms())), "empty"),
    ("verify-overlapping-atoms", lambda x: verify_args(x, x.structures(overlapping())), "overlapping atoms"),
    ("verify-huge-cell", lambda x: verify_args(x, x.structures(huge_cell())), "cell vector 1e+06 A long"),
    ("verify-tiny-cell", lambda x: verify_args(x, x.structures(tiny_cell())), "use a larger cell"),
    ("verify-nan-coordinates", lambda x: verify_args(x, x.structures(Atoms("Si2", positions=[[0, 0, 0], [np.nan, 0, 0]]))),
     "non-finite"),
    ("verify-unknown-species", lambda x: verify_args(x, x.structures(Atoms("SiO", positions=[[0, 0, 0], [1.6, 0, 0]]))),
     "species O"),
    ("verify-zero-periodic-cell-vector",
     lambda x: verify_args(x, x.structures(Atoms("Si", cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=True))),
     "cell vector is zero"),
    ("info-truncated", lambda x: ["info", x.truncated(x.converted, "t.pt")], "not"),
]


@pytest.fixture(scope="module")
def models(nequip_models, mace_models):
    return dict(
        deployed=nequip_models.deployed(num_layers=2, species=("Si", "C")),
        converted=nequip_models.converted(num_layers=2, species=("Si", "C")),
        mace_model=mace_models.model(num_interactions=2, species=("Si",)),
        mace_converted=mace_models.converted(num_interactions=2, species=("Si",)),
    )


@pytest.fixture
def inputs(models, tmp_path):
    return Inputs(tmp_path, **models)


def _listing(path):
    return sorted(os.listdir(path))


@pytest.mark.parametrize("make_args, fragment", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(make_args, fragment, inputs, capsys):
    args = [str(a) for a in make_args(inputs)]
    before = _listing(inputs.tmp)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("kim-gnn: error:")]
    assert len(lines) == 1, err
    assert fragment in lines[0], err
    assert "Traceback" not in err and "internal error" not in err
    assert _listing(inputs.tmp) == before, "partial output left behind"


def _api_cases():
    from kim_gnn import StagedCalculator, build_staged_graphs, write_portable_model
    from kim_gnn import convert
    from kim_gnn.contract import StagedModelSpec, script_staged
    from kim_gnn.mace import convert_mace
    from kim_gnn.nequip import convert_nequip
    from kim_gnn.verification.harness import verify

    class Inner(torch.nn.Module):
        def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: list[torch.Tensor],
                    contributions: torch.Tensor) -> torch.Tensor:
            return coordinates.sum(1)

    def calc_energy(x, atoms):
        atoms.calc = StagedCalculator(x.converted)
        return atoms.get_potential_energy()

    return [
        ("convert_nequip-on-mace-file", lambda x: convert_nequip(x.mace_model), "not a TorchScript file"),
        ("convert_mace-on-nequip-file", lambda x: convert_mace(x.deployed), "TorchScript file, not a pickled MACE"),
        ("convert_mace-on-linear", lambda x: convert_mace(torch.nn.Linear(2, 2)), "unsupported model class"),
        ("convert-unknown-option", lambda x: convert(x.deployed, head="a"), "do not apply"),
        ("convert-in-memory-other", lambda x: convert(torch.nn.Linear(2, 2)), "not a model of a supported"),
        ("convert_nequip-nan", lambda x: convert_nequip(x.nequip_with_nan_weights()), "non-finite"),
        ("spec-duplicate-species", lambda x: script_staged(Inner(), StagedModelSpec(["Si", "Si"], 3.0, 2), "T"),
         "repeats Si"),
        ("spec-unknown-element", lambda x: script_staged(Inner(), StagedModelSpec(["Si", "Xx"], 3.0, 2), "T"),
         "unknown element name"),
        ("spec-unknown-dtype", lambda x: script_staged(Inner(), StagedModelSpec(["Si"], 3.0, 2, "float16"), "T"),
         "unknown model dtype"),
        ("spec-bad-cutoff", lambda x: script_staged(Inner(), StagedModelSpec(["Si"], float("nan"), 2), "T"),
         "cutoff"),
        ("calculator-missing-model", lambda x: StagedCalculator(x.path("missing.pt")), "no such model file"),
        ("calculator-overlapping-atoms", lambda x: calc_energy(x, overlapping()), "overlapping atoms"),
        ("calculator-huge-cell", lambda x: calc_energy(x, huge_cell()), "1e+06 A long"),
        ("export-unconverted", lambda x: write_portable_model(torch.nn.Linear(2, 2), x.path(ITEM)), "no kim-gnn spec"),
        ("graphs-zero-cutoff", lambda x: build_staged_graphs(si(), ["Si"], 0.0, 2), "cutoff"),
        ("graphs-zero-layers", lambda x: build_staged_graphs(si(), ["Si"], 3.0, 0), "layers"),
        ("verify-empty-structure", lambda x: verify(x.deployed, x.converted, structures=[Atoms()]), "empty"),
        ("verify-wrong-architecture", lambda x: verify(x.mace_model, x.converted), "is a nequip model"),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("call, fragment", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input(call, fragment, inputs):
    before = _listing(inputs.tmp)
    with pytest.raises(KimGnnError) as info:
        call(inputs)
    assert fragment in str(info.value)
    # made-up inputs aside, nothing new appears
    assert set(_listing(inputs.tmp)) - {"nan.pth"} == set(before)


def test_there_are_at_least_20_bad_inputs():
    assert len(CLI_CASES) + len(API_CASES) >= 20
    assert len({c[0] for c in CLI_CASES + API_CASES}) == len(CLI_CASES) + len(API_CASES)


def test_out_of_range_species_inside_the_model_names_the_species_count(models):
    """The emitted model itself refuses an out-of-range species index with a
    message naming its species count, not a one_hot / index error."""
    from kim_gnn.executor import load_staged_model

    for path, count in ((models["converted"], 2), (models["mace_converted"], 1)):
        module, _ = load_staged_model(path)
        coords = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
        edges = [torch.tensor([[0, 1], [1, 0]])] * 2
        for bad in (count, -1, 14):
            with pytest.raises(Exception) as info:
                module(torch.tensor([0, bad]), coords, *edges, torch.tensor([0, 0]))
            message = str(info.value)
            assert f"species index {bad} is out of range: this model has {count} species" in message
            assert "one_hot" not in message
        with pytest.raises(Exception, match="edge_index_1 refers to a particle outside"):
            module(torch.tensor([0, 0]), coords, edges[0], torch.tensor([[0, 5], [5, 0]]), torch.tensor([0, 0]))
