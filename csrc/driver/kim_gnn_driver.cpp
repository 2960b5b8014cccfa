// kim-gnn's KIM model driver for staged graph models (TorchML portable-model
// format, docs/contract.md).
//
// Written from the KIM API's public headers (KIM_ModelDriverHeaders.hpp) and
// its example drivers, and from the contract. It reads the same file.param
// and .pt as the OpenKIM TorchML driver, builds the contract's staged graphs
// from the KIM neighbor list (staged_graphs.hpp), calls the frozen
// TorchScript model with L + 3 positional inputs and returns energy, forces,
// per-particle energies and the virial. Every failure, including exceptions
// thrown inside TorchScript, becomes a KIM error with a logged message: the
// simulator is never aborted.

#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include "KIM_LogMacros.hpp"
#include "KIM_ModelDriverHeaders.hpp"
#include "elements.hpp"
#include "staged_graphs.hpp"

#ifndef KIM_GNN_DEFAULT_OPS_LIBRARY
#define KIM_GNN_DEFAULT_OPS_LIBRARY ""
#endif

namespace
{
char const * const kDriverLabel = "kim-gnn driver";

// The dummy partner of a single isolated atom (contract).
double const kDummyPosition = 999.0;

std::string Trim(std::string const & s)
{
  std::size_t const b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  std::size_t const e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// The first line of a (possibly very long) torch message.
std::string FirstLines(std::string const & s, std::size_t maxLines = 3)
{
  std::istringstream in(s);
  std::string line, out;
  std::size_t n = 0;
  while (n < maxLines && std::getline(in, line))
  {
    line = Trim(line);
    if (line.empty()) continue;
    if (!out.empty()) out += " | ";
    out += line;
    ++n;
  }
  return out;
}

// A message thrown inside TorchScript by `raise ValueError(...)` arrives as
// "The following operation failed in the TorchScript interpreter. ...
// RuntimeError: ValueError: <message>"; pick the message out.
std::string TorchMessage(std::exception const & exc)
{
  c10::Error const * const torchError = dynamic_cast<c10::Error const *>(&exc);
  std::string const what
      = torchError ? torchError->what_without_backtrace() : exc.what();
  if (what.find("autograd engine was called while holding the GIL")
      != std::string::npos)
    return "the autograd engine was called while holding Python's GIL: in a "
           "Python process that imported torch, create the calculator with "
           "KIM(name, options={\"release_GIL\": True})";
  static char const * const markers[] = {"builtins.ValueError: ",
                                         "ValueError: ",
                                         "builtins.RuntimeError: ",
                                         "RuntimeError: "};
  for (char const * marker : markers)
  {
    std::size_t const at = what.rfind(marker);
    if (at != std::string::npos)
    {
      std::string rest = what.substr(at + std::string(marker).size());
      std::size_t const nl = rest.find('\n');
      if (nl != std::string::npos) rest = rest.substr(0, nl);
      rest = Trim(rest);
      if (!rest.empty()) return rest;
    }
  }
  return FirstLines(what);
}

struct Timing
{
  bool enabled = false;
  std::string file;  // empty: stderr
};

class KimGnnDriver
{
 public:
  // Parameters (file.param)
  std::vector<std::string> elements;
  double cutoff = 0.0;
  int numLayers = 0;
  std::string modelFileName;
  bool returnsForces = false;
  int numInputs = 0;

  // KIM-facing values (their addresses are handed to the KIM API)
  double influenceDistance = 0.0;
  double neighborCutoff = 0.0;
  int modelWillNotRequestNeighborsOfNoncontributingParticles = 0;

  // Published parameters (read-only in effect: Refresh refuses a change).
  // The KIM API accepts a Refresh routine only from a model that publishes
  // parameters, and logs an error on every ClearThenRefresh() of a model
  // that has neither.
  double parameterCutoff = 0.0;
  int parameterNumLayers = 0;

  torch::jit::Module module;
  torch::Device device = torch::Device(torch::kCPU);
  bool isKimGnnModel = false;
  bool passAtomicNumbers = false;
  std::vector<std::int64_t> atomicNumbers;  // per species code
  Timing timing;

  // Buffers kept between calls
  kim_gnn::StagedGraphBuilder graphs;
  std::vector<double> coordinates;
  std::vector<std::int64_t> species;
  std::vector<std::int64_t> contributions;
  std::vector<int> contributingFlags;

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

  // Returns an empty string on success, else the error message.
  std::string Run(KIM::ModelComputeArguments const * const arguments);
};

std::string ReadFile(std::string const & path, bool * ok)
{
  std::ifstream in(path.c_str(), std::ios::in | std::ios::binary);
  if (!in)
  {
    *ok = false;
    return "";
  }
  std::ostringstream s;
  s << in.rdbuf();
  *ok = true;
  return s.str();
}

// Parse file.param as contract.parse_param_file does: the values are the
// lines that are neither blank nor comments (#), in their fixed order.
std::string ParseParamFile(std::string const & text, KimGnnDriver * d)
{
  std::vector<std::string> values;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
  {
    std::string const t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    values.push_back(t);
  }
  if (values.size() < 8)
    return "malformed .param file: expected at least 8 values (number of "
           "elements, elements, preprocessing, cutoff, layers, model file, "
           "returns forces, number of inputs), found "
           + std::to_string(values.size());
  try
  {
    std::size_t used = 0;
    int const n = std::stoi(values[0], &used);
    if (used != values[0].size() || n < 1)
      return "malformed .param file: number of elements '" + values[0]
             + "' is not a positive integer";
    std::istringstream names(values[1]);
    std::string name;
    while (names >> name) d->elements.push_back(name);
    if (static_cast<int>(d->elements.size()) != n)
      return ".param file lists " + std::to_string(d->elements.size())
             + " elements but says " + std::to_string(n);
    if (values[2] != "Graph")
      return ".param file preprocessing is '" + values[2]
             + "'; this driver runs graph models only ('Graph')";
    d->cutoff = std::stod(values[3], &used);
    if (used != values[3].size() || !(d->cutoff > 0.0)
        || !std::isfinite(d->cutoff))
      return ".param file cutoff '" + values[3]
             + "' is not a positive number";
    d->numLayers = std::stoi(values[4], &used);
    if (used != values[4].size() || d->numLayers < 1)
      return ".param file number of layers '" + values[4]
             + "' is not a positive integer";
    d->modelFileName = values[5];
    if (values[6] != "True" && values[6] != "False")
      return ".param file 'returns forces' is '" + values[6]
             + "', expected True or False";
    d->returnsForces = values[6] == "True";
    d->numInputs = std::stoi(values[7], &used);
    if (used != values[7].size() || d->numInputs != d->numLayers + 3)
      return ".param file says " + values[7] + " model inputs; a graph model of "
             + std::to_string(d->numLayers) + " layers takes "
             + std::to_string(d->numLayers + 3)
             + " (species, coordinates, the layers' edge lists, "
               "contributions)";
  }
  catch (std::exception const &)
  {
    return "malformed .param file: a number could not be read";
  }
  return "";
}

// Load the kim-gnn op library (torch custom ops kim_gnn::*) into the process
// before the model is loaded, so that models converted with the project's
// kernels find their ops. KIM_GNN_OPS_LIBRARY (a path; empty: none) wins
// over the path baked in at build time.
std::string LoadOpsLibrary(std::string * loaded, std::string * warning)
{
  char const * const env = std::getenv("KIM_GNN_OPS_LIBRARY");
  std::string path;
  bool const fromEnv = env != nullptr;
  if (fromEnv)
    path = Trim(env);
  else
    path = KIM_GNN_DEFAULT_OPS_LIBRARY;
  if (path.empty()) return "";
  if (!fromEnv)
  {
    std::ifstream probe(path.c_str());
    if (!probe) return "";  // the library built with the driver is gone
  }
  void * const handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (handle == nullptr)
  {
    char const * const err = dlerror();
    std::string const msg = "cannot load the kim-gnn op library " + path + " ("
                            + (err ? err : "unknown dlopen error") + ")";
    if (fromEnv) return msg + " named by KIM_GNN_OPS_LIBRARY";
    *warning = msg;
    return "";
  }
  *loaded = path;
  return "";
}

std::string OpsHint(std::string const & message)
{
  if (message.find("kim_gnn::") == std::string::npos
      && message.find("Unknown builtin op") == std::string::npos)
    return "";
  return " -- the model uses custom torch ops that are not loaded. For "
         "kim-gnn's own kernels (kim_gnn::*), build them and point the driver at "
         "the library: export KIM_GNN_OPS_LIBRARY=$(python -c 'import "
         "kim_gnn.kernels as k; print(k.library_path())'), or reinstall the "
         "driver (kim-gnn install-driver) after building them so that it "
         "remembers the path; or convert the model without --kernels";
}

}  // namespace

#undef KIM_LOGGER_OBJECT_NAME
#define KIM_LOGGER_OBJECT_NAME modelDriverCreate

static int CreateFailed(KIM::ModelDriverCreate * const modelDriverCreate,
                        KimGnnDriver * const driver,
                        std::string const & message)
{
  std::string const full = std::string(kDriverLabel) + ": " + message;
  LOG_ERROR(full);
  std::fprintf(stderr, "%s: error: %s\n", kDriverLabel, message.c_str());
  std::fflush(stderr);
  delete driver;
  return true;
}

extern "C" int kim_gnn_model_driver_create(
    KIM::ModelDriverCreate * const modelDriverCreate,
    KIM::LengthUnit const requestedLengthUnit,
    KIM::EnergyUnit const requestedEnergyUnit,
    KIM::ChargeUnit const requestedChargeUnit,
    KIM::TemperatureUnit const requestedTemperatureUnit,
    KIM::TimeUnit const requestedTimeUnit)
{
  (void) requestedLengthUnit;
  (void) requestedEnergyUnit;
  (void) requestedChargeUnit;
  (void) requestedTemperatureUnit;
  (void) requestedTimeUnit;
  KimGnnDriver * driver = nullptr;
  try
  {
    driver = new KimGnnDriver();

    // Parameter files: the .param file and the model it names.
    int numberOfFiles = 0;
    modelDriverCreate->GetNumberOfParameterFiles(&numberOfFiles);
    std::string const * directory = nullptr;
    modelDriverCreate->GetParameterFileDirectoryName(&directory);
    std::vector<std::string> basenames;
    std::string paramPath;
    for (int i = 0; i < numberOfFiles; ++i)
    {
      std::string const * basename = nullptr;
      if (modelDriverCreate->GetParameterFileBasename(i, &basename))
        return CreateFailed(
            modelDriverCreate, driver, "cannot get the parameter file names");
      basenames.push_back(*basename);
      std::string const & b = *basename;
      if (b.size() > 6 && b.compare(b.size() - 6, 6, ".param") == 0)
      {
        if (!paramPath.empty())
          return CreateFailed(modelDriverCreate,
                              driver,
                              "the model has more than one .param file");
        paramPath = *directory + "/" + b;
      }
    }
    if (paramPath.empty())
      return CreateFailed(
          modelDriverCreate, driver, "the model has no .param file");
    bool ok = false;
    std::string const paramText = ReadFile(paramPath, &ok);
    if (!ok)
      return CreateFailed(
          modelDriverCreate, driver, "cannot read " + paramPath);
    std::string error = ParseParamFile(paramText, driver);
    if (!error.empty()) return CreateFailed(modelDriverCreate, driver, error);
    bool found = false;
    for (std::string const & b : basenames) found = found || b == driver->modelFileName;
    if (!found)
      return CreateFailed(modelDriverCreate,
                          driver,
                          "the .param file names the model file '"
                              + driver->modelFileName
                              + "', which is not one of the model's "
                                "parameter files");
    std::string const modelPath = *directory + "/" + driver->modelFileName;

    // Units: the contract's models work in Angstrom and eV only.
    if (modelDriverCreate->SetUnits(KIM::LENGTH_UNIT::A,
                                    KIM::ENERGY_UNIT::eV,
                                    KIM::CHARGE_UNIT::unused,
                                    KIM::TEMPERATURE_UNIT::unused,
                                    KIM::TIME_UNIT::unused)
        || modelDriverCreate->SetModelNumbering(KIM::NUMBERING::zeroBased))
      return CreateFailed(
          modelDriverCreate, driver, "cannot set units or numbering");

    for (std::size_t s = 0; s < driver->elements.size(); ++s)
    {
      KIM::SpeciesName const name(driver->elements[s]);
      if (!name.Known())
        return CreateFailed(modelDriverCreate,
                            driver,
                            "unknown element '" + driver->elements[s]
                                + "' in the .param file");
      if (modelDriverCreate->SetSpeciesCode(name, static_cast<int>(s)))
        return CreateFailed(modelDriverCreate,
                            driver,
                            "cannot register species " + driver->elements[s]);
      driver->atomicNumbers.push_back(
          kim_gnn::AtomicNumber(driver->elements[s]));
    }

    // Device.
    char const * const deviceEnv = std::getenv("KIM_MODEL_EXECUTION_DEVICE");
    std::string const deviceName = deviceEnv ? Trim(deviceEnv) : "";
    if (deviceName.empty() || deviceName == "cpu")
      driver->device = torch::Device(torch::kCPU);
    else if (deviceName.compare(0, 4, "cuda") == 0)
    {
      if (!torch::cuda::is_available())
        return CreateFailed(
            modelDriverCreate,
            driver,
            "KIM_MODEL_EXECUTION_DEVICE=" + deviceName
                + " but CUDA is not available to the driver (the libtorch it "
                  "was built against has no CUDA support, or no GPU is "
                  "visible); unset it or set it to cpu");
      try
      {
        driver->device = torch::Device(deviceName);
      }
      catch (std::exception const &)
      {
        return CreateFailed(modelDriverCreate,
                            driver,
                            "KIM_MODEL_EXECUTION_DEVICE=" + deviceName
                                + " is not a device (cpu, cuda, cuda:N)");
      }
    }
    else
      return CreateFailed(modelDriverCreate,
                          driver,
                          "KIM_MODEL_EXECUTION_DEVICE=" + deviceName
                              + " is not supported (cpu or cuda)");

    // Op library, then the model: load, device, eval, freeze, fusion strategy.
    std::string loadedOps, opsWarning;
    error = LoadOpsLibrary(&loadedOps, &opsWarning);
    if (!error.empty()) return CreateFailed(modelDriverCreate, driver, error);
    if (!opsWarning.empty()) LOG_WARNING(std::string(kDriverLabel) + ": " + opsWarning);
    try
    {
      torch::jit::Module loaded = torch::jit::load(modelPath, driver->device);
      driver->isKimGnnModel = loaded.hasattr("kim_gnn_spec_json");
      loaded.eval();
      driver->module = torch::jit::freeze(loaded);
      torch::jit::FusionStrategy strategy
          = {{torch::jit::FusionBehavior::DYNAMIC, 3}};
      torch::jit::setFusionStrategy(strategy);
    }
    catch (std::exception const & exc)
    {
      c10::Error const * const torchError
          = dynamic_cast<c10::Error const *>(&exc);
      std::string const what
          = torchError ? torchError->what_without_backtrace() : exc.what();
      return CreateFailed(modelDriverCreate,
                          driver,
                          "cannot load the TorchScript model " + modelPath
                              + " (" + FirstLines(what) + ")" + OpsHint(what));
    }

    // KIM_MODEL_ELEMENTS_MAP: the TorchML driver then passes atomic numbers.
    // kim-gnn models take species indices (their entry refuses anything
    // else), and this driver knows the element list, so it keeps passing
    // indices to them; other models get atomic numbers as with TorchML.
    if (std::getenv("KIM_MODEL_ELEMENTS_MAP") != nullptr)
    {
      if (driver->isKimGnnModel)
        LOG_INFORMATION(std::string(kDriverLabel)
                        + ": KIM_MODEL_ELEMENTS_MAP is set, but this is a "
                          "kim-gnn model, which takes species indices: "
                          "passing indices");
      else
      {
        driver->passAtomicNumbers = true;
        for (std::size_t s = 0; s < driver->elements.size(); ++s)
          if (driver->atomicNumbers[s] == 0)
            return CreateFailed(modelDriverCreate,
                                driver,
                                "KIM_MODEL_ELEMENTS_MAP is set but '"
                                    + driver->elements[s]
                                    + "' has no atomic number");
      }
    }

    // Timing (for benchmarks): KIM_GNN_DRIVER_TIMING=1 -> stderr, or a file.
    char const * const timingEnv = std::getenv("KIM_GNN_DRIVER_TIMING");
    if (timingEnv != nullptr)
    {
      std::string const t = Trim(timingEnv);
      if (!(t.empty() || t == "0"))
      {
        driver->timing.enabled = true;
        if (t != "1") driver->timing.file = t;
      }
    }

    // Neighbor list and influence distance, and the two numbers they come
    // from published as parameters with a Refresh routine: simulators call
    // ClearThenRefresh() (ASE's KIM calculator before every compute), and the
    // KIM API logs an error for a model without parameters and Refresh (and
    // refuses a Refresh routine from a model without parameters). Both are
    // fixed by the trained model: Refresh restores and refuses a change.
    driver->neighborCutoff = driver->cutoff;
    driver->influenceDistance = driver->cutoff * driver->numLayers;
    driver->modelWillNotRequestNeighborsOfNoncontributingParticles = 0;
    modelDriverCreate->SetInfluenceDistancePointer(&driver->influenceDistance);
    modelDriverCreate->SetNeighborListPointers(
        1,
        &driver->neighborCutoff,
        &driver->modelWillNotRequestNeighborsOfNoncontributingParticles);
    driver->parameterCutoff = driver->cutoff;
    driver->parameterNumLayers = driver->numLayers;
    if (modelDriverCreate->SetParameterPointer(
            1,
            &driver->parameterCutoff,
            "cutoff",
            "graph cutoff rc in Angstrom (from file.param; fixed by the "
            "trained model: a changed value is refused)")
        || modelDriverCreate->SetParameterPointer(
            1,
            &driver->parameterNumLayers,
            "num_layers",
            "message-passing layers L; influence distance = L * cutoff "
            "(fixed by the trained model: a changed value is refused)"))
      return CreateFailed(
          modelDriverCreate, driver, "cannot publish the model parameters");

    KIM::ModelDestroyFunction * destroy = KimGnnDriver::Destroy;
    KIM::ModelRefreshFunction * refresh = KimGnnDriver::Refresh;
    KIM::ModelComputeFunction * compute = KimGnnDriver::Compute;
    KIM::ModelComputeArgumentsCreateFunction * argumentsCreate
        = KimGnnDriver::ComputeArgumentsCreate;
    KIM::ModelComputeArgumentsDestroyFunction * argumentsDestroy
        = KimGnnDriver::ComputeArgumentsDestroy;
    if (modelDriverCreate->SetRoutinePointer(
            KIM::MODEL_ROUTINE_NAME::Destroy,
            KIM::LANGUAGE_NAME::cpp,
            true,
            reinterpret_cast<KIM::Function *>(destroy))
        || modelDriverCreate->SetRoutinePointer(
            KIM::MODEL_ROUTINE_NAME::Refresh,
            KIM::LANGUAGE_NAME::cpp,
            false,
            reinterpret_cast<KIM::Function *>(refresh))
        || modelDriverCreate->SetRoutinePointer(
            KIM::MODEL_ROUTINE_NAME::Compute,
            KIM::LANGUAGE_NAME::cpp,
            true,
            reinterpret_cast<KIM::Function *>(compute))
        || modelDriverCreate->SetRoutinePointer(
            KIM::MODEL_ROUTINE_NAME::ComputeArgumentsCreate,
            KIM::LANGUAGE_NAME::cpp,
            true,
            reinterpret_cast<KIM::Function *>(argumentsCreate))
        || modelDriverCreate->SetRoutinePointer(
            KIM::MODEL_ROUTINE_NAME::ComputeArgumentsDestroy,
            KIM::LANGUAGE_NAME::cpp,
            true,
            reinterpret_cast<KIM::Function *>(argumentsDestroy)))
      return CreateFailed(
          modelDriverCreate, driver, "cannot register the model routines");

    modelDriverCreate->SetModelBufferPointer(static_cast<void *>(driver));
    if (!loadedOps.empty())
      LOG_INFORMATION(std::string(kDriverLabel) + ": loaded op library "
                      + loadedOps);
    return false;
  }
  catch (std::exception const & exc)
  {
    return CreateFailed(modelDriverCreate,
                        driver,
                        std::string("unexpected error: ") + FirstLines(exc.what()));
  }
  catch (...)
  {
    return CreateFailed(modelDriverCreate, driver, "unexpected error");
  }
}

int KimGnnDriver::Destroy(KIM::ModelDestroy * const modelDestroy)
{
  KimGnnDriver * driver = nullptr;
  modelDestroy->GetModelBufferPointer(reinterpret_cast<void **>(&driver));
  delete driver;
  return false;
}

#undef KIM_LOGGER_OBJECT_NAME
#define KIM_LOGGER_OBJECT_NAME modelRefresh

// The published parameters cannot change what the trained model is: a
// changed value is restored and refused. Otherwise hand the KIM API the same
// influence distance and neighbor-list cutoff again, as Refresh must.
int KimGnnDriver::Refresh(KIM::ModelRefresh * const modelRefresh)
{
  KimGnnDriver * driver = nullptr;
  modelRefresh->GetModelBufferPointer(reinterpret_cast<void **>(&driver));
  bool const changed = driver->parameterCutoff != driver->cutoff
                       || driver->parameterNumLayers != driver->numLayers;
  driver->parameterCutoff = driver->cutoff;
  driver->parameterNumLayers = driver->numLayers;
  // Always hand the pointers back: ClearThenRefresh() cleared them, and a
  // simulator may ask for the influence distance after a failed refresh.
  driver->neighborCutoff = driver->cutoff;
  driver->influenceDistance = driver->cutoff * driver->numLayers;
  modelRefresh->SetInfluenceDistancePointer(&driver->influenceDistance);
  modelRefresh->SetNeighborListPointers(
      1,
      &driver->neighborCutoff,
      &driver->modelWillNotRequestNeighborsOfNoncontributingParticles);
  if (changed)
  {
    std::ostringstream message;
    message << kDriverLabel << ": the cutoff (" << driver->cutoff
            << " A) and num_layers (" << driver->numLayers
            << ") are fixed by the trained model; the changed value was "
               "refused and restored";
    LOG_ERROR(message.str());
    std::fprintf(stderr, "%s\n", message.str().c_str());
    std::fflush(stderr);
    return true;
  }
  return false;
}

#undef KIM_LOGGER_OBJECT_NAME
#define KIM_LOGGER_OBJECT_NAME create

int KimGnnDriver::ComputeArgumentsCreate(
    KIM::ModelCompute const * const /* modelCompute */,
    KIM::ModelComputeArgumentsCreate * const create)
{
  int const error
      = create->SetArgumentSupportStatus(
            KIM::COMPUTE_ARGUMENT_NAME::partialEnergy,
            KIM::SUPPORT_STATUS::optional)
        || create->SetArgumentSupportStatus(
            KIM::COMPUTE_ARGUMENT_NAME::partialForces,
            KIM::SUPPORT_STATUS::optional)
        || create->SetArgumentSupportStatus(
            KIM::COMPUTE_ARGUMENT_NAME::partialParticleEnergy,
            KIM::SUPPORT_STATUS::optional)
        || create->SetArgumentSupportStatus(
            KIM::COMPUTE_ARGUMENT_NAME::partialVirial,
            KIM::SUPPORT_STATUS::optional);
  if (error) LOG_ERROR("kim-gnn driver: cannot register the compute arguments");
  return error;
}

int KimGnnDriver::ComputeArgumentsDestroy(
    KIM::ModelCompute const * const /* modelCompute */,
    KIM::ModelComputeArgumentsDestroy * const /* destroy */)
{
  return false;
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
  std::string const full = std::string(kDriverLabel) + ": " + error;
  LOG_ERROR(full);
  std::fprintf(stderr, "%s: error: %s\n", kDriverLabel, error.c_str());
  std::fflush(stderr);
  return true;
}

std::string KimGnnDriver::Run(KIM::ModelComputeArguments const * const arguments)
{
  using Clock = std::chrono::steady_clock;
  Clock::time_point const t0 = Clock::now();

  int const * numberOfParticlesPointer = nullptr;
  int const * speciesCodes = nullptr;
  int const * particleContributing = nullptr;
  double const * kimCoordinates = nullptr;
  double * energy = nullptr;
  double * forces = nullptr;
  double * particleEnergy = nullptr;
  double * virial = nullptr;
  if (arguments->GetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::numberOfParticles,
                                    &numberOfParticlesPointer)
      || arguments->GetArgumentPointer(
          KIM::COMPUTE_ARGUMENT_NAME::particleSpeciesCodes, &speciesCodes)
      || arguments->GetArgumentPointer(
          KIM::COMPUTE_ARGUMENT_NAME::particleContributing,
          &particleContributing)
      || arguments->GetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::coordinates,
                                       &kimCoordinates)
      || arguments->GetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::partialEnergy,
                                       &energy)
      || arguments->GetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::partialForces,
                                       &forces)
      || arguments->GetArgumentPointer(
          KIM::COMPUTE_ARGUMENT_NAME::partialParticleEnergy, &particleEnergy)
      || arguments->GetArgumentPointer(KIM::COMPUTE_ARGUMENT_NAME::partialVirial,
                                       &virial))
    return "cannot get the compute arguments";

  int const n = *numberOfParticlesPointer;
  if (energy) *energy = 0.0;
  if (forces) std::fill(forces, forces + 3 * static_cast<std::size_t>(n), 0.0);
  if (particleEnergy) std::fill(particleEnergy, particleEnergy + n, 0.0);
  if (virial) std::fill(virial, virial + 6, 0.0);
  if (n <= 0) return "";

  // Inputs, checked: species codes and coordinates.
  int const numSpecies = static_cast<int>(elements.size());
  for (int i = 0; i < n; ++i)
  {
    if (speciesCodes[i] < 0 || speciesCodes[i] >= numSpecies)
    {
      std::string list;
      for (std::string const & e : elements) list += (list.empty() ? "" : " ") + e;
      return "particle " + std::to_string(i) + " has species code "
             + std::to_string(speciesCodes[i])
             + ", which this model does not have (its species: " + list
             + ", codes 0 to " + std::to_string(numSpecies - 1) + ")";
    }
    for (int c = 0; c < 3; ++c)
      if (!std::isfinite(kimCoordinates[3 * i + c]))
        return "particle " + std::to_string(i)
               + " has a non-finite (NaN or inf) coordinate";
  }

  // Staged graphs from neighbor list 0 (cutoff rc, neighbors of
  // non-contributing particles included).
  contributingFlags.assign(particleContributing, particleContributing + n);
  std::string neighborError;
  graphs.Build(n,
               kimCoordinates,
               contributingFlags.data(),
               cutoff,
               numLayers,
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
  if (!neighborError.empty()) return neighborError;

  // Model inputs; a single isolated particle gets the contract's dummy
  // partner (not contributing, the same species, no edges).
  int const m = n == 1 ? 2 : n;
  coordinates.resize(3 * static_cast<std::size_t>(m));
  species.resize(m);
  contributions.resize(m);
  std::copy(kimCoordinates, kimCoordinates + 3 * static_cast<std::size_t>(n),
            coordinates.begin());
  for (int i = 0; i < n; ++i)
  {
    species[i] = passAtomicNumbers ? atomicNumbers[speciesCodes[i]]
                                   : static_cast<std::int64_t>(speciesCodes[i]);
    contributions[i] = particleContributing[i] ? 0 : 1;  // contract: 0 = contributing
  }
  if (n == 1)
  {
    coordinates[3] = coordinates[4] = coordinates[5] = kDummyPosition;
    species[1] = species[0];
    contributions[1] = 1;
  }
  Clock::time_point const t1 = Clock::now();

  torch::TensorOptions const i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::TensorOptions const f64 = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor coordinatesTensor
      = torch::from_blob(coordinates.data(), {m, 3}, f64)
            .to(device, /*non_blocking=*/false, /*copy=*/true)
            .requires_grad_(true);
  std::vector<torch::jit::IValue> inputs;
  inputs.reserve(numLayers + 3);
  inputs.emplace_back(torch::from_blob(species.data(), {m}, i64).to(device));
  inputs.emplace_back(coordinatesTensor);
  std::vector<std::int64_t> edgeCounts;
  for (int k = 0; k < numLayers; ++k)
  {
    std::int64_t const e = graphs.NumEdges(k);
    edgeCounts.push_back(e);
    inputs.emplace_back(
        torch::from_blob(graphs.edges[k].data(), {2, e}, i64).to(device));
  }
  inputs.emplace_back(torch::from_blob(contributions.data(), {m}, i64).to(device));

  torch::Tensor energies, modelForces;
  double forwardSeconds = 0.0, backwardSeconds = 0.0;
  try
  {
    Clock::time_point const f0 = Clock::now();
    torch::jit::IValue out = module.forward(inputs);
    Clock::time_point const f1 = Clock::now();
    forwardSeconds = std::chrono::duration<double>(f1 - f0).count();
    if (out.isTensor())
      energies = out.toTensor();
    else if (out.isTuple() && !out.toTupleRef().elements().empty()
             && out.toTupleRef().elements()[0].isTensor())
    {
      auto const & elems = out.toTupleRef().elements();
      energies = elems[0].toTensor();
      if (returnsForces)
      {
        if (elems.size() < 2 || !elems[1].isTensor())
          return "the .param file says the model returns forces, but its "
                 "output has no forces tensor (element 1)";
        modelForces = elems[1].toTensor();
      }
    }
    else
      return "the model's output is not a tensor or a tuple of tensors";

    if (energies.scalar_type() != torch::kFloat64)
      return std::string("the model's energy output has dtype ")
             + c10::toString(energies.scalar_type())
             + ", expected float64 (double)";
    if (energies.dim() == 0)
      return "the model's energy output is 0-dimensional; expected "
             "per-particle energies [N]";
    if (particleEnergy
        && !(energies.dim() == 1 && energies.size(0) == m))
      return "per-particle energies requested, but the model's energy output "
             "has shape "
             + c10::str(energies.sizes()) + ", expected [" + std::to_string(m)
             + "]";

    torch::Tensor const total = energies.sum();
    torch::Tensor gradient;
    Clock::time_point const b0 = Clock::now();
    if ((forces || virial) && !returnsForces && total.requires_grad())
    {
      std::vector<torch::Tensor> grads = torch::autograd::grad(
          {total}, {coordinatesTensor}, {}, /*retain_graph=*/false,
          /*create_graph=*/false, /*allow_unused=*/true);
      gradient = grads[0];
    }
    backwardSeconds
        = std::chrono::duration<double>(Clock::now() - b0).count();

    if (energy) *energy = total.item<double>();
    if (particleEnergy)
    {
      torch::Tensor const e = energies.detach().to(torch::kCPU).contiguous();
      double const * const p = e.data_ptr<double>();
      std::copy(p, p + n, particleEnergy);
    }
    if (forces || virial)
    {
      torch::Tensor f;  // forces on all m model particles
      if (returnsForces)
      {
        if (modelForces.scalar_type() != torch::kFloat64
            || modelForces.dim() != 2 || modelForces.size(0) != m
            || modelForces.size(1) != 3)
          return "the model's forces output is not a float64 [N, 3] tensor";
        f = modelForces.detach().to(torch::kCPU).contiguous();
      }
      else if (gradient.defined())
        f = gradient.neg().to(torch::kCPU).contiguous();
      else
        f = torch::zeros({m, 3}, f64);
      double const * const fp = f.data_ptr<double>();
      if (forces) std::copy(fp, fp + 3 * static_cast<std::size_t>(n), forces);
      if (virial)
      {
        // KIM virial (Voigt xx yy zz yz xz xy) = sum_p x_p (x) dE/dx_p =
        // -sum_p x_p (x) F_p over every particle the model saw (the dummy
        // partner has no force).
        double v[6] = {0, 0, 0, 0, 0, 0};
        for (int p = 0; p < m; ++p)
        {
          double const * const x = coordinates.data() + 3 * p;
          double const * const fq = fp + 3 * p;
          v[0] -= x[0] * fq[0];
          v[1] -= x[1] * fq[1];
          v[2] -= x[2] * fq[2];
          v[3] -= 0.5 * (x[1] * fq[2] + x[2] * fq[1]);
          v[4] -= 0.5 * (x[0] * fq[2] + x[2] * fq[0]);
          v[5] -= 0.5 * (x[0] * fq[1] + x[1] * fq[0]);
        }
        std::copy(v, v + 6, virial);
      }
    }
  }
  catch (c10::Error const & exc)
  {
    return "the model failed: " + TorchMessage(exc)
           + OpsHint(exc.what_without_backtrace());
  }
  catch (std::exception const & exc)
  {
    return std::string("the model failed: ") + TorchMessage(exc);
  }

  if (timing.enabled)
  {
    Clock::time_point const t2 = Clock::now();
    std::ostringstream line;
    line.precision(9);
    line << "{\"particles\": " << n << ", \"contributing\": ";
    int contributing = 0;
    for (int i = 0; i < n; ++i) contributing += particleContributing[i] ? 1 : 0;
    line << contributing << ", \"edges\": [";
    for (std::size_t k = 0; k < edgeCounts.size(); ++k)
      line << (k ? ", " : "") << edgeCounts[k];
    line << "], \"graph_s\": " << std::chrono::duration<double>(t1 - t0).count()
         << ", \"forward_s\": " << forwardSeconds
         << ", \"backward_s\": " << backwardSeconds << ", \"total_s\": "
         << std::chrono::duration<double>(t2 - t0).count() << "}";
    if (timing.file.empty())
    {
      std::fprintf(stderr, "kim-gnn-driver-timing %s\n", line.str().c_str());
      std::fflush(stderr);
    }
    else
    {
      std::ofstream out(timing.file.c_str(), std::ios::app);
      out << line.str() << "\n";
    }
  }
  return "";
}
