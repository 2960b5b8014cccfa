"""Run a converted model on a list of structures in a fresh interpreter.

Started by ``verify`` as ``python -m kim_gnn._fresh_worker jobs.pkl out.pkl``.
torch keeps its default settings (default dtype float32, as in the C++
driver), and the architecture packages are made unimportable: the converted
model must stand on its own, as it does inside the driver. Which packages:
``jobs.pkl``'s ``blocked``, the union of every registered adapter's
``import_names`` (``kim_gnn.adapters.blocked_import_names``) that the parent
computed; this process imports no adapter.
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


def main(job_file: str, out_file: str) -> int:
    # (the job file holds only builtins and numpy arrays)
    with open(job_file, "rb") as fh:
        payload = pickle.load(fh)
    sys.meta_path.insert(0, _Blocker(payload["blocked"]))
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
            # per-atom virials (energy_and_edge_vectors) where asked for and the model has them
            # (a second call: forward is what the checks above verify)
            virials = bool(job.get("virials")) and executors[skin].provides_virials
            r = executors[skin].run(atoms)
            if virials:
                with_virials = executors[skin].run(atoms, virials=True)
                if with_virials.energy != r.energy:
                    raise KimGnnError("energy_and_edge_vectors gives another energy than forward")
                r.virials = with_virials.virials
            results.append({
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
    with open(out_file, "wb") as fh:
        pickle.dump(results, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
