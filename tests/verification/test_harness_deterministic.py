"""``verify`` evaluates, on both sides, exactly the structures the seeded
battery builds, the same bytes in every process and every run: a structure
that changes on the way (mutated in place while the original runs, rebuilt
otherwise in the fresh process) is an error of the harness, never a small
difference on one structure (the intermittent ``rattled_bulk`` failure that
prompted this: kim_gnn/verification/harness.py, ``_structure_changed``)."""

import dataclasses
import os
import subprocess
import sys

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
sys.path.insert(0, os.path.join(TESTS, "plugins"))
ROOT = os.path.dirname(TESTS)

FINGERPRINTS = """
from kim_gnn.verification.structures import battery, property_cases, structure_fingerprint
for species, cutoff in ((("Si",), 3.5), (("Si", "C"), 5.0)):
    for case in battery(species, cutoff) + property_cases(species, cutoff):
        print(case.name, structure_fingerprint(case.atoms), structure_fingerprint(case.reference))
"""


def _fingerprints_in_a_new_process(**env) -> str:
    full = dict(os.environ, **env)
    full["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", FINGERPRINTS], env=full, cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout


def test_the_battery_is_the_same_bytes_in_every_process():
    first = _fingerprints_in_a_new_process(PYTHONHASHSEED="1", OMP_NUM_THREADS="1")
    second = _fingerprints_in_a_new_process(PYTHONHASHSEED="2", OMP_NUM_THREADS="2")
    assert first == second
    assert len(first.splitlines()) == 2 * 13
    names = [line.split()[0] for line in first.splitlines()]
    assert names[0] == "rattled_bulk"


def test_the_fingerprint_sees_the_last_bit():
    import numpy as np

    from kim_gnn.verification.structures import battery, structure_fingerprint

    atoms = battery(("Si",), 3.5)[0].atoms
    moved = atoms.copy()
    moved.positions[3, 1] = np.nextafter(moved.positions[3, 1], 10.0)
    assert structure_fingerprint(atoms) == structure_fingerprint(atoms.copy())
    assert structure_fingerprint(moved) != structure_fingerprint(atoms)


def test_verify_twice_gives_the_same_numbers_on_the_same_structures(toy_source):
    import toy_kim_adapter as toy

    from kim_gnn.verification.harness import verify
    from kim_gnn.verification.structures import battery, structure_fingerprint

    converted = toy.convert_toy(toy_source)
    runs = [verify(toy_source, converted, properties=False) for _ in range(2)]
    for report in runs:
        assert report.passed, report.summary()
    # both sides evaluated the battery's own bytes (the toy example: Si, cutoff 4 A)
    built = battery(("Si",), 4.0)
    assert [c.name for c in runs[0].cases] == [c.name for c in built]
    assert [c.structure_sha256 for c in runs[0].cases] == [structure_fingerprint(c.atoms) for c in built]
    assert all(c["structure_sha256"] for c in runs[0].to_dict()["cases"])  # in the JSON report too
    keys = ("structure_sha256", "energy_original", "energy_converted", "energy_error_per_atom", "max_force_error",
            "max_stress_error", "max_atomic_energy_error", "n_particles", "n_edges")
    first, second = ([tuple(getattr(c, k) for k in keys) for c in r.cases] for r in runs)
    assert first == second
    # each side, called again on the first structure after all others, to rounding
    tol = runs[0].tolerances
    for report in runs:
        repeat = report.cases[0].repeat_differences
        assert set(repeat) == {"original", "converted"}
        for d in repeat.values():
            assert d["energy_per_atom"] <= tol["energy_per_atom"] / 10 and d["forces"] <= tol["forces"] / 10
        assert all(c.repeat_differences is None for c in report.cases[1:])


def test_a_side_that_is_not_reproducible_is_named(toy_source, monkeypatch):
    import toy_kim_adapter as toy

    from kim_gnn.verification import harness
    from kim_gnn.verification.structures import battery

    calls = []
    original_of = harness.detect_adapter

    def drifting_adapter(path):
        adapter = original_of(path)
        make = adapter.original

        def original(*args, **kwargs):
            model = make(*args, **kwargs)
            evaluate = model.evaluate

            def drifting(atoms):
                r = evaluate(atoms)
                calls.append(1)
                if len(calls) > 1:  # from the second call on, as a model that warms up to other numbers
                    r.energy += 1e-6
                    r.forces = r.forces.copy()
                    r.forces[2] += 1e-6  # one atom's: the report names it
                return r

            model.evaluate = drifting
            return model

        return dataclasses.replace(adapter, original=original)

    monkeypatch.setattr(harness, "detect_adapter", drifting_adapter)
    atoms = battery(("Si",), 4.0)[0].atoms
    report = harness.verify(toy_source, toy.convert_toy(toy_source), structures=[atoms], include_builtin=False)
    (case,) = report.cases
    assert case.repeat_differences["original"]["forces"] == pytest.approx(1e-6)
    assert case.repeat_differences["converted"]["forces"] <= report.tolerances["forces"] / 10
    assert "the original model is not reproducible here" in case.notes
    assert f"forces moved on atoms 2 (of {len(atoms)}), per-atom energies on atoms none" in case.notes, case.notes
    assert "the original model is not reproducible here" in report.summary()


def test_a_structure_changed_while_the_original_runs_is_an_error(toy_source, monkeypatch):
    import toy_kim_adapter as toy

    from kim_gnn.verification import harness
    from kim_gnn.verification.structures import battery

    real = harness._original_with_stress

    def mutating(reference_model, atoms, model_dtype, tol):
        out = real(reference_model, atoms, model_dtype, tol)
        atoms.positions[0, 0] += 1e-10  # after the original has seen it
        return out

    monkeypatch.setattr(harness, "_original_with_stress", mutating)
    atoms = battery(("Si",), 4.0)[0].atoms  # rattled_bulk of the toy example (Si, cutoff 4 A)
    report = harness.verify(toy_source, toy.convert_toy(toy_source), structures=[atoms], include_builtin=False)
    assert not report.passed
    (case,) = report.cases
    assert case.error and "changed in place" in case.error, report.summary()
