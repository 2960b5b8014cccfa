"""A fourth architecture, from outside kim_gnn: a two-layer message-passing
"model" in a JSON file (``*.toygnn``), its staged TorchScript form on the
core runtime (``kim_gnn/runtime``: pruned or unpruned, aten or the kim_gnn
kernels), and its original periodic model in plain numpy and ASE.

The model (cutoff rc, per-element weights w, parameters eps, lam, c)::

    f(r) = (1 - (r/rc)^2)^3          g(r) = exp(-r/lam) (1 - (r/rc)^2)^2
    layer 1: rho_i = sum_j w_{s_j} f(r_ij)                 (a smooth density)
    layer 2: e_i   = eps * (rho_i * sum_j g(r_ij) rho_j  -  c rho_i)
    E = sum_i e_i

over the neighbours j of i within rc: the energy of an atom depends on atoms
up to 2 rc away (a genuine 2-hop model, influence distance 2 rc).

Used by tests/core/test_adapters.py to show that an adapter registers itself
(an entry point in the group ``kim_gnn.adapters``, or ``register_adapter``)
and runs on the core runtime without any edit of kim_gnn's core:
docs/adding-an-adapter.md walks through it.
"""

import json
from typing import List, Optional, Tuple

import numpy as np
import torch

from kim_gnn.adapters import KERNELS_HELP, Adapter, ExampleModel
from kim_gnn.contract import StagedModelSpec, script_staged
from kim_gnn.errors import KimGnnError
from kim_gnn.reference import OriginalResult

NUM_LAYERS = 2
PARAMETERS = ("cutoff", "eps", "lam", "c")


def _read(path):
    try:
        with open(path) as fh:
            p = json.load(fh)["toy_gnn"]
        weights = {str(k): float(v) for k, v in p["weights"].items()}
        values = {k: float(p[k]) for k in PARAMETERS}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KimGnnError(f"{path} is not a toy GNN model ({type(exc).__name__}: {exc})") from None
    if not weights or values["cutoff"] <= 0 or values["lam"] <= 0:
        raise KimGnnError(f"{path} is not a toy GNN model (no weights, or a cutoff or lam that is not positive)")
    return dict(values, weights=weights, species=sorted(weights))


def is_toy_file(path: str) -> bool:
    return str(path).endswith(".toygnn")


# --- the staged model: one loop over the core runtime's plan ------------------------

def _lengths(vectors: torch.Tensor) -> torch.Tensor:
    """|x_sender - x_receiver| of every edge (receiver row 0), from the edge
    vectors the runtime formed (``StagedRuntime.edge_vectors``)."""
    return torch.linalg.vector_norm(vectors, dim=1)


