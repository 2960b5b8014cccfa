"""Run a converted model in a fresh interpreter: the one fresh-process worker
of the verification, with job kinds.

Started by ``run_fresh`` (below) as
``python -m kim_gnn.verification._fresh_worker job.pkl out.pkl``.
torch keeps its default settings (default dtype float32, as in the C++
driver), and the packages in ``job.pkl``'s ``blocked`` are made unimportable:
the converted model must stand on its own, as it does inside the driver
(``verify`` blocks the union of every registered adapter's ``import_names``,
``kim_gnn.adapters.blocked_import_names``, that the parent computed; this
process imports no adapter). Job kinds:

* ``evaluate`` (``verify``): the model on a list of structures, through the
  executor; one result dict (or ``{'error': ...}``) per structure;
* ``species_probe`` (``kim-gnn check``'s species check): the model, loaded
  and frozen as the driver loads it, called with one species index on a
  dimer; ``{'accepted': bool, 'error': str}``.
"""

import importlib.abc
import pickle
import sys
from typing import Callable, Iterable, List, NamedTuple, Optional


class _Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, blocked):
        self.blocked = frozenset(blocked)

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ImportError(f"{name} is blocked: a converted model must run without it")
        return None


def _evaluate(payload: dict) -> List[dict]:
    from ase import Atoms

    from kim_gnn.errors import KimGnnError
    from kim_gnn.executor import StagedExecutor

    executors = {}
    results = []
    jobs = payload["jobs"]
    for k, job in enumerate(jobs):
        print(f"progress: [{k + 1}/{len(jobs)}] {job['name']}", file=sys.stderr, flush=True)
        try:
            skin = float(job.get("skin", 0.0))
            if skin not in executors:
                executors[skin] = StagedExecutor(payload["model"], skin=skin)
            atoms = Atoms(numbers=job["numbers"], positions=job["positions"], cell=job["cell"], pbc=job["pbc"])
            r = executors[skin].run(atoms)
            results.append({
                "energy": r.energy, "energies": r.energies, "forces": r.forces, "stress": r.stress,
                "num_particles": r.num_particles, "num_edges": list(r.num_edges),
                "energies_shape": tuple(r.energies_shape), "padding_energy": r.padding_energy,
            })
        except KimGnnError as exc:
            results.append({"error": str(exc)})
        except Exception as exc:  # the converted model itself failed (TorchScript raised): a failed case
            from kim_gnn.errors import first_line

            results.append({"error": f"{type(exc).__name__}: {first_line(exc)}"})
    return results


def _species_probe(payload: dict) -> dict:
    import torch

    from kim_gnn.executor import load_staged_model

    module, _ = load_staged_model(payload["model"])
    spacing, n = float(payload["spacing"]), int(payload["index"])
    coords = torch.tensor([[0.0, 0.0, 0.0], [spacing, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    edges = [torch.tensor([[0, 1], [1, 0]], dtype=torch.int64)] * int(payload["num_layers"])
    try:
        module(torch.tensor([0, n]), coords, *edges, torch.tensor([0, 0]))
        return {"accepted": True}
    except Exception as exc:
        return {"accepted": False, "error": str(exc)}


#: Job kind -> what the worker does with the payload.
KINDS = {"evaluate": _evaluate, "species_probe": _species_probe}


def main(job_file: str, out_file: str) -> int:
    # (the job file holds only builtins and numpy arrays)
    with open(job_file, "rb") as fh:
        job = pickle.load(fh)
    sys.meta_path.insert(0, _Blocker(job["blocked"]))
    result = KINDS[job["kind"]](job["payload"])
    with open(out_file, "wb") as fh:
        pickle.dump(result, fh)
    return 0


# --- the parent's side ----------------------------------------------------------


class FreshRun(NamedTuple):
    """How a fresh process ended: its exit status (negative: killed by that
    signal), its job's result (None when it wrote none) and the lines of its
    standard error (without the progress lines)."""

    returncode: int
    result: object
    stderr: List[str]


def run_fresh(kind: str, payload: dict, blocked: Iterable[str] = (),
              progress: Optional[Callable[[str], None]] = None, timeout: Optional[float] = None) -> FreshRun:
    """Run one job of ``kind`` in a new interpreter (this module as
    ``__main__``), with the packages ``blocked`` unimportable there; its
    ``progress: ...`` lines on standard error go to ``progress``. Past
    ``timeout`` seconds the process is killed and ``TimeoutExpired`` raised."""
    import os
    import subprocess
    import tempfile
    import threading

    if kind not in KINDS:
        raise ValueError(f"unknown fresh-process job kind {kind!r} (known: {', '.join(KINDS)})")
    with tempfile.TemporaryDirectory(prefix="kim-gnn-verify-") as tmp:
        job_file = os.path.join(tmp, "jobs.pkl")
        out_file = os.path.join(tmp, "results.pkl")
        with open(job_file, "wb") as fh:
            pickle.dump({"kind": kind, "payload": payload, "blocked": list(blocked)}, fh)
        env = dict(os.environ)
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kim_gnn.verification._fresh_worker", job_file, out_file],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        lines: List[str] = []
        killed = []

        def kill():
            killed.append(True)
            proc.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            with proc.stderr:
                for line in proc.stderr:
                    line = line.rstrip("\n")
                    if line.startswith("progress: "):
                        if progress:
                            progress(line[len("progress: "):])
                    else:
                        lines.append(line)
            proc.wait()
        finally:
            if timer:
                timer.cancel()
        if killed:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        result = None
        if proc.returncode == 0 and os.path.exists(out_file):
            with open(out_file, "rb") as fh:
                result = pickle.load(fh)
        return FreshRun(proc.returncode, result, lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
