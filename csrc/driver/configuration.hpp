// The driver's configuration: the .param file, the parameter-file list the
// KIM API hands over, and the environment variables (execution device,
// timing, op library). No KIM API and no torch: unit-tested on its own
// (tests/csrc/test_driver_parts.py).
#ifndef KIM_GNN_CONFIGURATION_HPP
#define KIM_GNN_CONFIGURATION_HPP

#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "contract_facts.hpp"
#include "text.hpp"

namespace kim_gnn
{
// What file.param says.
struct Parameters
{
  std::vector<std::string> elements;
  double cutoff = 0.0;
  int numLayers = 0;
  std::string modelFileName;
  bool returnsForces = false;
  int numInputs = 0;
};

inline std::string ReadFile(std::string const & path, bool * ok)
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

// The values of file.param: the lines that are neither blank nor comments
// (#), in their fixed order (as contract.parse_param_file reads them).
inline std::vector<std::string> ParamValues(std::string const & text)
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
  return values;
}

// The elements line (values[1]) against the count (values[0]).
inline std::string ParseElements(std::vector<std::string> const & values,
                                 Parameters * p)
{
  std::size_t used = 0;
  int const n = std::stoi(values[0], &used);
  if (used != values[0].size() || n < 1)
    return "malformed .param file: number of elements '" + values[0]
           + "' is not a positive integer";
  std::istringstream names(values[1]);
  std::string name;
  while (names >> name) p->elements.push_back(name);
  if (static_cast<int>(p->elements.size()) != n)
    return ".param file lists " + std::to_string(p->elements.size())
           + " elements but says " + std::to_string(n);
  return "";
}

// The numbers and flags after the elements (values[2] .. values[7]).
inline std::string ParseGraphValues(std::vector<std::string> const & values,
                                    Parameters * p)
{
  std::size_t used = 0;
  if (values[2] != kPreprocessing)
    return ".param file preprocessing is '" + values[2]
           + "'; this driver runs graph models only ('Graph')";
  p->cutoff = std::stod(values[3], &used);
  if (used != values[3].size() || !(p->cutoff > 0.0) || !std::isfinite(p->cutoff))
    return ".param file cutoff '" + values[3] + "' is not a positive number";
  p->numLayers = std::stoi(values[4], &used);
  if (used != values[4].size() || p->numLayers < 1)
    return ".param file number of layers '" + values[4]
           + "' is not a positive integer";
  p->modelFileName = values[5];
  if (values[6] != "True" && values[6] != "False")
    return ".param file 'returns forces' is '" + values[6]
           + "', expected True or False";
  p->returnsForces = values[6] == "True";
  int const expected = p->numLayers + kInputsBesidesEdgeLists;
  p->numInputs = std::stoi(values[7], &used);
  if (used != values[7].size() || p->numInputs != expected)
    return ".param file says " + values[7] + " model inputs; a graph model of "
           + std::to_string(p->numLayers) + " layers takes "
           + std::to_string(expected)
           + " (species, coordinates, the layers' edge lists, "
             "contributions)";
  return "";
}

// Parse file.param; returns an empty string on success, else the error.
inline std::string ParseParamFile(std::string const & text, Parameters * p)
{
  std::vector<std::string> const values = ParamValues(text);
  if (values.size() < static_cast<std::size_t>(kParamFileValues))
    return "malformed .param file: expected at least 8 values (number of "
           "elements, elements, preprocessing, cutoff, layers, model file, "
           "returns forces, number of inputs), found "
           + std::to_string(values.size());
  try
  {
    std::string error = ParseElements(values, p);
    if (error.empty()) error = ParseGraphValues(values, p);
    return error;
  }
  catch (std::exception const &)
  {
    return "malformed .param file: a number could not be read";
  }
}

// Of the model's parameter files: the one .param file (*paramName), and a
// check that the model file it names is among them.
inline std::string FindParamFile(std::vector<std::string> const & basenames,
                                 std::string * paramName)
{
  paramName->clear();
  for (std::string const & b : basenames)
  {
    if (b.size() > 6 && b.compare(b.size() - 6, 6, ".param") == 0)
    {
      if (!paramName->empty()) return "the model has more than one .param file";
      *paramName = b;
    }
  }
  if (paramName->empty()) return "the model has no .param file";
  return "";
}

inline std::string CheckModelFileListed(std::vector<std::string> const & basenames,
                                        std::string const & modelFileName)
{
  for (std::string const & b : basenames)
    if (b == modelFileName) return "";
  return "the .param file names the model file '" + modelFileName
         + "', which is not one of the model's parameter files";
}

// KIM_MODEL_EXECUTION_DEVICE, classified: the CUDA checks need torch and
// come later (model_runner.cpp).
enum class DeviceKind
{
  kCpu,
  kCuda,
  kUnsupported
};

inline DeviceKind ClassifyDevice(std::string const & name)
{
  if (name.empty() || name == "cpu") return DeviceKind::kCpu;
  if (name.compare(0, 4, "cuda") == 0) return DeviceKind::kCuda;
  return DeviceKind::kUnsupported;
}

inline std::string EnvironmentValue(char const * name)
{
  char const * const value = std::getenv(name);
  return value ? Trim(value) : "";
}

// KIM_GNN_DRIVER_TIMING: unset, empty or 0: off; 1: stderr; else a file.
struct Timing
{
  bool enabled = false;
  std::string file;  // empty: stderr
};

inline Timing TimingFromEnvironment()
{
  Timing timing;
  char const * const env = std::getenv("KIM_GNN_DRIVER_TIMING");
  if (env == nullptr) return timing;
  std::string const t = Trim(env);
  if (!(t.empty() || t == "0"))
  {
    timing.enabled = true;
    if (t != "1") timing.file = t;
  }
  return timing;
}

// Load the kim-gnn op library (torch custom ops kim_gnn::*) into the process
// before the model is loaded, so that models converted with the project's
// kernels find their ops. KIM_GNN_OPS_LIBRARY (a path; empty: none) wins
// over builtIn, the path baked in at build time. Returns the error (a
// library named by the environment that cannot be loaded); *loaded: the
// path loaded; *warning: the built-in library exists but cannot be loaded.
inline std::string LoadOpsLibrary(std::string const & builtIn,
                                  std::string * loaded,
                                  std::string * warning)
{
  char const * const env = std::getenv("KIM_GNN_OPS_LIBRARY");
  bool const fromEnv = env != nullptr;
  std::string const path = fromEnv ? Trim(env) : builtIn;
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
}  // namespace kim_gnn

#endif  // KIM_GNN_CONFIGURATION_HPP
