// Chemical symbols by atomic number, for KIM_MODEL_ELEMENTS_MAP.
#ifndef KIM_GNN_ELEMENTS_HPP
#define KIM_GNN_ELEMENTS_HPP

#include <string>

namespace kim_gnn
{
// Atomic number of a chemical symbol; 0 if unknown.
inline int AtomicNumber(std::string const & symbol)
{
  static char const * const symbols[] = {
      "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg",
      "Al", "Si", "P",  "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr",
      "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr",
      "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd",
      "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd",
      "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf",
      "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po",
      "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm",
      "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs",
      "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
  int const count = static_cast<int>(sizeof(symbols) / sizeof(symbols[0]));
  for (int z = 0; z < count; ++z)
    if (symbol == symbols[z]) return z + 1;
  return 0;
}
}  // namespace kim_gnn

#endif  // KIM_GNN_ELEMENTS_HPP
