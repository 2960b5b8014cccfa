"""Run a converted model the way the TorchML driver runs it.

load -> ``eval()`` -> ``torch.jit.freeze`` -> ``forward`` with the driver's
L + 3 positional inputs and dtypes -> energy = sum of element 0 ->
forces = -d(energy)/d(coordinates) by ``backward()`` ("Return Forces False").
Padding forces are folded back onto the atoms they are images of; stress is
``-sum_p F_p (x) x_p / V`` over all particles, as ASE does for KIM models.

With ``virials=True`` the call is ``energy_and_edge_vectors`` instead of
``forward`` (the same energies, bit for bit) and the one backward pass also
gives the edge forces: per-particle virials by the edge-force decomposition
(``kim_gnn/virials.py``), padding particles' folded onto their atoms.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

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
    #: [6] the global virial as the driver's partialVirial gives it (KIM sign,
    #: Voigt xx yy zz yz xz xy, eV): sum over every particle of x_p (x) dE/dx_p
    virial: Optional[np.ndarray] = None
    #: with ``virials=True``: [n_atoms, 6] per-atom virials (KIM sign and Voigt
    #: order xx yy zz yz xz xy, eV), padding particles' folded onto their atoms
    virials: Optional[np.ndarray] = None
    #: with ``virials=True``: [num_particles, 6], every particle's own (unfolded)
    particle_virials: Optional[np.ndarray] = None
    #: with ``virials=True`` and a cell volume: ASE's per-atom ``stresses``
    #: [n_atoms, 6] (eV/A^3) = virials / V; they sum to ``stress``
    stresses: Optional[np.ndarray] = None


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


def converted_model_file(model, directory: str) -> Tuple[str, str]:
    """``(model file, label)`` of a converted model given as a path (a
    ``.pt`` file or a portable model directory) or in memory (anything with
    ``save``: saved as ``directory``/model.pt)."""
    if hasattr(model, "save") and not isinstance(model, (str, os.PathLike)):
        path = os.path.join(directory, "model.pt")
        model.save(path)
        return path, "<in-memory converted model>"
    return resolve_model_file(model), os.fspath(model)


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
    strategy, keeping ``energy_and_edge_vectors`` where the model has it);
    (module, spec). Like the driver, this sets torch's process-wide
    TorchScript fusion strategy."""
    from .virials import METHOD, provides_virials

    module, spec = load_unfrozen(path, device)
    module.eval()
    try:
        module = torch.jit.freeze(module, preserved_attrs=[METHOD] if provides_virials(module) else [])
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


def _forward(module, species, coordinates, edges, contributions):
    """The driver's forward call: per-particle energies (element 0 of a tuple output)."""
    out = module(species, coordinates, *edges, contributions)
    return out[0] if isinstance(out, (tuple, list)) else out


def _check_energy_output(energy_tensor) -> None:
    if not isinstance(energy_tensor, torch.Tensor) or energy_tensor.dtype != contract.OUTPUT_DTYPE:
        raise KimGnnError("converted model broke the contract: its energy output is not a float64 tensor")
    if energy_tensor.dim() == 0:
        raise KimGnnError("converted model broke the contract: its energy output is 0-dimensional")


def energy_on_graphs(module, graphs: StagedGraphs, device: str = "cpu") -> float:
    """``run_on_graphs(...).energy`` without the backward: the same forward on
    the same inputs (finite differences need only the energy)."""
    species, coordinates, edges, contributions = _torch_inputs(graphs, device)
    energy_tensor = _forward(module, species, coordinates, edges, contributions)
    _check_energy_output(energy_tensor)
    return float(energy_tensor.sum().detach())


def run_on_graphs(module, graphs: StagedGraphs, n_atoms: int, volume: Optional[float] = None, device: str = "cpu",
                  virials: bool = False, model_dtype: str = "float64") -> StagedResult:
    """One driver call on prepared staged graphs; with ``virials`` also the
    per-atom virials (a model without ``energy_and_edge_vectors`` is refused)."""
    species, coordinates, edges, contributions = _torch_inputs(graphs, device)
    particle_virials = None
    if virials:
        from . import virials as edge_virials

        edge_virials.require_virials(module)
        computed = edge_virials.energies_forces_virials(module, species, coordinates, edges, contributions)
        energy_tensor, grad = computed.energies, computed.gradient
        edge_virials.check_decomposition(computed.virials, coordinates, grad, getattr(torch, model_dtype))
        particle_virials = computed.virials.cpu().numpy()
        energy = energy_tensor.sum()
    else:
        energy_tensor = _forward(module, species, coordinates, edges, contributions)
    _check_energy_output(energy_tensor)
    if not virials:
        energy = energy_tensor.sum()
        energy.backward()
        grad = coordinates.grad
    forces_all = np.zeros_like(graphs.positions) if grad is None else -grad.detach().cpu().numpy()

    real = graphs.image_of >= 0
    forces = np.zeros((n_atoms, 3))
    np.add.at(forces, graphs.image_of[real], forces_all[real])
    atom_virials = None
    if particle_virials is not None:
        atom_virials = np.zeros((n_atoms, 6))
        np.add.at(atom_virials, graphs.image_of[real], particle_virials[real])

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
    w = -np.einsum("pi,pj->ij", graphs.positions, forces_all)
    w = 0.5 * (w + w.T)
    global_virial = np.array([w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]])
    stresses = None
    if atom_virials is not None and stress is not None:
        stresses = atom_virials / volume
    return StagedResult(
        energy=float(energy.detach()),
        energies=energies,
        forces=forces,
        stress=stress,
        num_particles=graphs.num_particles,
        num_edges=[int(e.shape[1]) for e in graphs.edge_index],
        energies_shape=tuple(int(d) for d in per_particle.shape),
        padding_energy=padding_energy,
        virial=global_virial,
        virials=atom_virials,
        particle_virials=particle_virials,
        stresses=stresses,
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

    def with_skin(self, skin: float) -> "StagedExecutor":
        """The same loaded (frozen) model with another padding skin (it pads the graphs only)."""
        other = copy.copy(self)
        other.skin = float(skin)
        return other

    def build_graphs(self, atoms) -> StagedGraphs:
        return build_staged_graphs(atoms, self.spec.species, self.spec.cutoff, self.spec.num_layers, self.skin)

    @property
    def provides_virials(self) -> bool:
        """Whether the model has ``energy_and_edge_vectors`` (per-atom virials)."""
        from .virials import provides_virials

        return provides_virials(self.module)

    def energy(self, atoms) -> float:
        """``run(atoms).energy`` without the backward (``energy_on_graphs``)."""
        return energy_on_graphs(self.module, self.build_graphs(atoms), self.device)

    def run(self, atoms, virials: bool = False) -> StagedResult:
        """One driver call; ``virials=True`` adds per-atom virials (and ASE
        stresses where the cell has a volume), refused for a model without
        ``energy_and_edge_vectors``."""
        if virials:
            from .virials import require_virials

            require_virials(self.module, self.path)
        graphs = self.build_graphs(atoms)
        return run_on_graphs(self.module, graphs, len(atoms), cell_volume(atoms), self.device, virials=virials,
                             model_dtype=self.spec.model_dtype)
