// The model runner (model_runner.hpp): everything of the driver that uses
// torch. Every exception torch throws ends here as a one-line message.

#include "model_runner.hpp"

#include <chrono>
#include <exception>

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include "contract_facts.hpp"
#include "text.hpp"
#include "torch_errors.hpp"

namespace kim_gnn
{
namespace
{
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point const a, Clock::time_point const b)
{
  return std::chrono::duration<double>(b - a).count();
}

// A model's output, read.
struct RawOutputs
{
  torch::Tensor energies;
  torch::Tensor forces;                   // "Return Forces: True" only
  std::vector<torch::Tensor> edgeVectors;  // energy_and_edge_vectors only
  std::vector<torch::Tensor> edgeIndex;
};

// forward's output: a tensor, or a tuple whose element 0 is the energy
// tensor (and element 1 the forces, when the .param file says so).
std::string ReadForwardOutput(torch::jit::IValue const & out,
                              bool const returnsForces,
                              RawOutputs * raw)
{
  std::string const noForces
      = "the .param file says the model returns forces, but its "
        "output has no forces tensor (element 1)";
  if (out.isTensor())
  {
    raw->energies = out.toTensor();
    return returnsForces ? noForces : "";
  }
  if (!(out.isTuple() && !out.toTupleRef().elements().empty()
        && out.toTupleRef().elements()[0].isTensor()))
    return "the model's output is not a tensor or a tuple of tensors";
  auto const & elems = out.toTupleRef().elements();
  raw->energies = elems[0].toTensor();
  if (returnsForces)
  {
    if (elems.size() < 2 || !elems[1].isTensor()) return noForces;
    raw->forces = elems[1].toTensor();
  }
  return "";
}

// energy_and_edge_vectors' output: (energy, edge_vectors, edge_index).
std::string ReadEdgeVectorsOutput(torch::jit::IValue const & out,
                                  RawOutputs * raw)
{
  std::string const bad = std::string("the model's ") + kEdgeVectorsMethod
                          + " did not return (energy, edge_vectors, "
                            "edge_index) as tensor, list of tensors, list "
                            "of tensors";
  if (!out.isTuple()) return bad;
  auto const & elems = out.toTupleRef().elements();
  if (elems.size() != 3 || !elems[0].isTensor() || !elems[1].isTensorList()
      || !elems[2].isTensorList())
    return bad;
  raw->energies = elems[0].toTensor();
  raw->edgeVectors = elems[1].toTensorVector();
  raw->edgeIndex = elems[2].toTensorVector();
  if (raw->edgeVectors.size() != raw->edgeIndex.size())
    return std::string("the model's ") + kEdgeVectorsMethod + " returned "
           + std::to_string(raw->edgeVectors.size()) + " edge-vector lists but "
           + std::to_string(raw->edgeIndex.size()) + " edge-index lists";
  return "";
}

std::string CheckEnergies(torch::Tensor const & energies,
                          bool const particleEnergies,
                          int const m)
{
  if (energies.scalar_type() != torch::kFloat64)
    return std::string("the model's energy output has dtype ")
           + c10::toString(energies.scalar_type())
           + ", expected float64 (double)";
  if (energies.dim() == 0)
    return "the model's energy output is 0-dimensional; expected "
           "per-particle energies [N]";
  if (particleEnergies && !(energies.dim() == 1 && energies.size(0) == m))
    return "per-particle energies requested, but the model's energy output "
           "has shape "
           + c10::str(energies.sizes()) + ", expected [" + std::to_string(m)
           + "]";
  return "";
}

// One backward pass: dE/dcoordinates and dE/dr of every edge vector that
// is in the autograd graph (others: undefined, i.e. zero).
void Differentiate(torch::Tensor const & total,
                   torch::Tensor const & coordinates,
                   RawOutputs const & raw,
                   torch::Tensor * coordinateGradient,
                   std::vector<torch::Tensor> * edgeGradients)
{
  std::vector<torch::Tensor> wrt = {coordinates};
  std::vector<int> slot(raw.edgeVectors.size(), -1);
  for (std::size_t j = 0; j < raw.edgeVectors.size(); ++j)
  {
    if (!raw.edgeVectors[j].requires_grad()) continue;
    slot[j] = static_cast<int>(wrt.size());
    wrt.push_back(raw.edgeVectors[j]);
  }
  std::vector<torch::Tensor> grads = torch::autograd::grad(
      {total}, wrt, {}, /*retain_graph=*/false,
      /*create_graph=*/false, /*allow_unused=*/true);
  *coordinateGradient = grads[0];
  edgeGradients->assign(raw.edgeVectors.size(), torch::Tensor());
  for (std::size_t j = 0; j < slot.size(); ++j)
    if (slot[j] >= 0) (*edgeGradients)[j] = grads[slot[j]];
}

torch::Tensor DoubleOnCpu(torch::Tensor const & t)
{
  return t.detach().to(torch::kCPU).to(torch::kFloat64).contiguous();
}

// Edge list j: its index, vectors and edge forces as plain arrays.
std::string CopyEdgeForces(torch::Tensor const & index,
                           torch::Tensor const & vectors,
                           torch::Tensor const & gradient,
                           std::size_t const j,
                           EdgeForces * out)
{
  torch::Tensor const i
      = index.detach().to(torch::kCPU).to(torch::kInt64).contiguous();
  std::int64_t const e = i.dim() == 2 ? i.size(1) : -1;
  if (!(i.dim() == 2 && i.size(0) == 2 && vectors.dim() == 2
        && vectors.size(0) == e && vectors.size(1) == 3))
    return std::string("the model's ") + kEdgeVectorsMethod + " edge list "
           + std::to_string(j) + " has edge_index of shape "
           + c10::str(index.sizes()) + " and edge_vectors of shape "
           + c10::str(vectors.sizes()) + ", expected [2, E] and [E, 3]";
  torch::Tensor const v = DoubleOnCpu(vectors);
  torch::Tensor const g = gradient.defined() ? DoubleOnCpu(gradient)
                                             : torch::zeros_like(v);
  out->numEdges = e;
  out->index.assign(i.data_ptr<std::int64_t>(), i.data_ptr<std::int64_t>() + 2 * e);
  out->vectors.assign(v.data_ptr<double>(), v.data_ptr<double>() + 3 * e);
  out->gradients.assign(g.data_ptr<double>(), g.data_ptr<double>() + 3 * e);
  return "";
}
}  // namespace

