"""Contract edges: provenance that survives every way of saving, 2D cells
with a zero third vector, the lone atom's dummy particle."""

import io

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from kim_gnn import contract
from kim_gnn.executor import StagedExecutor, read_spec
from kim_gnn.graphs import build_staged_graphs


@pytest.fixture(scope="module")
def converted(nequip_models):
    from kim_gnn.nequip import convert_nequip

    deployed = nequip_models.deployed(num_layers=2, species=("Si", "C"))
    return deployed, convert_nequip(deployed)


def _saves(module, tmp_path):
    """Every way a user may save a converted module; yields (how, path)."""
    p = tmp_path / "method.pt"
    module.save(str(p))
    yield "module.save", p

    p = tmp_path / "jit_save.pt"
    torch.jit.save(module, str(p))
    yield "torch.jit.save(path)", p

    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    p = tmp_path / "buffer.pt"
    p.write_bytes(buffer.getvalue())
    yield "torch.jit.save(buffer)", p

    reloaded = torch.jit.load(str(tmp_path / "method.pt"))
    p = tmp_path / "reloaded.pt"
    torch.jit.save(reloaded, str(p))  # a loaded module has no extra files to write
    yield "reloaded then saved", p

    frozen = torch.jit.freeze(torch.jit.load(str(tmp_path / "method.pt")).eval())
    p = tmp_path / "frozen.pt"
    torch.jit.save(frozen, str(p))
    yield "frozen then saved", p

    frozen = torch.jit.freeze(module.eval())
    p = tmp_path / "frozen_direct.pt"
    frozen.save(str(p))
    yield "freeze(converted).save", p


def test_provenance_survives_every_way_of_saving(converted, tmp_path):
    deployed, module = converted
    spec = module.spec
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=2)
    reference = StagedExecutor(_first(module, tmp_path)).run(atoms).energy
    for how, path in _saves(module, tmp_path):
        assert read_spec(path) == spec, how
        assert StagedExecutor(path).run(atoms).energy == pytest.approx(reference, abs=1e-12), how


def _first(module, tmp_path):
    p = tmp_path / "first.pt"
    module.save(str(p))
    return p


def test_export_of_a_reloaded_module_keeps_provenance(converted, tmp_path):
    from kim_gnn.export import write_portable_model

    _, module = converted
    module.save(str(tmp_path / "m.pt"))
    reloaded = torch.jit.load(str(tmp_path / "m.pt"))
    out = write_portable_model(reloaded, tmp_path / "Si_Re__MO_000000000000_000")
    assert read_spec(out) == module.spec


def test_two_dimensional_cell_with_zero_third_vector(converted, tmp_path):
    """pbc T,T,F with no third cell vector is valid input and gives the same
    result as the same slab with any third vector."""
    deployed, module = converted
    path = tmp_path / "m.pt"
    module.save(str(path))
    slab = bulk("Si", "diamond", a=5.43, cubic=True) * (1, 1, 2)
    slab.center(vacuum=5.0, axis=2)
    slab.pbc = (True, True, False)
    slab.rattle(0.03, seed=3)
    flat = slab.copy()
    flat.cell[2] = 0.0
    assert np.all(flat.cell.array[2] == 0.0)
    a = StagedExecutor(path).run(slab)
    b = StagedExecutor(path).run(flat)
    assert b.energy == pytest.approx(a.energy, abs=1e-10)
    assert np.allclose(a.forces, b.forces, atol=1e-10)

    from kim_gnn.verification.harness import verify

    report = verify(deployed, path, structures=[flat])
    assert report.passed, report.summary()


def test_lone_atom_near_the_dummy_position_has_no_edges():
    atom = np.array(contract.DUMMY_PARTICLE_POSITION) - 0.5
    graphs = build_staged_graphs(Atoms("C", positions=[atom]), ["Si", "C"], 4.0, 3)
    assert graphs.num_particles == 2
    assert graphs.species.tolist() == [1, 1]
    assert graphs.contributions.tolist() == [contract.CONTRIBUTING, contract.NOT_CONTRIBUTING]
    assert all(e.shape == (2, 0) for e in graphs.edge_index)


def test_info_reads_a_frozen_resaved_model(converted, tmp_path, capsys):
    from kim_gnn.cli import main

    _, module = converted
    frozen = torch.jit.freeze(module.eval())
    path = tmp_path / "frozen.pt"
    torch.jit.save(frozen, str(path))
    assert main(["info", str(path), "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "converted kim-gnn model" and info["species"] == module.spec.species
