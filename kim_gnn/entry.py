"""The top-level module of every emitted model: the driver's entry points.

``KIMStagedEntry`` (checked Python, compiled by TorchScript) holds the
staged module, the spec the model carries in its code, and the input checks
shared by both entry methods (``checked_species``, a free function: TorchScript
handles a free function shared by many compiled classes, where an inherited
method called from the generated ``forward`` crashed frozen copies that raise):

* ``forward(species, coordinates, edge_index_0, .., edge_index_{L-1},
  contributions)``: the TorchML contract (``docs/contract.md``).
  Its arity depends on L, so only this method is generated
  (``positional_entry_class``): it packs the L edge lists, checks them and
  calls the staged module;
* ``energy_and_edge_vectors(species, coordinates, graphs, contributions)``
  (``KIMStagedEntryWithEdgeVectors``, exported beside ``forward``):
  forward's energies plus the edge vectors every layer used and their edges
  in the caller's numbering, from which a caller forms per-atom virials
  (``docs/per-atom-virials.md``, ``kim_gnn/virials.py``). Emitted when the
  staged module has the method (every kim-gnn adapter's does, through the
  core runtime).
"""

import linecache
from typing import Dict, List, Optional, Tuple

import torch

from .model_spec import SPEC_MARKER as _SPEC_MARKER  # prefix of the spec JSON the model carries in its code


def input_names(num_layers: int) -> List[str]:
    """Names of the driver's positional inputs, in order."""
    return ["species", "coordinates"] + [f"edge_index_{k}" for k in range(num_layers)] + ["contributions"]


def checked_species(species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                    contributions: torch.Tensor, num_species: int, index_of_atomic_number: torch.Tensor,
                    species_names: str, atomic_numbers_text: str, spec_json: str) -> torch.Tensor:
    """Check the driver's inputs (one clear message for each way of
    breaking the contract); the species as indices into the model's element
    list (atomic numbers mapped, see below). A free function, compiled once
    and shared by every entry class and both entry methods."""
    n = coordinates.shape[0]
    if (coordinates.dim() != 2 or coordinates.shape[1] != 3 or coordinates.dtype != torch.float64
            or species.dim() != 1 or species.shape[0] != n or species.dtype != torch.int64
            or contributions.dim() != 1 or contributions.shape[0] != n
            or contributions.dtype != torch.int64):
        raise ValueError('kim-gnn model: inputs break the TorchML contract: expected species [N] int64, '
                         'coordinates [N, 3] float64, contributions [N] int64 '
                         '(model: ' + spec_json + ')')
    if num_species > 0 and n > 0:
        lowest = int(species.min())
        highest = int(species.max())
        # Atomic numbers instead of indices (the TorchML driver under KIM_MODEL_ELEMENTS_MAP):
        # unambiguous when every value lies beyond the indices and names an element of the model.
        if lowest >= num_species and highest < index_of_atomic_number.shape[0]:
            mapped = index_of_atomic_number[species]
            if int(mapped.min()) < 0:
                bad = int(species[mapped < 0][0])
                raise ValueError('kim-gnn model: species index ' + str(bad) + ' is out of range: this '
                                 'model has ' + str(num_species) + ' species (' + species_names
                                 + '); read as atomic numbers (KIM_MODEL_ELEMENTS_MAP), ' + str(bad)
                                 + ' is not one of its elements (' + atomic_numbers_text + ')')
            species = mapped
            lowest = 0
            highest = 0
        if lowest < 0 or highest >= num_species:
            bad = lowest if lowest < 0 else highest
            raise ValueError('kim-gnn model: species index ' + str(bad) + ' is out of range: this model '
                             'has ' + str(num_species) + ' species (indices 0 to '
                             + str(num_species - 1) + ': ' + species_names + '); the driver '
                             'passes indices into the .param element list, or, under '
                             'KIM_MODEL_ELEMENTS_MAP, atomic numbers, which the model takes only '
                             'when all of them are atomic numbers of its elements (' + atomic_numbers_text
                             + ') and none is below ' + str(num_species) + '')
    for k, edges in enumerate(graphs):
        if edges.dim() != 2 or edges.shape[0] != 2 or edges.dtype != torch.int64:
            raise ValueError('kim-gnn model: edge_index_' + str(k) + ' is not a [2, E] int64 tensor')
        if edges.numel() > 0:
            if int(edges.min()) < 0 or int(edges.max()) >= n:
                raise ValueError('kim-gnn model: edge_index_' + str(k) + ' refers to a particle '
                                 'outside 0 .. ' + str(n - 1))
    return species


class KIMStagedEntry(torch.nn.Module):
    """Driver entry point: species, coordinates, L edge lists (edge_index_0 the
    smallest), contributions (0 = contributing). Returns per-particle energies [N]
    float64, zero on non-contributing particles.

    The inputs are checked first: a call that breaks the contract gets one
    clear message (the driver does not catch exceptions) instead of an
    indexing error deep inside the network."""

    num_species: int
    species_names: str
    atomic_numbers_text: str
    kim_gnn_spec_json: str

    def __init__(self, staged: torch.nn.Module, num_species: int = 0, species_names: str = '',
                 spec_json: str = '', atomic_numbers: Optional[List[int]] = None):
        super().__init__()
        self.staged = staged
        self.num_species = num_species
        self.species_names = species_names
        numbers = atomic_numbers or []
        table = torch.full((max(numbers) + 1 if numbers else 0,), -1, dtype=torch.int64)
        for index, number in enumerate(numbers):
            table[number] = index
        # species index of each atomic number (-1: not an element of the model), for
        # drivers that pass atomic numbers (KIM_MODEL_ELEMENTS_MAP)
        self.register_buffer('index_of_atomic_number', table)
        self.atomic_numbers_text = ' '.join(s + '=' + str(z) for s, z in zip(species_names.split(), numbers))
        self.kim_gnn_spec_json = _SPEC_MARKER + spec_json if spec_json else ''