def _shape(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """1 - (r/rc)^2, clamped at 0 (edges are within rc by the contract)."""
    return torch.clamp(1.0 - (r / cutoff) ** 2, min=0.0)


class DensityLayer(torch.nn.Module):
    """Layer 1: rho_i = sum_j x_j f(r_ij), x = the element weights."""

    cutoff: float

    def __init__(self, cutoff: float, aggregation: torch.nn.Module):
        super().__init__()
        self.cutoff = cutoff
        self.aggregation = aggregation

    def forward(self, x: torch.Tensor, vectors: torch.Tensor, edges: torch.Tensor, route: List[torch.Tensor],
                num_out: int) -> torch.Tensor:
        receivers, senders = edges[0], edges[1]
        r = _lengths(vectors)
        messages = self.aggregation.gather(x, senders, route) * (_shape(r, self.cutoff) ** 3).unsqueeze(1)
        return self.aggregation.scatter(messages, receivers, num_out, route)


class PairLayer(torch.nn.Module):
    """Layer 2: e_i = eps (rho_i sum_j g(r_ij) rho_j - c rho_i)."""

    cutoff: float
    lam: float
    eps: float
    c: float

    def __init__(self, cutoff: float, lam: float, eps: float, c: float, aggregation: torch.nn.Module):
        super().__init__()
        self.cutoff, self.lam, self.eps, self.c = cutoff, lam, eps, c
        self.aggregation = aggregation

    def forward(self, x: torch.Tensor, vectors: torch.Tensor, edges: torch.Tensor, route: List[torch.Tensor],
                num_out: int) -> torch.Tensor:
        receivers, senders = edges[0], edges[1]
        r = _lengths(vectors)
        g = torch.exp(-r / self.lam) * _shape(r, self.cutoff) ** 2
        summed = self.aggregation.scatter(self.aggregation.gather(x, senders, route) * g.unsqueeze(1), receivers,
                                          num_out, route)
        rho = x[:num_out]
        return self.eps * (rho * summed - self.c * rho)


class StagedToyGNN(torch.nn.Module):
    """The contract's forward: layer i on the first ``counts[k + 1]``
    particles of the plan (k = L-1-i), the edges into the first
    ``counts[k]``, keeping ``counts[k]`` rows; the runtime scatters the
    energies of the first ``counts[0]`` to the ``[N]`` output."""

    def __init__(self, weights: List[float], layers: List[torch.nn.Module], runtime: torch.nn.Module):
        super().__init__()
        self.runtime = runtime
        self.layers = torch.nn.ModuleList(layers)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float64))

    def forward(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                contributions: torch.Tensor, vectors_out: Optional[List[torch.Tensor]] = None,
                edges_out: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """The loop; records each layer's edge vectors and edges when given
        the lists (the per-atom virials' input; the contract's forward
        passes none)."""
        plan = self.runtime.plan(graphs, contributions)
        pos = self.runtime.needed(coordinates, plan).to(torch.float64)
        x = self.weights.index_select(0, self.runtime.needed(species, plan)).unsqueeze(1)
        for i, layer in enumerate(self.layers):
            k = self.runtime.graph_of_layer(i)
            num_in = plan.counts[k + 1]
            vectors = self.runtime.edge_vectors(pos[:num_in], plan, k)
            if vectors_out is not None and edges_out is not None:
                self.runtime.record_edges(vectors, plan, k, vectors_out, edges_out)
            x = layer(x[:num_in], vectors, plan.edges[k], plan.routes[k], plan.counts[k])
        return self.runtime.particle_energies(x, plan, contributions)

    @torch.jit.export
    def energy_and_edge_vectors(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                                contributions: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """forward's energies plus each layer's edge vectors and edges."""
        vectors: List[torch.Tensor] = []
        edges: List[torch.Tensor] = []
        energy = self.forward(species, coordinates, graphs, contributions, vectors, edges)
        return energy, vectors, edges


def convert_toy(path, prune=True, kernels=None):
    """Convert a ``.toygnn`` file: pruned (default) or unpruned, aten
    (default) or ``kernels="kim_gnn"``."""
    from kim_gnn import kernels as kernel_lib
    from kim_gnn.runtime import StagedRuntime, make_aggregation

    p = _read(path)
    kernels = kernel_lib.check_choice(kernels, prune)
    layers = [DensityLayer(p["cutoff"], make_aggregation(kernels)),
              PairLayer(p["cutoff"], p["lam"], p["eps"], p["c"], make_aggregation(kernels))]
    runtime = StagedRuntime(NUM_LAYERS, receiver_row=0, prune=bool(prune), kernels=kernels)
    staged = StagedToyGNN([p["weights"][s] for s in p["species"]], layers, runtime)
    spec = StagedModelSpec(species=p["species"], cutoff=p["cutoff"], num_layers=NUM_LAYERS, model_dtype="float64",
                           architecture="toy", architecture_version="2", source_file=str(path),
                           details={"pruned": "true" if prune else "false", "kernels": kernels})
    return script_staged(staged, spec, "toy GNN")


def describe(path, **options):
    p = _read(path)
    return {"architecture": "toy", "layers": NUM_LAYERS, "cutoff": p["cutoff"],
            "influence_distance": NUM_LAYERS * p["cutoff"], "species": p["species"]}


# --- the original periodic model: numpy on ASE's periodic neighbour list ------------

class ToyOriginal:
    def __init__(self, path):
        self.p = _read(path)

    def evaluate(self, atoms):
        return self._evaluate(atoms)[0]

    def atomic_virials(self, atoms):
        """Per-atom virials by the edge-force decomposition (KIM sign, Voigt
        xx yy zz yz xz xy): dE/dD of each periodic edge, half to each end."""
        from kim_gnn.verification.atomic_virials_reference import split_edge_virials

        _, (i, j, D, pull) = self._evaluate(atoms)
        return split_edge_virials(len(atoms), np.stack([i, j]), D, pull)

    def _evaluate(self, atoms):
        from ase.neighborlist import neighbor_list

        p = self.p
        rc, eps, lam, c = p["cutoff"], p["eps"], p["lam"], p["c"]
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(p["weights"]))
        if unknown:
            raise KimGnnError(f"the toy model has no weight for {', '.join(unknown)}")
        w = np.array([p["weights"][s] for s in symbols])
        n = len(atoms)
        i, j, D = neighbor_list("ijD", atoms, rc)  # D = x_j - x_i (+ cell shift)
        d = np.linalg.norm(D, axis=1)
        u = 1.0 - (d / rc) ** 2
        du = -2.0 * d / rc**2
        f, fp = u**3, 3 * u**2 * du
        decay = np.exp(-d / lam)
        g, gp = decay * u**2, decay * (2 * u * du - u**2 / lam)

        rho = np.bincount(i, w[j] * f, minlength=n)
        summed = np.bincount(i, g * rho[j], minlength=n)
        energies = eps * (rho * summed - c * rho)
        # dE/drho_m = eps (2 summed_m - c) (g and the list are symmetric);
        # dE/dd of the directed edge (i, j): through g_ij, and through rho_i
        lam_i = eps * (2 * summed - c)
        coef = eps * rho[i] * rho[j] * gp + lam_i[i] * w[j] * fp
        pull = (coef / d)[:, None] * D
        forces = np.zeros((n, 3))
        np.add.at(forces, i, pull)
        np.add.at(forces, j, -pull)
        stress = None
        if np.all(atoms.pbc):
            stress = (pull.T @ D) / atoms.get_volume()  # (1/V) dE/d(strain)
            stress = 0.5 * (stress + stress.T)
        result = OriginalResult(energy=float(energies.sum()), energies=energies, forces=forces, stress=stress)
        return result, (i, j, D, pull)  # pull = dE/dD of each directed edge


def write_example(path, num_layers=NUM_LAYERS, model_dtype="float64"):
    if num_layers != NUM_LAYERS or model_dtype != "float64":
        raise KimGnnError(f"the toy model has {NUM_LAYERS} layers and float64 weights: "
                          f"use --layers {NUM_LAYERS} --dtype float64")
    with open(path, "w") as fh:
        json.dump({"toy_gnn": {"weights": {"Si": 1.0}, "cutoff": 4.0, "eps": 0.05, "lam": 1.5, "c": 3.0}}, fh)
    return path


ADAPTER = Adapter(
    name="toy",
    detect=is_toy_file,
    convert=convert_toy,
    describe=describe,
    original=lambda path, spec=None: ToyOriginal(path),
    options={"prune": "pruned staged execution (default True); False emits the unpruned model",
             "kernels": KERNELS_HELP},
    import_names=("toy_kim_adapter",),  # a converted toy model runs without this plug-in
    environment_hint="convert it where the toy plug-in is installed (tests/plugins/toy_kim_adapter.py)",
    summary="toy two-layer GNN .toygnn",
    exports={"convert_toy": "toy_kim_adapter:convert_toy"},
    example=ExampleModel(build=write_example, file_name="model.toygnn", item_name="Toy__MO_000000000000_000",
                         description="a toy two-layer GNN"),
)
