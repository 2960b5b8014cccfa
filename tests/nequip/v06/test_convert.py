"""The NequIP adapter: what it carries over, what it refuses, where it runs."""

import os

import numpy as np
import pytest
from skip_policy import require_import
import torch
from ase.build import bulk

from kim_gnn import contract
from kim_gnn.errors import KimGnnError, UnsupportedModelError
from kim_gnn.executor import StagedExecutor, read_spec
from kim_gnn.nequip import convert_nequip, inspect_nequip
from kim_gnn.nequip.v06.convert import METADATA_KEYS
from kim_gnn.nequip.v06.reference import NequIPOriginal

OPTIONS = dict(num_layers=2, species=("Si", "C"), model_dtype="float64", zbl=True)


def _modified_copy(src, dst, edit):
    """Load a deployed file, change it in place with ``edit``, save it with its metadata."""
    extra = {k: "" for k in METADATA_KEYS}
    module = torch.jit.load(src, _extra_files=extra)
    module = edit(module) or module
    torch.jit.save(module, dst, _extra_files={k: v for k, v in extra.items() if v})
    return dst


def test_provenance_is_recorded(nequip_models):
    deployed = nequip_models.deployed(**OPTIONS)
    spec = read_spec(nequip_models.converted(**OPTIONS))
    info = inspect_nequip(deployed)
    assert spec.architecture == "nequip" and spec.architecture_version == "0.6.2"
    assert spec.species == info.type_names == ["C", "Si"]  # nequip orders types by atomic number
    assert spec.cutoff == 3.5 and spec.num_layers == 2 and spec.model_dtype == "float64"
    assert spec.source_sha256 == info.sha256 and len(info.sha256) == 64
    assert spec.source_file == os.path.basename(deployed)
    assert spec.kim_gnn_version
    assert spec.details["pair_potentials"] == "ZBL"


def test_forward_signature_and_outputs_follow_the_contract(nequip_models):
    path = nequip_models.converted(num_layers=3, species=("Si",))
    module = torch.jit.load(path)
    names = [a.name for a in module.forward.schema.arguments][1:]
    assert names == contract.input_names(3)
    executor = StagedExecutor(path)
    graphs = executor.build_graphs(bulk("Si", "diamond", a=5.43))
    coords = torch.tensor(graphs.positions, requires_grad=True)
    out = executor.module(torch.tensor(graphs.species), coords, *[torch.tensor(e) for e in graphs.edge_index],
                          torch.tensor(graphs.contributions))
    assert out.dtype == torch.float64 and out.shape == (graphs.num_particles,)
    assert torch.all(out[graphs.num_contributing:] == 0)
    assert torch.all(out[: graphs.num_contributing] != 0)


def test_same_numbers_whatever_the_default_dtype(nequip_models, staged_runs):
    """The C++ driver runs with float32 as torch's default dtype."""
    atoms = bulk("Si", "diamond", a=5.0, cubic=True)
    atoms.symbols[0] = "C"
    atoms.rattle(0.05, seed=0)
    results = staged_runs.under_default_dtypes(nequip_models.converted(**OPTIONS), atoms)
    assert results[0].energy == results[1].energy
    assert np.array_equal(results[0].forces, results[1].forces)


def test_runs_where_nequip_and_e3nn_cannot_be_imported(nequip_models, staged_runs):
    atoms = bulk("Si", "diamond", a=5.43)
    energy = staged_runs.energy_without_architecture_packages(nequip_models.converted(**OPTIONS), atoms)
    expected = NequIPOriginal(nequip_models.deployed(**OPTIONS)).evaluate(atoms).energy
    assert abs(energy - expected) < 1e-10 * max(1.0, abs(expected))


def test_global_energy_shift_is_refused(nequip_models, tmp_path):
    from kim_gnn.nequip.v06.example import build_example_nequip

    # a RescaleOutput whose total_energy shift is a per-structure constant
    path = build_example_nequip(tmp_path / "shift.pth", num_layers=1, r_max=3.5)

    def add_shift(module):
        module.model.has_shift = True
        module.model.shift_by = torch.tensor(1.0, dtype=torch.float64)

    _modified_copy(path, str(tmp_path / "shifted.pth"), add_shift)
    with pytest.raises(UnsupportedModelError, match="global per-structure constant"):
        convert_nequip(tmp_path / "shifted.pth")