class KIMStagedEntryWithEdgeVectors(KIMStagedEntry):
    """``KIMStagedEntry`` plus the exported ``energy_and_edge_vectors``.

    A generated class is chosen at construction by the staged module: one
    without ``energy_and_edge_vectors`` (a plug-in adapter's written before
    it) gets the class without the method (``positional_entry_class``), with
    one warning line: the model is then emitted without per-atom virials."""

    def num_graphs(self) -> int:
        """L (the generated class says)."""
        raise NotImplementedError

    @torch.jit.export
    def energy_and_edge_vectors(self, species: torch.Tensor, coordinates: torch.Tensor, graphs: List[torch.Tensor],
                                contributions: torch.Tensor
                                ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
        """``(energy, edge_vectors, edge_index)``: forward's per-particle
        energies [N] float64; the edge vectors [E_j, 3] the model used,
        formed inside it from ``coordinates``; their edges [2, E_j] int64 in
        the caller's numbering, ``edge_vectors[j][e] == coordinates[edge_index[j][1, e]]
        - coordinates[edge_index[j][0, e]]``. The energy depends on the
        coordinates only through these vectors. Same inputs (the L edge lists
        as one list, edge_index_0 first), checks and errors as ``forward``."""
        if len(graphs) != self.num_graphs():
            raise ValueError('kim-gnn model: energy_and_edge_vectors takes ' + str(self.num_graphs())
                             + ' edge lists (edge_index_0 first), got ' + str(len(graphs)))
        species = checked_species(species, coordinates, graphs, contributions, self.num_species,
                                  self.index_of_atomic_number, self.species_names, self.atomic_numbers_text,
                                  self.kim_gnn_spec_json)
        return self.staged.energy_and_edge_vectors(species, coordinates, graphs, contributions)


_entry_counter = 0


def positional_entry_class(num_layers: int, edge_vectors: bool = True) -> type:
    """A subclass of ``KIMStagedEntryWithEdgeVectors`` (``KIMStagedEntry``
    without ``edge_vectors``) whose ``forward`` takes exactly the driver's
    L + 3 positional tensors and calls the checked path with
    ``(species, coordinates, [edge_index_0, ..., edge_index_{L-1}], contributions)``.

    TorchScript compiles from source, and the arity depends on L, so this one
    method is generated from source registered in ``linecache`` (where
    ``inspect``, and so TorchScript, finds it).
    """
    global _entry_counter
    if num_layers < 1:
        raise ValueError("a staged model needs at least one layer")
    names = input_names(num_layers)
    graphs = ", ".join(names[2:-1])
    args = ",\n        ".join(
        ["self", "species: torch.Tensor", "coordinates: torch.Tensor"]
        + [f"{n}: torch.Tensor" for n in names[2:-1]]
        + ["contributions: torch.Tensor"]
    )
    _entry_counter += 1
    class_name = f"KIMStagedModel{num_layers}L"
    filename = f"<kim_gnn-generated-entry-{_entry_counter}>"
    forward = (
        f"    def forward(\n        {args},\n    ) -> torch.Tensor:\n"
        f"        graphs: List[torch.Tensor] = [{graphs}]\n"
        "        species = checked_species(species, coordinates, graphs, contributions, self.num_species,\n"
        "                                  self.index_of_atomic_number, self.species_names,\n"
        "                                  self.atomic_numbers_text, self.kim_gnn_spec_json)\n"
        "        return self.staged(species, coordinates, graphs, contributions)\n"
    )
    source = (
        "import torch\n"
        "from typing import List\n"
        "\n"
        f"class {class_name}(KIMStagedEntry):\n"
        "    __doc__ = KIMStagedEntry.__doc__\n"
        "\n"
        + forward
        + "\n\n"
        f"class {class_name}E({class_name}, KIMStagedEntryWithEdgeVectors):\n"
        "    __doc__ = KIMStagedEntry.__doc__\n"
        "\n"
        + forward
        + "\n"
        "    def num_graphs(self) -> int:\n"
        f"        return {num_layers}\n"
    )
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: Dict[str, object] = {"__name__": "kim_gnn._generated", "KIMStagedEntry": KIMStagedEntry,
                                    "checked_species": checked_species,
                                    "KIMStagedEntryWithEdgeVectors": KIMStagedEntryWithEdgeVectors}
    exec(compile(source, filename, "exec"), namespace)
    plain, with_vectors = namespace[class_name], namespace[class_name + "E"]
    for cls in (plain, with_vectors):
        cls.__module__ = "kim_gnn._generated"
    if not edge_vectors:
        return plain

    def choose(cls, staged=None, *args, **kwargs):
        if cls is with_vectors and not hasattr(staged, "energy_and_edge_vectors"):
            from .errors import warn_not_applied

            warn_not_applied(f"per-atom virials not provided: the staged module {type(staged).__name__} has no "
                             "energy_and_edge_vectors method, so the model is emitted with forward only")
            module = torch.nn.Module.__new__(plain)
            module.__init__(staged, *args, **kwargs)  # (Python calls __init__ only on a with_vectors)
            return module
        return torch.nn.Module.__new__(cls)

    with_vectors.__new__ = choose
    return with_vectors
