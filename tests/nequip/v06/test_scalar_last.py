"""The scalar-only last layer (``kim_gnn/nequip/scalar_last.py``): the
pruned model whose last layer computes only the scalar channels the readout
reads gives the numbers of the pruned model with the whole last layer (and of
the original); where it cannot be built the whole layer is kept and the
reason recorded."""

import subprocess
import sys
import textwrap

import pytest

from kim_gnn.executor import read_spec
from kim_gnn.nequip import convert_nequip
from kim_gnn.verification.structures import battery

SPECIES = ("Si", "C")
TOLERANCE = {"float64": 1e-12, "float32": 2e-5}

CASES = [  # layers, dtype, resnet, self-connection, l_max, parity
    (1, "float64", False, True, 2, True),
    (2, "float32", True, True, 2, True),
    (3, "float64", True, False, 1, True),
    (2, "float64", False, True, 2, False),
    (3, "float32", False, False, 1, False),
]


def _options(num_layers, dtype, resnet, use_sc, l_max, parity):
    return dict(num_layers=num_layers, species=SPECIES, model_dtype=dtype, resnet=resnet, use_sc=use_sc,
                l_max=l_max, parity=parity, zbl=num_layers == 2, seed=num_layers)


@pytest.mark.parametrize("case", CASES, ids=["L{}-{}{}{}-lmax{}{}".format(
    c[0], c[1], "-resnet" if c[2] else "", "" if c[3] else "-nosc", c[4], "" if c[5] else "-noparity") for c in CASES])
def test_scalar_only_last_layer_equals_whole_last_layer(nequip_models, staged_runs, tmp_path, case):
    source = nequip_models.deployed(**_options(*case))
    scalar, whole = tmp_path / "scalar.pt", tmp_path / "whole.pt"
    convert_nequip(source).save(str(scalar))
    convert_nequip(source, scalar_only_last_layer=False).save(str(whole))
    details = read_spec(scalar).details
    assert details["scalar_only_last_layer"] == "true", details
    assert details["receiver_only_layers"] == str(case[0])
    assert read_spec(whole).details["scalar_only_last_layer"] == "false"
    assert read_spec(whole).details["scalar_only_last_layer_reason"] == "not requested"
    staged_runs.assert_same_results(scalar, whole, battery(SPECIES, 3.5), TOLERANCE[case[1]])


def test_scalar_only_last_layer_passes_verify_in_a_fresh_process(nequip_models):
    """Against the original periodic model, as ``kim-gnn verify`` runs it (a
    fresh process with torch's defaults, without nequip / e3nn)."""
    from kim_gnn.verification.harness import verify

    options = _options(3, "float64", True, False, 2, True)
    path = nequip_models.converted(**options)
    assert read_spec(path).details["scalar_only_last_layer"] == "true"
    report = verify(nequip_models.deployed(**options), path, properties=False)
    assert report.passed, "\n" + report.summary()


def test_unpruned_and_unrequested_models_keep_the_whole_last_layer(nequip_models, tmp_path):
    source = nequip_models.deployed(**_options(1, "float64", False, True, 2, True))
    path = tmp_path / "unpruned.pt"
    convert_nequip(source, prune=False).save(str(path))
    details = read_spec(path).details
    assert details["scalar_only_last_layer"] == "false"
    assert details["scalar_only_last_layer_reason"] == "unpruned model"


def test_whole_last_layer_when_the_check_fails(nequip_models, staged_runs, tmp_path, monkeypatch):
    """A restricted layer that does not match the whole one is never used."""
    from kim_gnn.nequip.v06 import scalar_last

    def fail(*args, **kwargs):
        raise scalar_last.NotApplicable("the restricted last layer differs from the whole layer by 1.0e+00")

    source = nequip_models.deployed(**_options(2, "float64", False, True, 2, True))
    monkeypatch.setattr(scalar_last, "check", fail)
    path = tmp_path / "fallback.pt"
    convert_nequip(source).save(str(path))
    details = read_spec(path).details
    assert details["scalar_only_last_layer"] == "false"
    assert details["scalar_only_last_layer_reason"].startswith("the restricted last layer differs")
    assert details["receiver_only_layers"] == "2"  # the last one a ReceiverLayer, still pruned


def test_whole_last_layer_without_nequip_at_conversion(nequip_models, staged_runs, tmp_path):
    """Converting where nequip / e3nn cannot be imported (as in .venv-modern)
    keeps the whole last layer, says why, and gives the same numbers."""
    source = nequip_models.deployed(**_options(2, "float64", False, True, 2, True))
    blocked = tmp_path / "blocked.pt"
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('nequip', 'e3nn', 'mace'):
                    raise ImportError(name)
        sys.meta_path.insert(0, Block())
        from kim_gnn.nequip.v06.convert import convert_nequip
        convert_nequip({str(source)!r}).save({str(blocked)!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    details = read_spec(blocked).details
    assert details["scalar_only_last_layer"] == "false"
    assert "not importable" in details["scalar_only_last_layer_reason"]
    scalar = tmp_path / "scalar.pt"
    convert_nequip(source).save(str(scalar))
    assert read_spec(scalar).details["scalar_only_last_layer"] == "true"
    staged_runs.assert_same_results(scalar, blocked, battery(SPECIES, 3.5)[:4], TOLERANCE["float64"])