struct ModelRunner::Impl
{
  torch::jit::Module module;
  torch::Device device = torch::Device(torch::kCPU);

  std::string Run(ModelArrays const & inputs,
                  std::vector<std::vector<std::int64_t> > const & edgeLists,
                  ModelRequest const & request,
                  bool returnsForces,
                  ModelOutputs * outputs);
  torch::jit::IValue Call(ModelArrays const & inputs,
                          std::vector<std::vector<std::int64_t> > const & edgeLists,
                          bool edgeVectors,
                          torch::Tensor * coordinates);
  std::string Copy(RawOutputs const & raw,
                   torch::Tensor const & total,
                   torch::Tensor const & coordinateGradient,
                   std::vector<torch::Tensor> const & edgeGradients,
                   ModelRequest const & request,
                   bool returnsForces,
                   int m,
                   ModelOutputs * outputs);
};

ModelRunner::ModelRunner() : impl_(new Impl()) {}
ModelRunner::~ModelRunner() = default;

std::string ModelRunner::SelectCudaDevice(std::string const & name)
{
  if (!torch::cuda::is_available())
    return "KIM_MODEL_EXECUTION_DEVICE=" + name
           + " but CUDA is not available to the driver (the libtorch it "
             "was built against has no CUDA support, or no GPU is "
             "visible); unset it or set it to cpu";
  try
  {
    impl_->device = torch::Device(name);
  }
  catch (std::exception const &)
  {
    return "KIM_MODEL_EXECUTION_DEVICE=" + name
           + " is not a device (cpu, cuda, cuda:N)";
  }
  return "";
}

