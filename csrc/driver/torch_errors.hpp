// Torch's error texts turned into one-line KIM error messages (no torch
// needed: the texts are plain strings; model_runner.cpp hands them over).
#ifndef KIM_GNN_TORCH_ERRORS_HPP
#define KIM_GNN_TORCH_ERRORS_HPP

#include <string>

#include "text.hpp"

namespace kim_gnn
{
// A message thrown inside TorchScript by `raise ValueError(...)` arrives as
// "The following operation failed in the TorchScript interpreter. ...
// RuntimeError: ValueError: <message>"; pick the message out.
inline std::string TorchMessageText(std::string const & what)
{
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

// What to do when a model's custom ops are not loaded ("" otherwise).
inline std::string OpsHint(std::string const & message)
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
}  // namespace kim_gnn

#endif  // KIM_GNN_TORCH_ERRORS_HPP
