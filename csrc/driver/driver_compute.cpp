// The compute side of kim-gnn's driver: the compute arguments it supports,
// and Compute (inputs -> staged graphs -> model -> outputs, timing).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "KIM_LogMacros.hpp"
#include "kim_gnn_driver.hpp"
#include "virial.hpp"

namespace kim_gnn
{
namespace
{
using Clock = std::chrono::steady_clock;

// CheckParticleVirialSum's tolerance: far above float32 rounding, far below
// a missing share.
double const kParticleVirialSumTolerance = 1e-3;

// The compute arguments of one call (outputs null where not asked for).
struct Arguments
{
  int n = 0;
  int const * speciesCodes = nullptr;
  int const * contributing = nullptr;
  double const * coordinates = nullptr;
  double * energy = nullptr;
  double * forces = nullptr;
  double * particleEnergy = nullptr;
  double * virial = nullptr;
  double * particleVirial = nullptr;
};

std::string GetArguments(KIM::ModelComputeArguments const * const arguments,
                         bool const particleVirialSupported,
                         Arguments * const a)
{
  namespace N = KIM::COMPUTE_ARGUMENT_NAME;
  int const * numberOfParticles = nullptr;
  if (arguments->GetArgumentPointer(N::numberOfParticles, &numberOfParticles)
      || arguments->GetArgumentPointer(N::particleSpeciesCodes, &a->speciesCodes)
      || arguments->GetArgumentPointer(N::particleContributing, &a->contributing)
      || arguments->GetArgumentPointer(N::coordinates, &a->coordinates)
      || arguments->GetArgumentPointer(N::partialEnergy, &a->energy)
      || arguments->GetArgumentPointer(N::partialForces, &a->forces)
      || arguments->GetArgumentPointer(N::partialParticleEnergy,
                                       &a->particleEnergy)
      || arguments->GetArgumentPointer(N::partialVirial, &a->virial)
      || (particleVirialSupported
          && arguments->GetArgumentPointer(N::partialParticleVirial,
                                           &a->particleVirial)))
    return "cannot get the compute arguments";
  a->n = *numberOfParticles;
  return "";
}

void ZeroOutputs(Arguments const & a)
{
  std::size_t const n = a.n > 0 ? static_cast<std::size_t>(a.n) : 0;
  if (a.energy) *a.energy = 0.0;
  if (a.forces) std::fill(a.forces, a.forces + 3 * n, 0.0);
  if (a.particleEnergy) std::fill(a.particleEnergy, a.particleEnergy + n, 0.0);
  if (a.virial) std::fill(a.virial, a.virial + 6, 0.0);
  if (a.particleVirial) std::fill(a.particleVirial, a.particleVirial + 6 * n, 0.0);
}

// Staged graphs from neighbor list 0 (cutoff rc, neighbors of
// non-contributing particles included).
std::string BuildGraphs(KIM::ModelComputeArguments const * const arguments,
                        Arguments const & a,
                        KimGnnDriver * const d)
{
  d->contributingFlags.assign(a.contributing, a.contributing + a.n);
  std::string neighborError;
  d->graphs.Build(a.n,
                  a.coordinates,
                  d->contributingFlags.data(),
                  d->params.cutoff,
                  d->params.numLayers,
                  [&](int i, int * count, int const ** list) {
                    if (arguments->GetNeighborList(0, i, count, list))
                    {
                      *count = 0;
                      *list = nullptr;
                      if (neighborError.empty())
                        neighborError = "cannot get the neighbor list of particle "
                                        + std::to_string(i);
                    }
                  });
  return neighborError;
}

// The model's results into the simulator's arrays.
std::string WriteOutputs(Arguments const & a, KimGnnDriver * const d)
{
  ModelOutputs const & out = d->outputs;
  int const m = d->modelArrays.m;
  if (a.energy) *a.energy = out.energy;
  if (a.particleEnergy)
    std::copy(out.particleEnergies.begin(),
              out.particleEnergies.begin() + a.n,
              a.particleEnergy);
  if (a.forces)
    std::copy(out.forces.begin(), out.forces.begin() + 3 * a.n, a.forces);
  // KIM virial (Voigt xx yy zz yz xz xy) = sum_p x_p (x) dE/dx_p over every
  // particle the model saw (the dummy partner has no force).
  if (a.virial)
    GlobalVirial(m, d->modelArrays.coordinates.data(), out.forces.data(), a.virial);
  if (!a.particleVirial) return "";
  std::string error;
  for (EdgeForces const & e : out.edges)
  {
    if (error.empty())
      error = FoldEdgeVirials(a.n, m, e.numEdges, e.index.data(),
                              e.vectors.data(), e.gradients.data(),
                              a.particleVirial);
  }
  if (error.empty())
  {
    double virial[6];
    GlobalVirial(m, d->modelArrays.coordinates.data(), out.forces.data(), virial);
    error = CheckParticleVirialSum(a.n, a.particleVirial, virial,
                                   kParticleVirialSumTolerance);
  }
  if (!error.empty())
    std::fill(a.particleVirial, a.particleVirial + 6 * a.n, 0.0);
  return error;
}

// KIM_GNN_DRIVER_TIMING: one JSON line per compute.
void WriteTiming(Arguments const & a,
                 KimGnnDriver const & d,
                 double const graphSeconds,
                 double const totalSeconds)
{
  std::ostringstream line;
  line.precision(9);
  int contributing = 0;
  for (int i = 0; i < a.n; ++i) contributing += a.contributing[i] ? 1 : 0;
  line << "{\"particles\": " << a.n << ", \"contributing\": " << contributing
       << ", \"edges\": [";
  for (int k = 0; k < d.params.numLayers; ++k)
    line << (k ? ", " : "") << d.graphs.NumEdges(k);
  line << "], \"particle_virial\": " << (a.particleVirial ? "true" : "false")
       << ", \"graph_s\": " << graphSeconds
       << ", \"forward_s\": " << d.outputs.forwardSeconds
       << ", \"backward_s\": " << d.outputs.backwardSeconds
       << ", \"total_s\": " << totalSeconds << "}";
  if (d.timing.file.empty())
  {
    std::fprintf(stderr, "kim-gnn-driver-timing %s\n", line.str().c_str());
    std::fflush(stderr);
    return;
  }
  std::ofstream out(d.timing.file.c_str(), std::ios::app);
  out << line.str() << "\n";
}
}  // namespace

std::string KimGnnDriver::Run(KIM::ModelComputeArguments const * const arguments)
{
  Clock::time_point const t0 = Clock::now();
  Arguments a;
  std::string error = GetArguments(arguments, particleVirialSupported, &a);
  if (!error.empty()) return error;
  ZeroOutputs(a);
  if (a.n <= 0) return "";
  error = CheckParticles(a.n, a.speciesCodes, a.coordinates, params.elements);
  if (error.empty()) error = BuildGraphs(arguments, a, this);
  if (!error.empty()) return error;
  modelArrays.Fill(a.n, a.coordinates, a.speciesCodes, a.contributing,
                   passAtomicNumbers ? atomicNumbers
                                     : std::vector<std::int64_t>());
  Clock::time_point const t1 = Clock::now();

  ModelRequest request;
  request.particleEnergies = a.particleEnergy != nullptr;
  request.edgeForces = a.particleVirial != nullptr;
  request.gradient = a.forces || a.virial || request.edgeForces;
  outputs.forwardSeconds = outputs.backwardSeconds = 0.0;
  error = runner.Run(modelArrays, graphs.edges, request, params.returnsForces,
                     &outputs);
  if (error.empty()) error = WriteOutputs(a, this);
  if (!error.empty()) return error;
  if (timing.enabled)
    WriteTiming(a, *this, std::chrono::duration<double>(t1 - t0).count(),
                std::chrono::duration<double>(Clock::now() - t0).count());
  return "";
}

#undef KIM_LOGGER_OBJECT_NAME
#define KIM_LOGGER_OBJECT_NAME arguments

int KimGnnDriver::Compute(KIM::ModelCompute const * const modelCompute,
                          KIM::ModelComputeArguments const * const arguments)
{
  KimGnnDriver * driver = nullptr;
  modelCompute->GetModelBufferPointer(reinterpret_cast<void **>(&driver));
  std::string error;
  try
  {
    error = driver->Run(arguments);
  }
  catch (std::exception const & exc)
  {
    error = std::string("unexpected error: ") + FirstLines(exc.what());
  }
  catch (...)
  {
    error = "unexpected error";
  }
  if (error.empty()) return false;
  LOG_ERROR(std::string(kDriverLabel) + ": " + error);
  std::fprintf(stderr, "%s: error: %s\n", kDriverLabel, error.c_str());
  std::fflush(stderr);
  return true;
}

#undef KIM_LOGGER_OBJECT_NAME
#define KIM_LOGGER_OBJECT_NAME create

// partialParticleVirial is optional where the model can give it, and
// notSupported otherwise (simulators then say so themselves: LAMMPS prints
// that the virial per atom will be zero).
int KimGnnDriver::ComputeArgumentsCreate(
    KIM::ModelCompute const * const modelCompute,
    KIM::ModelComputeArgumentsCreate * const create)
{
  namespace N = KIM::COMPUTE_ARGUMENT_NAME;
  KimGnnDriver * driver = nullptr;
  modelCompute->GetModelBufferPointer(reinterpret_cast<void **>(&driver));
  KIM::SupportStatus const optional = KIM::SUPPORT_STATUS::optional;
  int const error
      = create->SetArgumentSupportStatus(N::partialEnergy, optional)
        || create->SetArgumentSupportStatus(N::partialForces, optional)
        || create->SetArgumentSupportStatus(N::partialParticleEnergy, optional)
        || create->SetArgumentSupportStatus(N::partialVirial, optional)
        || create->SetArgumentSupportStatus(
            N::partialParticleVirial,
            driver->particleVirialSupported ? optional
                                            : KIM::SUPPORT_STATUS::notSupported);
  if (error) LOG_ERROR("kim-gnn driver: cannot register the compute arguments");
  return error;
}

int KimGnnDriver::ComputeArgumentsDestroy(
    KIM::ModelCompute const * const /* modelCompute */,
    KIM::ModelComputeArgumentsDestroy * const /* destroy */)
{
  return false;
}
}  // namespace kim_gnn
