// The contract facts the driver relies on (docs/contract.md; the Python side
// states the same facts in kim_gnn/driver_facts.py, and a test holds the two
// equal by reading this file). Keep every fact one line of the form
//   constexpr <type> kName = <literal>;
// so that the test can parse it.
#ifndef KIM_GNN_CONTRACT_FACTS_HPP
#define KIM_GNN_CONTRACT_FACTS_HPP

#include <cstdint>

namespace kim_gnn
{
// A single isolated particle (N == 1) gets a dummy partner at
// (kDummyParticleCoordinate, kDummyParticleCoordinate, kDummyParticleCoordinate):
// not contributing, the same species, no edges.
constexpr double kDummyParticleCoordinate = 999.0;

// The TorchScript fusion strategy set after freezing: DYNAMIC, depth 3.
constexpr char const * kFusionStrategyBehavior = "DYNAMIC";
constexpr int kFusionStrategyDepth = 3;

// The model's `contributions` input: the inverse of KIM's own flag.
constexpr std::int64_t kContributing = 0;
constexpr std::int64_t kNotContributing = 1;

// forward takes species, coordinates, L edge lists, contributions: L + 3 inputs.
constexpr int kInputsBesidesEdgeLists = 3;

// The values of file.param, in their fixed order (number of elements,
// elements, preprocessing, cutoff, layers, model file, returns forces,
// number of inputs).
constexpr int kParamFileValues = 8;
constexpr char const * kPreprocessing = "Graph";

// Units the models work in.
constexpr char const * kLengthUnit = "A";
constexpr char const * kEnergyUnit = "eV";

// The attribute that marks a kim-gnn model (its provenance spec).
constexpr char const * kSpecAttribute = "kim_gnn_spec_json";

// The exported method of the per-atom virial interface
// (energy, edge_vectors, edge_index); kept through torch::jit::freeze.
constexpr char const * kEdgeVectorsMethod = "energy_and_edge_vectors";
}  // namespace kim_gnn

#endif  // KIM_GNN_CONTRACT_FACTS_HPP
