"""Run a converted model the way the TorchML driver runs it.

load -> ``eval()`` -> ``torch.jit.freeze`` -> ``forward`` with the driver's
L + 3 positional inputs and dtypes -> energy = sum of element 0 ->
forces = -d(energy)/d(coordinates) by ``backward()`` ("Return Forces False").
Padding forces are folded back onto the atoms they are images of; stress is
``-sum_p F_p (x) x_p / V`` over all particles, as ASE does for KIM models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

from . import contract
from .contract import StagedModelSpec
from .errors import KimGnnError, first_line
from .graphs import StagedGraphs, build_staged_graphs

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class StagedResult:
    energy: float
    energies: np.ndarray  # [n_atoms] per contributing atom
    forces: np.ndarray  # [n_atoms, 3], padding forces folded in
    stress: Optional[np.ndarray]  # [3, 3] in eV/A^3 (ASE sign), None without a cell volume
    num_particles: int
    num_edges: Sequence[int]
    #: shape of the model's element 0 (the contract: [num_particles])
    energies_shape: Sequence[int] = ()
    #: largest |energy| the model gave a non-contributing particle (the contract: 0)
    padding_energy: float = 0.0


def resolve_model_file(path: PathLike) -> str:
    """A converted model is either a ``.pt`` file or a KIM portable model
    directory holding one (named in its ``.param`` file)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        params = [f for f in os.listdir(path) if f.endswith(".param")]
        if len(params) != 1:
            raise KimGnnError(f"{path} is not a KIM portable model directory: expected one .param file, found {len(params)}")
        with open(os.path.join(path, params[0])) as fh:
            parsed = contract.parse_param_file(fh.read())
        path = os.path.join(path, str(parsed["model_file"]))
    if not os.path.isfile(path):
        raise KimGnnError(f"no such model file: {path}")
    return path


def _check_torchscript_archive(model_file: str) -> None:
    """Refuse, in words, a file that cannot be a converted model before torch
    tries to load it (its own messages are C++ reader errors)."""
    import zipfile

    from .archives import has_torchscript_member, is_zip, list_zip

    if not is_zip(model_file):
        raise KimGnnError(
            f"{model_file} is not a loadable TorchScript file: not a zip archive (truncated, corrupt or another "
            "kind of file); give the model.pt that `kim-gnn convert` wrote, or its KIM portable model directory"
        )
    try:
        names = list_zip(model_file)
    except (zipfile.BadZipFile, OSError) as exc:
        raise KimGnnError(f"{model_file} is a damaged archive ({first_line(exc)})") from None
    if not has_torchscript_member(names):
        raise KimGnnError(
            f"{model_file} is not a loadable TorchScript file: a PyTorch archive (torch.save), not a converted "
            "kim-gnn model"
        )


def load_unfrozen(path: PathLike, device: str = "cpu"):
    """The converted model as saved, with its spec; (module, spec)."""
    model_file = resolve_model_file(path)
    _check_torchscript_archive(model_file)
    from . import kernels

    if kernels.archive_uses_ops(model_file):
        # converted with --kernels kim_gnn: its code calls the op library's ops
        try:
            kernels.load_library()
        except KimGnnError as exc:
            raise KimGnnError(f"{model_file} was converted with --kernels kim_gnn and needs the kim_gnn op "
                              f"library: {exc}") from None
    from .archives import load_torchscript

    module, extra = load_torchscript(model_file, contract.empty_extra_files(), map_location=device,
                                     refusal="is not a loadable TorchScript file")
    if any(extra.values()):
        return module, StagedModelSpec.from_extra_files(extra)
    # Saved without extra files (a reloaded or frozen module saved again):
    # the spec the model carries in its own code.
    spec = contract.spec_of_module(module)
    if spec is None:
        StagedModelSpec.from_extra_files(extra)  # raises "not a kim-gnn converted model"
    return module, spec


def read_spec(path: PathLike) -> StagedModelSpec:
    """The kim_gnn metadata of a converted model."""
    return load_unfrozen(path)[1]


