// The model runner: loads and freezes the TorchScript model, calls it and
// differentiates it, and turns every torch error into a one-line message.
// The only part of the driver that sees torch (behind a pointer to its
// implementation, model_runner.cpp): everything it returns is plain arrays.
#ifndef KIM_GNN_MODEL_RUNNER_HPP
#define KIM_GNN_MODEL_RUNNER_HPP

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model_inputs.hpp"

namespace kim_gnn
{
// What the caller wants from one call.
struct ModelRequest
{
  bool particleEnergies = false;  // checked to be [m]
  bool gradient = false;          // forces (for forces or a virial)
  bool edgeForces = false;        // per-edge dE/dr (per-particle virial)
};

// One edge list of energy_and_edge_vectors with its edge forces.
struct EdgeForces
{
  std::int64_t numEdges = 0;
  std::vector<std::int64_t> index;   // [2, E]: senders, then receivers
  std::vector<double> vectors;       // [E, 3]
  std::vector<double> gradients;     // [E, 3] dE/dr_e
};

struct ModelOutputs
{
  double energy = 0.0;
  std::vector<double> particleEnergies;  // [m] when asked
  std::vector<double> forces;            // [m, 3] when asked
  std::vector<EdgeForces> edges;         // when asked
  double forwardSeconds = 0.0;
  double backwardSeconds = 0.0;
};

class ModelRunner
{
 public:
  ModelRunner();
  ~ModelRunner();
  ModelRunner(ModelRunner const &) = delete;
  ModelRunner & operator=(ModelRunner const &) = delete;

  // KIM_MODEL_EXECUTION_DEVICE naming a CUDA device: "" or the error.
  std::string SelectCudaDevice(std::string const & name);
  // Load, eval, freeze (keeping energy_and_edge_vectors when the model has
  // it), then the fusion strategy: "" or the error.
  std::string Load(std::string const & path);
  bool IsKimGnnModel() const { return isKimGnnModel_; }
  bool HasEdgeVectors() const { return hasEdgeVectors_; }

  // One call: "" or the error. returnsForces: the .param file's flag.
  std::string Run(ModelArrays const & inputs,
                  std::vector<std::vector<std::int64_t> > const & edgeLists,
                  ModelRequest const & request,
                  bool returnsForces,
                  ModelOutputs * outputs);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool isKimGnnModel_ = false;
  bool hasEdgeVectors_ = false;
};
}  // namespace kim_gnn

#endif  // KIM_GNN_MODEL_RUNNER_HPP