@pytest.mark.parametrize("reduce, constant, message", [("mean", 1.0, "'mean'"), ("sum", 0.1, "'normalized_sum'")])
def test_non_local_energy_reductions_are_refused(nequip_models, tmp_path, reduce, constant, message):
    src = nequip_models.deployed(num_layers=1)

    def edit(module):
        module.model.model.func.total_energy_sum.reduce = reduce
        module.model.model.func.total_energy_sum.constant = constant

    _modified_copy(src, str(tmp_path / "reduce.pth"), edit)
    with pytest.raises(UnsupportedModelError, match=f"total_energy_sum.*{message}.*not a local sum"):
        convert_nequip(tmp_path / "reduce.pth")


def test_frozen_model_is_refused(nequip_models, tmp_path):
    src = nequip_models.deployed(num_layers=1)
    _modified_copy(src, str(tmp_path / "frozen.pth"), lambda m: torch.jit.freeze(m.eval()))
    with pytest.raises(UnsupportedModelError, match="frozen"):
        convert_nequip(tmp_path / "frozen.pth")


def _deploy_with_builders(tmp_path, builders, name):
    require_import("nequip")
    import yaml
    from nequip.scripts.deploy import main

    from kim_gnn.nequip.v06.example import example_config

    config = example_config(num_layers=1, r_max=3.5, workdir=str(tmp_path))
    config["model_builders"] = builders
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    main(["--verbose", "WARNING", "build", "--model", str(tmp_path / f"{name}.yaml"), str(tmp_path / f"{name}.pth")])
    return tmp_path / f"{name}.pth"


def insert_unknown_module(model, config):
    """A nequip model builder (used by name below) adding a module the adapter does not know."""
    from nequip.nn import GraphModuleMixin

    class FeatureDoubler(GraphModuleMixin, torch.nn.Module):
        def __init__(self, irreps_in=None):
            super().__init__()
            self._init_irreps(irreps_in=irreps_in)

        def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            data["node_features"] = 2.0 * data["node_features"]
            return data

    module = FeatureDoubler(irreps_in=dict(model.layer0_convnet.irreps_out))
    model.insert(name="doubler", module=module, after="layer0_convnet")
    return model


def test_unknown_module_is_refused_by_name(tmp_path):
    builders = ["SimpleIrrepsConfig", "EnergyModel", f"{__name__}.insert_unknown_module", "PerSpeciesRescale",
                "StressForceOutput", "RescaleEnergyEtc"]
    path = _deploy_with_builders(tmp_path, builders, "unknown")
    with pytest.raises(UnsupportedModelError, match="unsupported module 'doubler' .FeatureDoubler."):
        convert_nequip(path)


def test_force_only_model_converts(tmp_path):
    """ForceOutput (GradientOutput, no stress) is supported like StressOutput."""
    from kim_gnn.verification.harness import verify

    builders = ["SimpleIrrepsConfig", "EnergyModel", "PerSpeciesRescale", "ForceOutput", "RescaleEnergyEtc"]
    path = _deploy_with_builders(tmp_path, builders, "forces")
    convert_nequip(path).save(str(tmp_path / "forces.pt"))
    report = verify(path, tmp_path / "forces.pt", properties=False)
    assert report.passed, report.summary()


def test_not_a_torchscript_file(tmp_path):
    bad = tmp_path / "deployed.pth"
    bad.write_text("not a model")
    with pytest.raises(KimGnnError, match="not a TorchScript file"):
        convert_nequip(bad)


def test_torchscript_that_is_not_nequip(tmp_path):
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "linear.pt"))
    with pytest.raises(UnsupportedModelError, match="not a NequIP deployed model"):
        convert_nequip(tmp_path / "linear.pt")


def test_lennard_jones_pair_term_converts(nequip_models):
    from kim_gnn.verification.harness import verify

    options = dict(num_layers=2, species=("Si", "C"), pair_style="LJ")
    report = verify(nequip_models.deployed(**options), nequip_models.converted(**options), properties=False)
    assert report.passed, report.summary()
    assert read_spec(nequip_models.converted(**options)).details["pair_potentials"] == "SimpleLennardJones"


def test_graph_model_dtype_is_read_from_the_module(nequip_models):
    info = inspect_nequip(nequip_models.deployed(num_layers=1, model_dtype="float32"))
    assert info.model_dtype == torch.float32 and info.default_dtype == torch.float64
