// Creation of kim-gnn's driver, step by step, and Refresh.

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "KIM_LogMacros.hpp"
#include "contract_facts.hpp"
#include "elements.hpp"
#include "kim_gnn_driver.hpp"

#ifndef KIM_GNN_DEFAULT_OPS_LIBRARY
#define KIM_GNN_DEFAULT_OPS_LIBRARY ""
#endif

namespace kim_gnn
{
namespace
{
#undef KIM_LOGGER_OBJECT_NAME
#define KIM_LOGGER_OBJECT_NAME modelDriverCreate

// The .param file and the model it names (*modelPath).
std::string ReadParameters(KIM::ModelDriverCreate * const modelDriverCreate,
                           KimGnnDriver * const d,
                           std::string * const modelPath)
{
  int numberOfFiles = 0;
  modelDriverCreate->GetNumberOfParameterFiles(&numberOfFiles);
  std::string const * directory = nullptr;
  modelDriverCreate->GetParameterFileDirectoryName(&directory);
  std::vector<std::string> basenames;
  for (int i = 0; i < numberOfFiles; ++i)
  {
    std::string const * basename = nullptr;
    if (modelDriverCreate->GetParameterFileBasename(i, &basename))
      return "cannot get the parameter file names";
    basenames.push_back(*basename);
  }
  std::string paramName;
  std::string error = FindParamFile(basenames, &paramName);
  if (!error.empty()) return error;
  std::string const paramPath = *directory + "/" + paramName;
  bool ok = false;
  std::string const paramText = ReadFile(paramPath, &ok);
  if (!ok) return "cannot read " + paramPath;
  error = ParseParamFile(paramText, &d->params);
  if (error.empty())
    error = CheckModelFileListed(basenames, d->params.modelFileName);
  *modelPath = *directory + "/" + d->params.modelFileName;
  return error;
}

// Units (the contract's models work in Angstrom and eV only), numbering and
// species codes (the .param file's element order).
std::string RegisterUnitsAndSpecies(
    KIM::ModelDriverCreate * const modelDriverCreate, KimGnnDriver * const d)
{
  if (modelDriverCreate->SetUnits(KIM::LengthUnit(kLengthUnit),
                                  KIM::EnergyUnit(kEnergyUnit),
                                  KIM::CHARGE_UNIT::unused,
                                  KIM::TEMPERATURE_UNIT::unused,
                                  KIM::TIME_UNIT::unused)
      || modelDriverCreate->SetModelNumbering(KIM::NUMBERING::zeroBased))
    return "cannot set units or numbering";
  std::vector<std::string> const & elements = d->params.elements;
  for (std::size_t s = 0; s < elements.size(); ++s)
  {
    KIM::SpeciesName const name(elements[s]);
    if (!name.Known())
      return "unknown element '" + elements[s] + "' in the .param file";
    if (modelDriverCreate->SetSpeciesCode(name, static_cast<int>(s)))
      return "cannot register species " + elements[s];
    d->atomicNumbers.push_back(AtomicNumber(elements[s]));
  }
  return "";
}

// Device, op library, then the model (load, eval, freeze, fusion strategy).
std::string LoadModel(KIM::ModelDriverCreate * const modelDriverCreate,
                      KimGnnDriver * const d,
                      std::string const & modelPath)
{
  std::string const deviceName = EnvironmentValue("KIM_MODEL_EXECUTION_DEVICE");
  DeviceKind const kind = ClassifyDevice(deviceName);
  if (kind == DeviceKind::kUnsupported)
    return "KIM_MODEL_EXECUTION_DEVICE=" + deviceName
           + " is not supported (cpu or cuda)";
  std::string error;
  if (kind == DeviceKind::kCuda) error = d->runner.SelectCudaDevice(deviceName);
  if (!error.empty()) return error;
  std::string opsWarning;
  error = LoadOpsLibrary(
      KIM_GNN_DEFAULT_OPS_LIBRARY, &d->loadedOpsLibrary, &opsWarning);
  if (!error.empty()) return error;
  if (!opsWarning.empty())
    LOG_WARNING(std::string(kDriverLabel) + ": " + opsWarning);
  error = d->runner.Load(modelPath);
  if (!error.empty()) return error;
  d->particleVirialSupported
      = d->runner.HasEdgeVectors() && !d->params.returnsForces;
  if (!d->particleVirialSupported)
    LOG_INFORMATION(std::string(kDriverLabel) + ": partialParticleVirial is "
                    "not supported by this model ("
                    + (d->params.returnsForces
                           ? std::string("its .param file says it returns "
                                         "forces")
                           : std::string("it has no ") + kEdgeVectorsMethod
                                 + " method: not a kim-gnn model, or "
                                   "converted by an older kim-gnn")
                    + ")");
  return "";
}

// KIM_MODEL_ELEMENTS_MAP: the TorchML driver then passes atomic numbers.
// kim-gnn models take species indices (their entry refuses anything else),
// and this driver knows the element list, so it keeps passing indices to
// them; other models get atomic numbers as with TorchML.
std::string ApplyElementsMap(KIM::ModelDriverCreate * const modelDriverCreate,
                             KimGnnDriver * const d)
{
  if (std::getenv("KIM_MODEL_ELEMENTS_MAP") == nullptr) return "";
  if (d->runner.IsKimGnnModel())
  {
    LOG_INFORMATION(std::string(kDriverLabel)
                    + ": KIM_MODEL_ELEMENTS_MAP is set, but this is a "
                      "kim-gnn model, which takes species indices: "
                      "passing indices");
    return "";
  }
  d->passAtomicNumbers = true;
  for (std::size_t s = 0; s < d->params.elements.size(); ++s)
    if (d->atomicNumbers[s] == 0)
      return "KIM_MODEL_ELEMENTS_MAP is set but '" + d->params.elements[s]
             + "' has no atomic number";
  return "";
}

// Neighbor list and influence distance, and the two numbers they come from
// published as parameters with a Refresh routine: simulators call
// ClearThenRefresh() (ASE's KIM calculator before every compute), and the
// KIM API logs an error for a model without parameters and Refresh (and
// refuses a Refresh routine from a model without parameters). Both are fixed
// by the trained model: Refresh restores and refuses a change.
std::string PublishNeighborsAndParameters(
    KIM::ModelDriverCreate * const modelDriverCreate, KimGnnDriver * const d)
{
  d->PublishNeighbors(modelDriverCreate);
  d->parameterCutoff = d->params.cutoff;
  d->parameterNumLayers = d->params.numLayers;
  if (modelDriverCreate->SetParameterPointer(
          1,
          &d->parameterCutoff,
          "cutoff",
          "graph cutoff rc in Angstrom (from file.param; fixed by the "
          "trained model: a changed value is refused)")
      || modelDriverCreate->SetParameterPointer(
          1,
          &d->parameterNumLayers,
          "num_layers",
          "message-passing layers L; influence distance = L * cutoff "
          "(fixed by the trained model: a changed value is refused)"))
    return "cannot publish the model parameters";
  return "";
}

template<class Routine>
int SetRoutine(KIM::ModelDriverCreate * const modelDriverCreate,
               KIM::ModelRoutineName const name,
               bool const required,
               Routine * const routine)
{
  return modelDriverCreate->SetRoutinePointer(
      name,
      KIM::LANGUAGE_NAME::cpp,
      required,
      reinterpret_cast<KIM::Function *>(routine));
}

std::string RegisterRoutines(KIM::ModelDriverCreate * const modelDriverCreate)
{
  namespace R = KIM::MODEL_ROUTINE_NAME;
  KIM::ModelDestroyFunction * destroy = KimGnnDriver::Destroy;
  KIM::ModelRefreshFunction * refresh = KimGnnDriver::Refresh;
  KIM::ModelComputeFunction * compute = KimGnnDriver::Compute;
  KIM::ModelComputeArgumentsCreateFunction * argumentsCreate
      = KimGnnDriver::ComputeArgumentsCreate;
  KIM::ModelComputeArgumentsDestroyFunction * argumentsDestroy
      = KimGnnDriver::ComputeArgumentsDestroy;
  if (SetRoutine(modelDriverCreate, R::Destroy, true, destroy)
      || SetRoutine(modelDriverCreate, R::Refresh, false, refresh)
      || SetRoutine(modelDriverCreate, R::Compute, true, compute)
      || SetRoutine(modelDriverCreate, R::ComputeArgumentsCreate, true,
                    argumentsCreate)
      || SetRoutine(modelDriverCreate, R::ComputeArgumentsDestroy, true,
                    argumentsDestroy))
    return "cannot register the model routines";
  return "";
}

std::string CreateSteps(KIM::ModelDriverCreate * const modelDriverCreate,
                        KimGnnDriver * const d)
{
  std::string modelPath;
  std::string error = ReadParameters(modelDriverCreate, d, &modelPath);
  if (error.empty()) error = RegisterUnitsAndSpecies(modelDriverCreate, d);
  if (error.empty()) error = LoadModel(modelDriverCreate, d, modelPath);
  if (error.empty()) error = ApplyElementsMap(modelDriverCreate, d);
  if (!error.empty()) return error;
  // Timing (for benchmarks): KIM_GNN_DRIVER_TIMING=1 -> stderr, or a file.
  d->timing = TimingFromEnvironment();
  error = PublishNeighborsAndParameters(modelDriverCreate, d);
  if (error.empty()) error = RegisterRoutines(modelDriverCreate);
  return error;
}
}  // namespace

int KimGnnDriver::Create(KIM::ModelDriverCreate * const modelDriverCreate)
{
  KimGnnDriver * driver = nullptr;
  std::string error;
  try
  {
    driver = new KimGnnDriver();
    error = CreateSteps(modelDriverCreate, driver);
  }
  catch (std::exception const & exc)
  {
    error = std::string("unexpected error: ") + FirstLines(exc.what());
  }
  catch (...)
  {
    error = "unexpected error";
  }
  if (!error.empty())
  {
    LOG_ERROR(std::string(kDriverLabel) + ": " + error);
    std::fprintf(stderr, "%s: error: %s\n", kDriverLabel, error.c_str());
    std::fflush(stderr);
    delete driver;
    return true;
  }
  modelDriverCreate->SetModelBufferPointer(static_cast<void *>(driver));
  if (!driver->loadedOpsLibrary.empty())
    LOG_INFORMATION(std::string(kDriverLabel) + ": loaded op library "
                    + driver->loadedOpsLibrary);
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
  Parameters const & p = driver->params;
  bool const changed = driver->parameterCutoff != p.cutoff
                       || driver->parameterNumLayers != p.numLayers;
  driver->parameterCutoff = p.cutoff;
  driver->parameterNumLayers = p.numLayers;
  // Always hand the pointers back: ClearThenRefresh() cleared them, and a
  // simulator may ask for the influence distance after a failed refresh.
  driver->PublishNeighbors(modelRefresh);
  if (!changed) return false;
  std::ostringstream message;
  message << kDriverLabel << ": the cutoff (" << p.cutoff
          << " A) and num_layers (" << p.numLayers
          << ") are fixed by the trained model; the changed value was "
             "refused and restored";
  LOG_ERROR(message.str());
  std::fprintf(stderr, "%s\n", message.str().c_str());
  std::fflush(stderr);
  return true;
}
}  // namespace kim_gnn
