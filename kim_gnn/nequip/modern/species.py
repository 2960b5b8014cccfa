"""Which of a nequip >= 0.7 model's types each KIM species (element) uses:
the map given (``--type-map``), else the training data's, else the type
names themselves when they are chemical symbols, else the elements of the
model's ZBL term."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ...errors import KimGnnError, UnsupportedModelError
from .network import class_name


def parse_type_map(type_map) -> Optional[Dict[str, str]]:
    """``{"C": "C_sp3", ...}`` or ``"C=C_sp3,H=H"`` -> dict (element -> type name)."""
    if type_map is None or type_map == "":
        return None
    if isinstance(type_map, dict):
        return {str(k): str(v) for k, v in type_map.items()}
    pairs = {}
    for item in str(type_map).replace(" ", ",").split(","):
        if not item:
            continue
        if "=" not in item:
            raise KimGnnError(f"--type-map entry {item!r} is not ELEMENT=TYPE (e.g. C=C_sp3,H=H)")
        k, v = item.split("=", 1)
        pairs[k.strip()] = v.strip()
    return pairs


def _zbl_elements(func, type_names: List[str]) -> Optional[List[str]]:
    """The element of each type as the model's own ZBL term knows it."""
    from ase.data import chemical_symbols

    for _, module in func.named_children():
        if class_name(module) == "ZBL":
            z = [int(round(float(x))) for x in module.atomic_numbers.reshape(-1).tolist()]
            if len(z) == len(type_names) and all(0 < k < len(chemical_symbols) for k in z):
                return [chemical_symbols[k] for k in z]
    return None


def choose_type_map(type_names: List[str], given, trained: Dict[str, str], zbl: Optional[List[str]]) -> Tuple[Dict[str, str], str]:
    """element -> type name, and where it came from."""
    from ase.data import chemical_symbols

    valid = set(chemical_symbols[1:])
    # a training config may hold unresolved interpolations or other types: keep what applies
    trained = {e: t for e, t in (trained or {}).items() if e in valid and t in type_names}
    given_map = parse_type_map(given)
    if given_map:
        mapping, source = given_map, "given"
    elif trained:
        mapping, source = dict(trained), "training config"
    elif all(t in valid for t in type_names):
        mapping, source = {t: t for t in type_names}, "type names"
    elif zbl is not None:
        by_element: Dict[str, List[str]] = {}
        for t, e in zip(type_names, zbl):
            by_element.setdefault(e, []).append(t)
        ambiguous = {e: ts for e, ts in by_element.items() if len(ts) > 1}
        if ambiguous:
            choices = "; ".join(f"{e}: {' or '.join(ts)}" for e, ts in ambiguous.items())
            raise UnsupportedModelError(
                f"several of the model's types stand for one element ({choices}); KIM species are elements, "
                "so say which type each element uses with --type-map (e.g. "
                + ",".join(f"{e}={ts[0]}" for e, ts in by_element.items()) + ")"
            )
        mapping, source = {e: ts[0] for e, ts in by_element.items()}, "ZBL chemical species"
    else:
        raise UnsupportedModelError(
            f"the model's type names ({' '.join(type_names)}) are not chemical symbols and the model says nothing "
            "about their elements; give the element of each type with --type-map ELEMENT=TYPE,... "
            "(Python: type_map={'C': 'C_sp3', ...})"
        )
    for element, type_name in mapping.items():
        if element not in valid:
            raise KimGnnError(f"type map: {element!r} is not a chemical symbol")
        if type_name not in type_names:
            raise KimGnnError(f"type map: {element}={type_name}, but the model's types are {' '.join(type_names)}")
    return mapping, source


def _species_order(mapping: Dict[str, str], type_names: List[str]) -> List[str]:
    """KIM species in the order of the model's types they map to."""
    return sorted(mapping, key=lambda e: (type_names.index(mapping[e]), e))


def format_type_map(mapping: Dict[str, str]) -> str:
    return ",".join(f"{e}={t}" for e, t in mapping.items())
