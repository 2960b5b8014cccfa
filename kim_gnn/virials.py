"""Per-particle virials by the edge-force decomposition, in one place.

An emitted model's exported ``energy_and_edge_vectors`` (``kim_gnn/entry.py``)
returns its per-particle energies, the edge vectors ``r_e = x_q - x_p`` every
layer used and their edges ``(p, q)`` in the caller's numbering. One
backward pass gives ``dE/dx`` (forces) and the edge forces
``g_e = dE/dr_e``; the virial of edge e is the symmetrised ``r_e (x) g_e``,
half to each end. In KIM's sign and Voigt order (xx, yy, zz, yz, xz, xy),
the same as the driver's ``partialVirial`` (``sum_p x_p (x) dE/dx_p``), so the
particles' virials sum to the global virial. ASE's per-atom ``stresses`` are
these divided by the cell volume. See ``docs/per-atom-virials.md``.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

import torch

from .errors import KimGnnError

METHOD = "energy_and_edge_vectors"

#: KIM's (and ASE's) Voigt order of the six components.
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def provides_virials(module) -> bool:
    """Whether a (loaded, possibly frozen) model has ``energy_and_edge_vectors``."""
    try:
        getattr(module, METHOD)
    except (AttributeError, RuntimeError):
        return False
    return True


def require_virials(module, label: str = "the model") -> None:
    """Refuse, in words, per-atom virials from a model without the method."""
    if not provides_virials(module):
        raise KimGnnError(
            f"{label} does not provide per-atom virials (it has no {METHOD} method: converted by an older "
            "kim-gnn, or not a kim-gnn conversion); re-convert it with this kim-gnn to get them"
        )


class EdgeVirialResult(NamedTuple):
    energies: torch.Tensor  # [N] float64, the model's element 0
    gradient: Optional[torch.Tensor]  # [N, 3] dE/dx (None: no dependence)
    virials: torch.Tensor  # [N, 6] float64, KIM sign, Voigt xx yy zz yz xz xy


def edge_virials(vectors: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """[E, 6] float64: the symmetrised ``r_e (x) g_e`` of each edge, Voigt order."""
    r, g = vectors.to(torch.float64), grads.to(torch.float64)
    return torch.stack([
        r[:, 0] * g[:, 0],
        r[:, 1] * g[:, 1],
        r[:, 2] * g[:, 2],
        0.5 * (r[:, 1] * g[:, 2] + r[:, 2] * g[:, 1]),
        0.5 * (r[:, 0] * g[:, 2] + r[:, 2] * g[:, 0]),
        0.5 * (r[:, 0] * g[:, 1] + r[:, 1] * g[:, 0]),
    ], dim=1)


def fold_edge_virials(num_particles: int, vectors: List[torch.Tensor], edge_index: List[torch.Tensor],
                      grads: List[Optional[torch.Tensor]]) -> torch.Tensor:
    """[N, 6] float64 per-particle virials: each edge's virial half to
    ``edge_index[0]`` and half to ``edge_index[1]``. A missing gradient (the
    energy does not depend on that list) counts as zero; a NaN or infinite
    edge force is refused."""
    if not (len(vectors) == len(edge_index) == len(grads)):
        raise KimGnnError(f"{METHOD} returned {len(vectors)} edge-vector lists but {len(edge_index)} edge lists")
    device = vectors[0].device if vectors else torch.device("cpu")
    # Summed on the CPU, in edge order: index_add_ on a GPU adds with atomics,
    # whose order (and so the last bits) changes from call to call.
    out = torch.zeros((num_particles, 6), dtype=torch.float64)
    for j, (r, edges, g) in enumerate(zip(vectors, edge_index, grads)):
        if r.dim() != 2 or r.shape[1] != 3 or edges.dim() != 2 or edges.shape[0] != 2 or edges.shape[1] != r.shape[0]:
            raise KimGnnError(f"{METHOD} returned edge vectors {list(r.shape)} that do not match their edges "
                              f"{list(edges.shape)} (list {j})")
        if g is None or r.shape[0] == 0:
            continue
        if not bool(torch.isfinite(g).all()):
            raise KimGnnError(f"the model's edge forces dE/dr are not finite (NaN or inf) in edge list {j}: "
                              "no per-atom virials")
        half = (0.5 * edge_virials(r.detach(), g)).cpu()
        out.index_add_(0, edges[0].cpu(), half)
        out.index_add_(0, edges[1].cpu(), half)
    return out.to(device)


def energies_forces_virials(module, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                            contributions: torch.Tensor) -> EdgeVirialResult:
    """One call of ``energy_and_edge_vectors`` and ONE backward pass:
    per-particle energies, ``dE/dcoordinates`` and the per-particle virials
    (before any folding of padding particles). ``coordinates`` need not
    require grad (a differentiable copy is used)."""
    require_virials(module)
    x = coordinates.detach().requires_grad_(True)
    # With the graph executor's optimisations on, TorchScript fuses the edge
    # vectors into the energy's differentiable graph from the second call on,
    # and their gradients come back undefined (zero virials): run the method
    # unoptimised, as kim-gnn's driver does (docs/driver.md).
    with torch.jit.optimized_execution(False):
        energies, vectors, edge_index = getattr(module, METHOD)(species, x, list(graphs), contributions)
    vectors, edge_index = list(vectors), list(edge_index)
    total = energies.sum()
    inputs = [x] + [v for v in vectors if v.requires_grad]
    grads: List[Optional[torch.Tensor]] = [None] * (len(vectors) + 1)
    if total.requires_grad:
        computed = torch.autograd.grad(total, inputs, allow_unused=True)
        at = 0
        for i, tensor in enumerate([x] + vectors):
            if i == 0 or tensor.requires_grad:
                grads[i] = computed[at]
                at += 1
    virials = fold_edge_virials(x.shape[0], vectors, edge_index, grads[1:])
    return EdgeVirialResult(energies.detach(), grads[0], virials)


def check_decomposition(virials: torch.Tensor, coordinates: torch.Tensor, gradient: Optional[torch.Tensor],
                        model_dtype: torch.dtype) -> None:
    """Refuse per-atom virials whose sum is not the global virial
    ``sum_p x_p (x) dE/dx_p``: the energy then depends on the coordinates
    other than through the edge vectors the model returned (a model that
    breaks ``energy_and_edge_vectors``'s guarantee). Tolerance: the model
    dtype's rounding, relative to ``sum_p |x_p| |dE/dx_p|``."""
    if gradient is None:
        return
    x = coordinates.detach().to(torch.float64)
    g = gradient.detach().to(torch.float64)
    total = edge_virials(x, g).sum(0)
    scale = float((x.norm(dim=1) * g.norm(dim=1)).sum())
    tol = (1e-3 if model_dtype == torch.float32 else 1e-8) * scale + 1e-12
    worst = float((virials.sum(0) - total).abs().max())
    if worst > tol:
        raise KimGnnError(
            f"the model's per-atom virials sum to a virial {worst:.3g} away from sum_p x_p (x) dE/dx_p: its energy "
            f"depends on the coordinates other than through the edge vectors {METHOD} returns; no per-atom virials"
        )


def virial_voigt_to_3x3(v):
    """[..., 6] Voigt (xx yy zz yz xz xy) -> [..., 3, 3] symmetric (numpy)."""
    import numpy as np

    v = np.asarray(v)
    out = np.empty(v.shape[:-1] + (3, 3), dtype=v.dtype)
    for c, (a, b) in enumerate(VOIGT):
        out[..., a, b] = v[..., c]
        out[..., b, a] = v[..., c]
    return out