std::string ModelRunner::Load(std::string const & path)
{
  try
  {
    torch::jit::Module loaded = torch::jit::load(path, impl_->device);
    isKimGnnModel_ = loaded.hasattr(kSpecAttribute);
    hasEdgeVectors_ = loaded.find_method(kEdgeVectorsMethod).has_value();
    loaded.eval();
    std::vector<std::string> preserved;
    if (hasEdgeVectors_) preserved.push_back(kEdgeVectorsMethod);
    impl_->module = torch::jit::freeze(loaded, preserved);
    torch::jit::FusionBehavior const behavior
        = std::string(kFusionStrategyBehavior) == "STATIC"
              ? torch::jit::FusionBehavior::STATIC
              : torch::jit::FusionBehavior::DYNAMIC;
    torch::jit::FusionStrategy strategy = {{behavior, kFusionStrategyDepth}};
    torch::jit::setFusionStrategy(strategy);
  }
  catch (std::exception const & exc)
  {
    c10::Error const * const torchError = dynamic_cast<c10::Error const *>(&exc);
    std::string const what
        = torchError ? torchError->what_without_backtrace() : exc.what();
    return "cannot load the TorchScript model " + path + " ("
           + FirstLines(what) + ")" + OpsHint(what);
  }
  return "";
}

std::string ModelRunner::Run(
    ModelArrays const & inputs,
    std::vector<std::vector<std::int64_t> > const & edgeLists,
    ModelRequest const & request,
    bool const returnsForces,
    ModelOutputs * const outputs)
{
  try
  {
    return impl_->Run(inputs, edgeLists, request, returnsForces, outputs);
  }
  catch (c10::Error const & exc)
  {
    return "the model failed: " + TorchMessageText(exc.what_without_backtrace())
           + OpsHint(exc.what_without_backtrace());
  }
  catch (std::exception const & exc)
  {
    return std::string("the model failed: ") + TorchMessageText(exc.what());
  }
}

// The L + 3 inputs (coordinates requiring grad), then forward, or
// energy_and_edge_vectors with the edge lists as one list.
torch::jit::IValue ModelRunner::Impl::Call(
    ModelArrays const & inputs,
    std::vector<std::vector<std::int64_t> > const & edgeLists,
    bool const edgeVectors,
    torch::Tensor * const coordinates)
{
  int const m = inputs.m;
  torch::TensorOptions const i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::TensorOptions const f64 = torch::TensorOptions().dtype(torch::kFloat64);
  *coordinates
      = torch::from_blob(const_cast<double *>(inputs.coordinates.data()), {m, 3}, f64)
            .to(device, /*non_blocking=*/false, /*copy=*/true)
            .requires_grad_(true);
  torch::Tensor const species
      = torch::from_blob(const_cast<std::int64_t *>(inputs.species.data()), {m}, i64)
            .to(device);
  torch::Tensor const contributions
      = torch::from_blob(const_cast<std::int64_t *>(inputs.contributions.data()), {m}, i64)
            .to(device);
  std::vector<torch::Tensor> edges;
  for (std::vector<std::int64_t> const & list : edgeLists)
  {
    std::int64_t const e = static_cast<std::int64_t>(list.size() / 2);
    edges.push_back(
        torch::from_blob(const_cast<std::int64_t *>(list.data()), {2, e}, i64)
            .to(device));
  }
  if (edgeVectors)
  {
    // Without the graph executor's optimisations: once optimised (after the
    // first call), TorchScript's autodiff merges the edge vectors and the
    // energy into one differentiable graph, and the returned edge vectors
    // are then outputs the energy no longer depends on (their gradients come
    // back undefined). forward, run by its own executor, stays optimised.
    torch::jit::GraphOptimizerEnabledGuard const unoptimised(false);
    return module.get_method(kEdgeVectorsMethod)(
        {species, *coordinates, c10::List<torch::Tensor>(edges), contributions});
  }
  std::vector<torch::jit::IValue> args;
  args.reserve(edges.size() + kInputsBesidesEdgeLists);
  args.emplace_back(species);
  args.emplace_back(*coordinates);
  for (torch::Tensor const & e : edges) args.emplace_back(e);
  args.emplace_back(contributions);
  return module.forward(args);
}

