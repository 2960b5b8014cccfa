"""Facts of the TorchML contract that the C++ driver needs too.

The driver (``csrc/driver``) restates them in ``csrc/driver/contract_facts.hpp``
(``constexpr <type> kName = <literal>;``); ``tests/csrc/test_driver_facts.py``
holds the two equal through :data:`CPP_FACTS`. See ``docs/contract.md``.
Importing this module does not import torch: the ``torch.dtype`` objects
are resolved on first use.
"""

from __future__ import annotations

#: Name of the published OpenKIM TorchML model driver.
DEFAULT_DRIVER_NAME = "TorchML__MD_173118614730_000"

#: Name of kim-gnn's own KIM model driver (``csrc/driver``, installed by
#: ``kim-gnn install-driver``): it runs the same portable-model directories;
#: ``kim-gnn convert --driver-name KimGnn__MD_000000000000_000`` names it.
KIM_GNN_DRIVER_NAME = "KimGnn__MD_000000000000_000"

#: dtypes of the driver's inputs (species, coordinates, edge_index_k,
#: contributions) and of every output tensor, by torch dtype name. The
#: ``torch.dtype`` objects are the module attributes ``SPECIES_DTYPE``,
#: ``COORDINATES_DTYPE``, ``EDGE_INDEX_DTYPE``, ``CONTRIBUTIONS_DTYPE`` and
#: ``OUTPUT_DTYPE``, resolved on first use so that importing the contract (and
#: so ``kim-gnn --help``) does not import torch.
DTYPE_NAMES = {
    "SPECIES_DTYPE": "int64",
    "COORDINATES_DTYPE": "float64",
    "EDGE_INDEX_DTYPE": "int64",
    "CONTRIBUTIONS_DTYPE": "int64",
    "OUTPUT_DTYPE": "float64",
}


def __getattr__(name):
    if name in DTYPE_NAMES:
        import torch

        return getattr(torch, DTYPE_NAMES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: ``contributions`` values: note the inversion of KIM's own flag.
CONTRIBUTING = 0
NOT_CONTRIBUTING = 1

#: The TorchScript fusion strategy the driver sets after freezing (process-wide).
FUSION_STRATEGY = [("DYNAMIC", 3)]

#: Where the driver puts the dummy partner of a single isolated atom. It
#: has no edges (whatever the atom's position), does not contribute, and
#: kim_gnn gives it the species of the atom: a valid index, and with no
#: edges and no contribution its species cannot change any result.
DUMMY_PARTICLE_POSITION = (999.0, 999.0, 999.0)

#: Units the driver accepts.
LENGTH_UNIT = "A"
ENERGY_UNIT = "eV"

#: ``forward`` takes species, coordinates, the L edge lists and
#: contributions: L + 3 inputs.
INPUTS_BESIDES_EDGE_LISTS = 3

#: ``file.param`` holds this many values, in a fixed order (number of
#: elements, elements, preprocessing, cutoff, layers, model file, returns
#: forces, number of inputs); its preprocessing value for graph models.
PARAM_FILE_VALUES = 8
PREPROCESSING = "Graph"

#: The attribute of a converted model that carries its provenance spec as
#: JSON; kim-gnn's driver recognises kim-gnn models by it.
SPEC_ATTRIBUTE = "kim_gnn_spec_json"

#: The exported method of the per-atom virial interface (docs/contract.md):
#: ``energy_and_edge_vectors(species, coordinates, graphs, contributions)``
#: -> (energy, edge_vectors, edge_index); drivers keep it through freezing.
EDGE_VECTORS_METHOD = "energy_and_edge_vectors"

#: The facts above under the names ``csrc/driver/contract_facts.hpp`` gives
#: them (``constexpr <type> kName = <literal>;``). Every constant of the
#: header must be listed here with the same value; the ones in
#: :data:`CPP_REQUIRED` must be in the header.
CPP_FACTS = {
    "kDummyParticleCoordinate": DUMMY_PARTICLE_POSITION[0],
    "kFusionStrategyBehavior": FUSION_STRATEGY[0][0],
    "kFusionStrategyDepth": FUSION_STRATEGY[0][1],
    "kContributing": CONTRIBUTING,
    "kNotContributing": NOT_CONTRIBUTING,
    "kInputsBesidesEdgeLists": INPUTS_BESIDES_EDGE_LISTS,
    "kParamFileValues": PARAM_FILE_VALUES,
    "kPreprocessing": PREPROCESSING,
    "kLengthUnit": LENGTH_UNIT,
    "kEnergyUnit": ENERGY_UNIT,
    "kSpecAttribute": SPEC_ATTRIBUTE,
    "kEdgeVectorsMethod": EDGE_VECTORS_METHOD,
}

#: Facts the driver must take from the header (not restate by hand): the
#: dummy particle's coordinate and the fusion strategy's depth.
CPP_REQUIRED = ("kDummyParticleCoordinate", "kFusionStrategyDepth")
