"""The original periodic model's own per-atom virials (edge-force decomposition).

What a converted model's per-atom virials (``kim_gnn/virials.py``) are
verified against, computed on the original model on the periodic structure
(its own cell, periodic edges and shifts), nothing of kim_gnn's staged code:

* MACE: the model's own ``atomic_virials`` (``compute_atomic_stresses=True``,
  mace-torch's ``get_atomic_virials_stresses``: half/half split of the
  symmetrised ``dE/dr_e (x) r_e`` onto sender and receiver); MACE's sign is
  the physical virial ``-sum x (x) dE/dx``, so KIM's is its negative;
* nequip >= 0.7 (NequIP GNN, Allegro): the model's own edge-force branch
  (``ForceStressOutput`` given ``edge_vectors`` differentiates the energy
  with respect to them, as for LAMMPS ML-IAP), on the periodic edge vectors
  nequip's own ``with_edge_vectors_`` forms from the neighbour list with
  cell shifts;
* NequIP 0.5/0.6: the deployed energy network (inside its force wrapper)
  called with those periodic edge vectors as a leaf tensor, ``dE/dr_e`` by
  autograd (times the global ``RescaleOutput`` energy scales);
* any other original that has ``atomic_virials(atoms)`` (a plug-in's).

Every result: ``[n_atoms, 6]`` float64 per-atom virials in KIM's sign and
Voigt order (xx, yy, zz, yz, xz, xy; ``sum_p x_p (x) dE/dx_p`` summed over
the cell), each edge's half on each of its two atoms in the cell.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import KimGnnError
from .tolerances import tolerances_for


def split_edge_virials(n_atoms: int, edge_index, vectors, edge_grads) -> np.ndarray:
    """[n_atoms, 6]: the symmetrised ``r_e (x) dE/dr_e`` of each periodic edge,
    half to ``edge_index[0]`` and half to ``edge_index[1]`` (atoms in the cell)."""
    from ..virials import edge_virials

    r = torch.as_tensor(np.asarray(vectors, dtype=np.float64))
    g = torch.as_tensor(np.asarray(edge_grads, dtype=np.float64))
    half = 0.5 * edge_virials(r, g).numpy()
    edges = np.asarray(edge_index)
    out = np.zeros((n_atoms, 6))
    np.add.at(out, edges[0], half)
    np.add.at(out, edges[1], half)
    return out


def _full_to_voigt(m: np.ndarray) -> np.ndarray:
    m = 0.5 * (m + np.swapaxes(m, -1, -2))
    return np.stack([m[..., 0, 0], m[..., 1, 1], m[..., 2, 2], m[..., 1, 2], m[..., 0, 2], m[..., 0, 1]], axis=-1)


def mace_atomic_virials(original, atoms) -> np.ndarray:
    """MACE's own ``atomic_virials``, in KIM's sign."""
    import warnings

    from ..graphs import check_structure
    from ..reference import default_dtype

    check_structure(atoms)
    with default_dtype(original.dtype), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = original._batch(atoms)
        out = original.model(data, training=False, compute_force=True, compute_atomic_stresses=True)
    virials = out.get("atomic_virials")
    if virials is None:
        raise KimGnnError("this MACE model gives no atomic_virials (mace-torch too old for compute_atomic_stresses)")
    return -_full_to_voigt(virials.detach().double().numpy().reshape(-1, 3, 3))


def nequip_modern_atomic_virials(original, atoms) -> np.ndarray:
    """nequip >= 0.7's own edge forces on the periodic edge vectors."""
    from nequip.data import AtomicDataDict
    from nequip.nn.utils import with_edge_vectors_

    from ..graphs import check_structure
    from ..nequip.modern import load

    check_structure(atoms)
    with load.restore_torch_state():
        torch.set_default_dtype(torch.float64)
        data = original._data(atoms)
        data = with_edge_vectors_(dict(data), with_lengths=False)
        vectors = data[AtomicDataDict.EDGE_VECTORS_KEY].detach().clone()
        edge_index = data[AtomicDataDict.EDGE_INDEX_KEY]
        data = {k: v for k, v in data.items() if k not in (AtomicDataDict.EDGE_LENGTH_KEY,)}
        data[AtomicDataDict.EDGE_VECTORS_KEY] = vectors
        out = original.model(data)
    if AtomicDataDict.EDGE_FORCE_KEY not in out:
        raise KimGnnError("this nequip model gives no edge forces for given edge vectors (nequip too old?)")
    grads = out[AtomicDataDict.EDGE_FORCE_KEY].detach().double().numpy()
    return split_edge_virials(len(atoms), edge_index.numpy(), vectors.detach().double().numpy(), grads)


