// kim-gnn's KIM model driver: the model buffer the KIM API holds, and its
// routines. The parts:
//   kim_gnn_driver.cpp   the extern "C" create routine and Destroy
//   driver_create.cpp    creation steps (parameters, units, species,
//                        device, op library, model, element map, neighbor
//                        list, published parameters, routines) and Refresh
//   driver_compute.cpp   the compute arguments and Compute (inputs,
//                        graphs, outputs, timing)
//   configuration.hpp    file.param and the environment (no KIM, no torch)
//   model_inputs.hpp     the model's input arrays (no KIM, no torch)
//   model_runner.hpp     load, freeze, call, differentiate (torch inside)
//   torch_errors.hpp     torch error texts -> one-line messages
//   virial.hpp           the virial and the per-particle virial fold
//   staged_graphs.hpp    the contract's staged edge lists
//   contract_facts.hpp   the contract's numbers and names
#ifndef KIM_GNN_DRIVER_HPP
#define KIM_GNN_DRIVER_HPP

#include <cstdint>
#include <string>
#include <vector>

#include "KIM_ModelDriverHeaders.hpp"
#include "configuration.hpp"
#include "model_inputs.hpp"
#include "model_runner.hpp"
#include "staged_graphs.hpp"

namespace kim_gnn
{
char const * const kDriverLabel = "kim-gnn driver";

class KimGnnDriver
{
 public:
  // --- fixed at creation: file.param, the environment, the model ---------
  Parameters params;
  std::vector<std::int64_t> atomicNumbers;  // per species code
  bool passAtomicNumbers = false;           // KIM_MODEL_ELEMENTS_MAP
  Timing timing;                            // KIM_GNN_DRIVER_TIMING
  std::string loadedOpsLibrary;             // "" if none
  ModelRunner runner;
  // partialParticleVirial: the model has energy_and_edge_vectors and its
  // forces come from autograd.
  bool particleVirialSupported = false;

  // --- handed to the KIM API by address, alive as long as the model ------
  double influenceDistance = 0.0;
  double neighborCutoff = 0.0;
  int modelWillNotRequestNeighborsOfNoncontributingParticles = 0;
  // Published parameters (read-only in effect: Refresh refuses a change).
  // The KIM API accepts a Refresh routine only from a model that publishes
  // parameters, and logs an error on every ClearThenRefresh() of a model
  // that has neither.
  double parameterCutoff = 0.0;
  int parameterNumLayers = 0;

  // --- buffers reused between compute calls ------------------------------
  StagedGraphBuilder graphs;
  ModelArrays modelArrays;
  std::vector<int> contributingFlags;
  ModelOutputs outputs;
  std::vector<double> particleVirialAll;  // [n, 6], the model's particles

  static int Create(KIM::ModelDriverCreate * const modelDriverCreate);
  static int Destroy(KIM::ModelDestroy * const modelDestroy);
  static int Refresh(KIM::ModelRefresh * const modelRefresh);
  static int Compute(KIM::ModelCompute const * const modelCompute,
                     KIM::ModelComputeArguments const * const arguments);
  static int ComputeArgumentsCreate(
      KIM::ModelCompute const * const modelCompute,
      KIM::ModelComputeArgumentsCreate * const create);
  static int ComputeArgumentsDestroy(
      KIM::ModelCompute const * const modelCompute,
      KIM::ModelComputeArgumentsDestroy * const destroy);

  // One compute: "" on success, else the error message.
  std::string Run(KIM::ModelComputeArguments const * const arguments);
  // The neighbor list and influence distance, handed to the KIM API by
  // Create and again by every Refresh (ClearThenRefresh() clears them):
  // KimObject is KIM::ModelDriverCreate or KIM::ModelRefresh, which have the
  // same two setters.
  template <class KimObject>
  void PublishNeighbors(KimObject * const kim)
  {
    neighborCutoff = params.cutoff;
    influenceDistance = params.cutoff * params.numLayers;
    modelWillNotRequestNeighborsOfNoncontributingParticles = 0;
    kim->SetInfluenceDistancePointer(&influenceDistance);
    kim->SetNeighborListPointers(
        1, &neighborCutoff, &modelWillNotRequestNeighborsOfNoncontributingParticles);
  }
};
}  // namespace kim_gnn

#endif  // KIM_GNN_DRIVER_HPP
