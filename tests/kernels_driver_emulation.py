"""A KIM driver process, emulated independently of kim_gnn: torch and the
kim_gnn op library only (kim_gnn, nequip, e3nn and mace cannot be imported).

    python kernels_driver_emulation.py LIBRARY MODEL INPUTS.npz OUT.npz THREADS CALLS [virials]

As the TorchML driver does: torch.jit.load, eval, freeze, fusion strategy
DYNAMIC 3, forward with the L + 3 positional inputs, energy = sum of
element 0, forces = -grad by backward. Each structure is called CALLS times;
OUT holds the last call's per-particle energies and forces and whether every
call after the third (TorchScript optimises during the first calls) gave the
same bits.

With ``virials``, the model is frozen keeping ``energy_and_edge_vectors``
(as kim-gnn's driver freezes it), and each structure is also called once
through that method with one backward pass: OUT then also holds its
per-particle energies, forces and per-particle virials (KIM sign, Voigt xx
yy zz yz xz xy, half of each edge's symmetrised r (x) dE/dr to each end),
folded here without kim_gnn.
"""

import sys


class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("kim_gnn", "nequip", "e3nn", "mace"):
            raise ImportError(f"{name} is blocked in the driver emulation")
        return None


def _virials(module, species, coordinates, edges, contributions):
    import torch

    with torch.jit.optimized_execution(False):  # as the driver runs it (docs/driver.md)
        energies, vectors, edge_index = module.energy_and_edge_vectors(species, coordinates, edges, contributions)
    grads = torch.autograd.grad(energies.sum(), [coordinates] + list(vectors), allow_unused=True)
    out = torch.zeros((coordinates.shape[0], 6), dtype=torch.float64)
    for r, e, g in zip(vectors, edge_index, grads[1:]):
        if g is None:
            continue
        r, g = r.detach().double(), g.double()
        w = torch.stack([r[:, 0] * g[:, 0], r[:, 1] * g[:, 1], r[:, 2] * g[:, 2],
                         0.5 * (r[:, 1] * g[:, 2] + r[:, 2] * g[:, 1]), 0.5 * (r[:, 0] * g[:, 2] + r[:, 2] * g[:, 0]),
                         0.5 * (r[:, 0] * g[:, 1] + r[:, 1] * g[:, 0])], dim=1)
        out.index_add_(0, e[0], 0.5 * w)
        out.index_add_(0, e[1], 0.5 * w)
    return energies.detach().numpy().copy(), (-grads[0]).numpy().copy(), out.numpy()


def main(library, model_file, inputs, out_file, threads, calls, mode=""):
    sys.meta_path.insert(0, _Block())
    import numpy as np
    import torch

    torch.set_num_threads(int(threads))
    torch.ops.load_library(library)
    module = torch.jit.load(model_file)
    module.eval()
    module = torch.jit.freeze(module, preserved_attrs=["energy_and_edge_vectors"] if mode == "virials" else [])
    torch.jit.set_fusion_strategy([("DYNAMIC", 3)])
    data = np.load(inputs)
    results = {}
    for c in range(int(data["num_cases"])):
        layers = int(data[f"{c}_layers"])
        outputs = []
        for _ in range(int(calls)):
            species = torch.from_numpy(data[f"{c}_species"]).to(torch.int64)
            coordinates = torch.from_numpy(data[f"{c}_positions"]).to(torch.float64).requires_grad_(True)
            edges = [torch.from_numpy(data[f"{c}_edges_{k}"]).to(torch.int64) for k in range(layers)]
            contributions = torch.from_numpy(data[f"{c}_contributions"]).to(torch.int64)
            energies = module(species, coordinates, *edges, contributions)
            energies.sum().backward()
            outputs.append((energies.detach().numpy().copy(), (-coordinates.grad).numpy().copy()))
        last = outputs[-1]
        same = all(np.array_equal(e, last[0]) and np.array_equal(f, last[1]) for e, f in outputs[3:])
        results[f"{c}_energies"], results[f"{c}_forces"] = last
        results[f"{c}_repeatable"] = np.array(same)
        if mode == "virials":
            coordinates = torch.from_numpy(data[f"{c}_positions"]).to(torch.float64).requires_grad_(True)
            (results[f"{c}_virial_energies"], results[f"{c}_virial_forces"],
             results[f"{c}_virials"]) = _virials(module, species, coordinates, edges, contributions)
    np.savez(out_file, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
