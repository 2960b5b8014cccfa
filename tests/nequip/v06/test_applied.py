"""What a NequIP 0.5/0.6 conversion applied is what its spec says, and an
optimisation that cannot be applied is one warning line, never silent: the
CLI as a user runs it (torch's defaults: no TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD,
which e3nn 0.4.4's import otherwise needs), a conversion where nequip cannot
be imported (no scalar-only last layer), a layer ReceiverLayer does not know."""

import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from kim_gnn.errors import OptimisationNotApplied
from kim_gnn.executor import read_spec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
OPTIONS = dict(num_layers=2, species=("Si", "C"), model_dtype="float64", l_max=2, seed=4)
ITEM = "Applied__MO_000000000000_000"


def _user_env():
    """The environment of a user's shell: no TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD."""
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    env["PYTHONPATH"] = REPO
    return env


def _cli(tmp_path, *args, blocked=()):
    """``kim-gnn ARGS`` in a fresh process under torch's defaults, with the
    packages ``blocked`` not importable."""
    script = tmp_path / "cli.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {tuple(blocked)!r}:
                    raise ImportError(name)
        sys.meta_path.insert(0, Block())
        assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in __import__('os').environ
        from kim_gnn.cli import main
        sys.exit(main({[str(a) for a in args]!r}))
    """))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=_user_env(),
                          cwd=str(tmp_path))


def _warnings(stderr):
    return [line for line in stderr.splitlines() if line.startswith("kim-gnn: warning:")]


def test_cli_convert_under_torch_defaults_applies_the_scalar_only_last_layer(nequip_models, tmp_path):
    source = nequip_models.deployed(**OPTIONS)
    proc = _cli(tmp_path, "convert", source, "-o", tmp_path / ITEM)
    assert proc.returncode == 0, proc.stderr
    assert _warnings(proc.stderr) == [], proc.stderr
    details = read_spec(tmp_path / ITEM).details
    assert details["scalar_only_last_layer"] == "true", details
    assert "scalar_only_last_layer_reason" not in details
    assert (details["pruned"], details["receiver_only_layers"], details["whole_layers"]) == ("true", "2", "0")
    assert (details["kernels"], details["kernels_applied"]) == ("aten", "none")


def test_e3nn_import_leaves_the_process_as_it_was(tmp_path):
    """The scoped import allows e3nn's constants for the import only: no
    environment variable, ``slice`` not left in torch's weights-only allow-list."""
    script = textwrap.dedent("""
        import os, torch
        from kim_gnn.nequip.v06.legacy_import import e3nn_importable
        before = list(torch.serialization.get_safe_globals())
        with e3nn_importable():
            import e3nn.o3
        after = list(torch.serialization.get_safe_globals())
        # slice allowed for the import only (torch itself may register its own
        # types while e3nn imports torch submodules)
        assert slice not in after and all(g in after for g in before), (before, after)
        assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
        print(e3nn.o3.wigner_3j(1, 1, 0).shape)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_user_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "torch.Size([3, 3, 1])"


def test_cli_warns_in_one_line_when_the_scalar_only_last_layer_cannot_be_built(nequip_models, tmp_path):
    """Without nequip 0.5/0.6 the last layer's structure cannot be read: the
    whole last layer runs, one warning line says so and why."""
    source = nequip_models.deployed(**OPTIONS)
    proc = _cli(tmp_path, "convert", source, "-o", tmp_path / ITEM, blocked=("nequip", "e3nn"))
    assert proc.returncode == 0, proc.stderr
    lines = _warnings(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kim-gnn: warning: scalar-only last layer not applied"), lines
    assert "not importable here" in lines[0]
    details = read_spec(tmp_path / ITEM).details
    assert details["scalar_only_last_layer"] == "false"
    assert "not importable here" in details["scalar_only_last_layer_reason"]
    assert details["receiver_only_layers"] == "2"


def test_a_layer_receiver_layer_does_not_know_runs_whole_with_a_warning(nequip_models, monkeypatch):
    """A layer whose parts ReceiverLayer does not know (forced here) runs
    whole; the spec and one warning per optimisation lost say so."""
    from kim_gnn.nequip.v06 import convert as nequip_convert

    real = nequip_convert.receiver_layer_reason
    calls = []

    def first_unknown(layer):
        calls.append(layer)
        return "InteractionBlock parts differ (forced by the test)" if len(calls) == 1 else real(layer)

    monkeypatch.setattr(nequip_convert, "receiver_layer_reason", first_unknown)
    source = nequip_models.deployed(**OPTIONS)
    with pytest.warns(OptimisationNotApplied) as record:
        staged = nequip_convert.convert_nequip(source)
    messages = [str(w.message) for w in record if issubclass(w.category, OptimisationNotApplied)]
    assert len(messages) == 1, messages
    assert messages[0].startswith("receiver-only layers not applied to layer(s) 1 of 2"), messages
    assert "\n" not in messages[0]
    details = staged.spec.details
    assert (details["receiver_only_layers"], details["whole_layers"]) == ("1", "1")
    assert details["whole_layers_reason"] == "InteractionBlock parts differ (forced by the test)"
    assert details["scalar_only_last_layer"] == "true"


def test_no_warning_when_everything_asked_for_is_applied(nequip_models):
    from kim_gnn.nequip import convert_nequip

    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimisationNotApplied)
        convert_nequip(nequip_models.deployed(**OPTIONS))
        # not asked for: no warning either
        convert_nequip(nequip_models.deployed(**OPTIONS), scalar_only_last_layer=False)
        convert_nequip(nequip_models.deployed(**OPTIONS), prune=False)