def nequip06_atomic_virials(original, atoms) -> np.ndarray:
    """NequIP 0.5/0.6: autograd on the periodic edge vectors of the deployed
    energy network."""
    from ..graphs import check_structure
    from ..nequip.v06.convert import _rescale_factors, _split_network, _unwrap
    from ..reference import default_dtype

    check_structure(atoms)
    func, rescales, model_dtype = _unwrap(original.module)
    energy_field = _split_network(func)[4]
    scales, _ = _rescale_factors(rescales, energy_field)
    with default_dtype(original.default_dtype):
        data = original._inputs(atoms, atoms.get_chemical_symbols())
        if model_dtype is not None:  # as nequip's GraphModel casts its inputs
            data = {k: v.to(model_dtype) if v.is_floating_point() else v for k, v in data.items()}
        pos, edge_index = data["pos"], data["edge_index"]
        # nequip 0.6's with_edge_vectors: x_j - x_i + shift . cell
        vectors = (torch.index_select(pos, 0, edge_index[1]) - torch.index_select(pos, 0, edge_index[0])
                   + torch.einsum("ni,ij->nj", data["edge_cell_shift"], data["cell"].view(3, 3)))
        vectors = vectors.detach().requires_grad_(True)
        data["edge_vectors"] = vectors
        out = func(data)
        total = out["total_energy"].sum()
        (grads,) = torch.autograd.grad(total, [vectors])
    factor = float(np.prod(scales)) if scales else 1.0
    return split_edge_virials(len(atoms), edge_index.numpy(), vectors.detach().double().numpy(),
                              factor * grads.double().numpy())


def reference_atomic_virials(original, atoms) -> np.ndarray:
    """The original's per-atom virials ([n_atoms, 6], KIM sign and Voigt
    order) by its own edge-force decomposition."""
    kind = type(original).__name__
    if kind == "MACEOriginal":
        return mace_atomic_virials(original, atoms)
    if kind == "NequIPModernOriginal":
        return nequip_modern_atomic_virials(original, atoms)
    if kind == "NequIPOriginal":
        return nequip06_atomic_virials(original, atoms)
    method = getattr(original, "atomic_virials", None)
    if callable(method):
        return np.asarray(method(atoms), dtype=np.float64)
    raise KimGnnError(f"no per-atom virial decomposition of the original model ({kind}) to compare with")


# --- the verification harness's per-structure check ------------------------------

def check_case_atomic_virials(report, reference_model, atoms, got: dict, model_dtype: str) -> None:
    """Fill a harness ``CaseReport``'s per-atom virial fields: the largest
    difference (eV) between the converted model's per-atom virials (``got["virials"]``,
    from the fresh process, folded onto the atoms) and the original's own
    decomposition on the same structure, and the limit it was held to; a
    difference beyond it fails the case. A converted model without the
    method, or an original without a decomposition, is noted, not failed."""
    got_virials = got.get("virials")
    if got_virials is None:
        note = got.get("virials_note") or "no per-atom virials from the converted model"
        report.notes = "; ".join(filter(None, [report.notes, note]))
        return
    try:
        expected = reference_atomic_virials(reference_model, atoms)
    except Exception as exc:  # the original cannot decompose (e.g. an older package): said, not failed
        from ..errors import first_line

        report.notes = "; ".join(filter(None, [report.notes, "per-atom virials not compared: the original's "
                                               f"decomposition failed ({type(exc).__name__}: {first_line(exc)})"]))
        return
    scale = float(np.abs(expected).max(initial=0.0))
    error = float(np.abs(np.asarray(got_virials) - expected).max(initial=0.0))
    tol = tolerances_for(model_dtype)
    limit = tol["atomic_virial"] * max(tol["atomic_virial_floor"], scale)
    report.max_atomic_virial_error = error
    report.atomic_virial_limit = limit
    if not error <= limit:
        report.passed = False
        report.notes = "; ".join(filter(None, [report.notes, f"per-atom virials differ by {error:.3g} eV "
                                                             f"(limit {limit:.3g})"]))