def load_staged_model(path: PathLike, device: str = "cpu"):
    """Load a converted model as the driver does (eval, freeze, fusion
    strategy); (module, spec). Like the driver, this sets torch's
    process-wide TorchScript fusion strategy."""
    module, spec = load_unfrozen(path, device)
    module.eval()
    try:
        module = torch.jit.freeze(module)
    except Exception as exc:
        raise KimGnnError(f"{path} cannot be frozen as the driver freezes it ({first_line(exc)})") from None
    torch.jit.set_fusion_strategy(contract.FUSION_STRATEGY)
    return module, spec


def _torch_inputs(graphs: StagedGraphs, device: str):
    species = torch.as_tensor(graphs.species, dtype=contract.SPECIES_DTYPE, device=device)
    coordinates = torch.tensor(graphs.positions, dtype=contract.COORDINATES_DTYPE, device=device, requires_grad=True)
    edges = [torch.as_tensor(e, dtype=contract.EDGE_INDEX_DTYPE, device=device).contiguous() for e in graphs.edge_index]
    contributions = torch.as_tensor(graphs.contributions, dtype=contract.CONTRIBUTIONS_DTYPE, device=device)
    return species, coordinates, edges, contributions


def run_on_graphs(module, graphs: StagedGraphs, n_atoms: int, volume: Optional[float] = None, device: str = "cpu") -> StagedResult:
    """One driver call on prepared staged graphs."""
    species, coordinates, edges, contributions = _torch_inputs(graphs, device)
    out = module(species, coordinates, *edges, contributions)
    energy_tensor = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(energy_tensor, torch.Tensor) or energy_tensor.dtype != contract.OUTPUT_DTYPE:
        raise KimGnnError("converted model broke the contract: its energy output is not a float64 tensor")
    if energy_tensor.dim() == 0:
        raise KimGnnError("converted model broke the contract: its energy output is 0-dimensional")
    energy = energy_tensor.sum()
    energy.backward()
    grad = coordinates.grad
    forces_all = np.zeros_like(graphs.positions) if grad is None else -grad.detach().cpu().numpy()

    real = graphs.image_of >= 0
    forces = np.zeros((n_atoms, 3))
    np.add.at(forces, graphs.image_of[real], forces_all[real])

    per_particle = energy_tensor.detach().cpu().numpy()
    padding_energy = 0.0
    if per_particle.shape == (graphs.num_particles,):
        energies = per_particle[: graphs.num_contributing].copy()
        padding_energy = float(np.abs(per_particle[graphs.num_contributing:]).max(initial=0.0))
    else:
        energies = np.full(n_atoms, np.nan)

    stress = None
    if volume is not None and volume > 0:
        virial = np.einsum("pi,pj->ij", forces_all[real], graphs.positions[real])
        stress = -0.5 * (virial + virial.T) / volume
    return StagedResult(
        energy=float(energy.detach()),
        energies=energies,
        forces=forces,
        stress=stress,
        num_particles=graphs.num_particles,
        num_edges=[int(e.shape[1]) for e in graphs.edge_index],
        energies_shape=tuple(int(d) for d in per_particle.shape),
        padding_energy=padding_energy,
    )


def cell_volume(atoms) -> Optional[float]:
    """Volume for the stress, where the structure is periodic along all three axes."""
    if not np.all(atoms.pbc):
        return None
    return float(abs(np.linalg.det(atoms.cell.array)))


class StagedExecutor:
    """A loaded converted model plus what it needs to build its inputs."""

    def __init__(self, model: PathLike, device: str = "cpu", skin: float = 0.0):
        self.path = resolve_model_file(model)
        self.module, self.spec = load_staged_model(self.path, device)
        self.device = device
        self.skin = float(skin)

    def build_graphs(self, atoms) -> StagedGraphs:
        return build_staged_graphs(atoms, self.spec.species, self.spec.cutoff, self.spec.num_layers, self.skin)

    def run(self, atoms) -> StagedResult:
        graphs = self.build_graphs(atoms)
        return run_on_graphs(self.module, graphs, len(atoms), cell_volume(atoms), self.device)
