// Small string helpers shared by the driver's parts (no KIM API, no torch).
#ifndef KIM_GNN_TEXT_HPP
#define KIM_GNN_TEXT_HPP

#include <cstddef>
#include <sstream>
#include <string>

namespace kim_gnn
{
inline std::string Trim(std::string const & s)
{
  std::size_t const b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  std::size_t const e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// The first non-blank lines of a (possibly very long) message, joined by " | ".
inline std::string FirstLines(std::string const & s, std::size_t maxLines = 3)
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
}  // namespace kim_gnn

#endif  // KIM_GNN_TEXT_HPP
