"""Run a converted model on a list of structures in a fresh interpreter.

Started by ``verify`` as ``python -m kim_gnn.verification._fresh_worker jobs.pkl out.pkl``
(``fresh.run_fresh``), or forked per job by a zygote started as ``python -m
kim_gnn.verification._fresh_worker --zygote`` (``fresh._Zygote``). torch keeps its default settings (default dtype float32, as in the C++
driver), and the architecture packages are made unimportable: the converted
model must stand on its own, as it does inside the driver. Which packages:
``jobs.pkl``'s ``blocked``, the union of every registered adapter's
``import_names`` (``kim_gnn.adapters.blocked_import_names``) that the parent
computed; this process imports no adapter.

The one fresh-process worker of the verification, with job kinds
(``jobs.pkl``'s ``kind``; ``KINDS``): ``evaluate`` (``verify``: one result
dict, or ``{'error': ...}``, per structure) and ``species_probe`` (``kim-gnn
check``'s species check: the model, loaded and frozen as the driver loads
it, called with one species index on a dimer; ``{'accepted', 'error'}``) and
``describe`` (what the process looks like to a job: the tests of ``fresh``).
"""

import importlib.abc
import pickle
import sys


class _Blocker(importlib.abc.MetaPathFinder):
    def __init__(self, blocked):
        self.blocked = frozenset(blocked)

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ImportError(f"{name} is blocked: a converted model must run without it")
        return None


def atoms_of(job: dict):
    """The structure of a job, as the parent sent it."""
    from ase import Atoms

    return Atoms(numbers=job["numbers"], positions=job["positions"], cell=job["cell"], pbc=job["pbc"])


def evaluate(payload: dict) -> list:
    from kim_gnn.errors import KimGnnError
    from kim_gnn.executor import StagedExecutor
    from kim_gnn.verification.structures import structure_fingerprint

    executors = {}
    results = []
    jobs = payload["jobs"]
    for k, job in enumerate(jobs):
        print(f"progress: [{k + 1}/{len(jobs)}] {job['name']}", file=sys.stderr, flush=True)
        try:
            skin = float(job.get("skin", 0.0))
            if skin not in executors:
                # loaded and frozen once, as the driver does; another skin only pads the graphs more
                executors[skin] = (next(iter(executors.values())).with_skin(skin) if executors
                                   else StagedExecutor(payload["model"], skin=skin))
            atoms = atoms_of(job)
            # per-atom virials (energy_and_edge_vectors) where asked for and the model has them
            # (a second call: forward is what the checks above verify)
            virials = bool(job.get("virials")) and executors[skin].provides_virials
            r = executors[skin].run(atoms)
            if virials:
                with_virials = executors[skin].run(atoms, virials=True)
                # the method runs unoptimised (kim_gnn/virials.py): the same energy up to rounding
                if abs(with_virials.energy - r.energy) > 1e-6 * max(1.0, abs(r.energy)):
                    raise KimGnnError("energy_and_edge_vectors gives another energy than forward")
                r.virials = with_virials.virials
            results.append({
                # the exact structure evaluated here, for the parent to hold equal to its own
                "structure_sha256": structure_fingerprint(atoms),
                "energy": r.energy, "energies": r.energies, "forces": r.forces, "stress": r.stress,
                "num_particles": r.num_particles, "num_edges": list(r.num_edges),
                "energies_shape": tuple(r.energies_shape), "padding_energy": r.padding_energy,
                "virials": r.virials,
                "virials_note": None if virials or not job.get("virials") else
                "no per-atom virials: the converted model has no energy_and_edge_vectors (re-convert it)",
            })
        except KimGnnError as exc:
            results.append({"error": str(exc)})
        except Exception as exc:  # the converted model itself failed (TorchScript raised): a failed case
            from kim_gnn.errors import first_line

            results.append({"error": f"{type(exc).__name__}: {first_line(exc)}"})
    # The first structure once more, last (the executor warm): the parent holds it equal to the first,
    # cold call, so that a converted model that is not reproducible shows as such, named.
    if jobs and "error" not in results[0]:
        again = executors[float(jobs[0].get("skin", 0.0))].run(atoms_of(jobs[0]))
        results[0]["repeat"] = {"energy": again.energy, "energies": again.energies, "forces": again.forces}
    return results


def species_probe(payload: dict) -> dict:
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


def describe(payload: dict) -> dict:
    """What a job finds in its fresh process (the tests of ``fresh`` hold it
    fresh): torch's settings, the process, the working directory, which
    blocked packages are imported, the value of the environment variable
    ``variable``; after ``sleep`` seconds, if given."""
    import os
    import time

    import torch

    time.sleep(float(payload.get("sleep", 0.0)))
    return {"default_dtype": str(torch.get_default_dtype()), "num_threads": torch.get_num_threads(),
            "pid": os.getpid(), "parent_pid": os.getppid(), "cwd": os.getcwd(),
            "blocked_imported": sorted(n for n in payload["blocked"] if n in sys.modules),
            "variable": os.environ.get(payload.get("variable", ""))}


#: Job kind -> what this process does with the job's payload.
KINDS = {"evaluate": evaluate, "species_probe": species_probe, "describe": describe}


#: Lines a zygote writes on its standard error (the child's goes there too): the
#: forked child's process id, then, after the child ended, its exit status.
ZYGOTE_PID = "\x00zygote: pid "
ZYGOTE_DONE = "\x00zygote: done "
#: A forked child's exit status when the job blocks a package the zygote has
#: imported (a plug-in adapter may declare any): the parent runs that job in
#: a new interpreter instead, where the block works as always.
ZYGOTE_UNSUITABLE = 75


def main(job_file: str, out_file: str, forked: bool = False) -> int:
    # (the job file holds only builtins and numpy arrays)
    with open(job_file, "rb") as fh:
        payload = pickle.load(fh)
    if forked:
        if any(name.split(".")[0] in payload["blocked"] for name in sys.modules):
            return ZYGOTE_UNSUITABLE
        # the caller's environment of this job, not the one the zygote started with
        import os

        os.environ.clear()
        os.environ.update(payload["environment"])
    sys.meta_path.insert(0, _Blocker(payload["blocked"]))
    results = KINDS[payload.get("kind", "evaluate")](payload)
    with open(out_file, "wb") as fh:
        pickle.dump(results, fh)
    return 0


def zygote() -> int:
    """Import what the jobs need (torch, numpy, ASE, kim_gnn's core: no
    architecture package, no torch call), then fork one child per request
    line ``job_file<TAB>out_file<TAB>working directory`` on standard input,
    until it closes (``fresh._Zygote``)."""
    import os
    import traceback

    import ase  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401

    import kim_gnn.errors  # noqa: F401
    import kim_gnn.executor  # noqa: F401
    import kim_gnn.verification.structures  # noqa: F401

    for request in sys.stdin:
        job_file, out_file, cwd = request.rstrip("\n").split("\t")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: one job, then out without the zygote's cleanup
            code = 1
            try:
                sys.stdin.close()
                os.chdir(cwd)
                code = main(job_file, out_file, forked=True)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(f"{ZYGOTE_PID}{pid}", file=sys.stderr, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"{ZYGOTE_DONE}{os.waitstatus_to_exitcode(status)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(zygote() if sys.argv[1:] == ["--zygote"] else main(sys.argv[1], sys.argv[2]))
