"""The verification harness reports, per structure, the largest difference
between the converted model's per-atom virials and the original's own
edge-force decomposition (kim_gnn/verification/atomic_virials_reference.py)."""

import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/
sys.path.insert(0, os.path.join(TESTS, "plugins"))

DATA = os.path.join(TESTS, "data", "forward_before_virials")


def test_verify_reports_the_largest_per_atom_virial_difference(toy_source):
    import toy_kim_adapter as toy

    from kim_gnn.verification.harness import verify

    report = verify(toy_source, toy.convert_toy(toy_source), properties=False)
    assert report.passed, report.summary()
    for case in report.cases:
        assert case.max_atomic_virial_error is not None, case.name
        assert case.max_atomic_virial_error <= case.atomic_virial_limit
    assert "max|dW_i|" in report.summary()
    assert report.to_dict()["units"]["max_atomic_virial_error"] == "eV"


def test_a_wrong_decomposition_fails_the_case(toy_source, monkeypatch):
    import numpy as np
    import toy_kim_adapter as toy

    from kim_gnn.verification.harness import verify

    right = toy.ToyOriginal.atomic_virials
    monkeypatch.setattr(toy.ToyOriginal, "atomic_virials", lambda self, atoms: right(self, atoms) * 1.001
                        + np.where(np.arange(len(atoms))[:, None] == 0, 1e-6, 0.0))
    report = verify(toy_source, toy.convert_toy(toy_source), properties=False)
    assert not report.passed
    assert any("per-atom virials differ" in c.notes for c in report.cases)


def test_an_older_conversion_is_noted_not_failed(toy_source):
    from kim_gnn.verification.harness import verify

    report = verify(toy_source, os.path.join(DATA, "toy.staged.pt"), properties=False)
    assert report.passed, report.summary()
    assert all(c.max_atomic_virial_error is None and "no energy_and_edge_vectors" in c.notes for c in report.cases)