std::string ModelRunner::Impl::Run(
    ModelArrays const & inputs,
    std::vector<std::vector<std::int64_t> > const & edgeLists,
    ModelRequest const & request,
    bool const returnsForces,
    ModelOutputs * const outputs)
{
  if (request.edgeForces && returnsForces)
    return "per-particle virials need the energy's gradient, and the .param "
           "file says the model returns its forces";
  torch::Tensor coordinates;
  Clock::time_point const f0 = Clock::now();
  torch::jit::IValue const out
      = Call(inputs, edgeLists, request.edgeForces, &coordinates);
  outputs->forwardSeconds = Seconds(f0, Clock::now());
  RawOutputs raw;
  std::string error = request.edgeForces
                          ? ReadEdgeVectorsOutput(out, &raw)
                          : ReadForwardOutput(out, returnsForces, &raw);
  if (error.empty())
    error = CheckEnergies(raw.energies, request.particleEnergies, inputs.m);
  if (!error.empty()) return error;

  torch::Tensor const total = raw.energies.sum();
  torch::Tensor coordinateGradient;
  std::vector<torch::Tensor> edgeGradients;
  Clock::time_point const b0 = Clock::now();
  if (request.gradient && !returnsForces)
  {
    if (!total.requires_grad())
      return "forces or a virial requested, but the model's energy does not "
             "require grad (it is not computed from the coordinates by "
             "autograd): the driver cannot differentiate it";
    Differentiate(total, coordinates, raw, &coordinateGradient, &edgeGradients);
  }
  outputs->backwardSeconds = Seconds(b0, Clock::now());
  return Copy(raw, total, coordinateGradient, edgeGradients, request,
              returnsForces, inputs.m, outputs);
}

// The results as plain arrays.
std::string ModelRunner::Impl::Copy(
    RawOutputs const & raw,
    torch::Tensor const & total,
    torch::Tensor const & coordinateGradient,
    std::vector<torch::Tensor> const & edgeGradients,
    ModelRequest const & request,
    bool const returnsForces,
    int const m,
    ModelOutputs * const outputs)
{
  outputs->energy = total.item<double>();
  if (request.particleEnergies)
  {
    torch::Tensor const e = raw.energies.detach().to(torch::kCPU).contiguous();
    outputs->particleEnergies.assign(e.data_ptr<double>(), e.data_ptr<double>() + m);
  }
  if (request.gradient)
  {
    torch::Tensor f;  // forces on all m model particles
    if (returnsForces)
    {
      if (raw.forces.scalar_type() != torch::kFloat64 || raw.forces.dim() != 2
          || raw.forces.size(0) != m || raw.forces.size(1) != 3)
        return "the model's forces output is not a float64 [N, 3] tensor";
      f = raw.forces.detach().to(torch::kCPU).contiguous();
    }
    else if (coordinateGradient.defined())
      f = coordinateGradient.neg().to(torch::kCPU).contiguous();
    else
      f = torch::zeros({m, 3}, torch::TensorOptions().dtype(torch::kFloat64));
    outputs->forces.assign(f.data_ptr<double>(), f.data_ptr<double>() + 3 * m);
  }
  outputs->edges.resize(request.edgeForces ? raw.edgeVectors.size() : 0);
  for (std::size_t j = 0; j < outputs->edges.size(); ++j)
  {
    std::string const error = CopyEdgeForces(
        raw.edgeIndex[j], raw.edgeVectors[j],
        j < edgeGradients.size() ? edgeGradients[j] : torch::Tensor(), j,
        &outputs->edges[j]);
    if (!error.empty()) return error;
  }
  return "";
}
}  // namespace kim_gnn
