"""Citations of a ``--metadata`` file (``kim_gnn/kimspec.py``) as OpenKIM's
``source-citations`` maps: a DOI, BibTeX text (one or more entries, parsed
here without a BibTeX library) or a map of fields already."""

from __future__ import annotations

import re
from typing import Any, Dict, List

from .errors import KimGnnError

_DOI = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:)?(10\.\d{4,9}/\S+)$", re.I)


def parse_bibtex(text: str) -> List[Dict[str, str]]:
    """BibTeX entries as OpenKIM citation maps: ``recordtype`` (the entry
    type), ``recordkey`` (its key) and each field, named in lower case, its
    value without the outer braces or quotes. A malformed entry is refused."""
    entries = []
    pos = 0
    while True:
        at = text.find("@", pos)
        if at < 0:
            break
        head = re.match(r"@\s*([A-Za-z]+)\s*([{(])", text[at:])
        if not head:
            raise KimGnnError(f"malformed BibTeX near {text[at:at + 40]!r}")
        kind = head.group(1).lower()
        close = "}" if head.group(2) == "{" else ")"
        i = at + head.end()
        depth = 1
        start = i
        while i < len(text) and depth:
            c = text[i]
            if c in "{(" and (c == "{" or close == ")"):
                depth += 1
            elif c in "})" and (c == "}" or close == ")"):
                depth -= 1
            i += 1
        if depth:
            raise KimGnnError(f"malformed BibTeX: the @{kind} entry is not closed")
        body = text[start:i - 1]
        pos = i
        if kind in ("comment", "preamble", "string"):
            continue
        key, _, fields = body.partition(",")
        entry = {"recordtype": kind, "recordkey": key.strip()}
        if not entry["recordkey"]:
            raise KimGnnError(f"malformed BibTeX: an @{kind} entry has no key")
        entry.update(_bibtex_fields(fields, entry["recordkey"]))
        entries.append(entry)
    if not entries:
        raise KimGnnError("a citation is neither a DOI nor a BibTeX entry (@article{key, ...})")
    return entries


def _bibtex_fields(text: str, key: str) -> Dict[str, str]:
    fields: Dict[str, str] = {}
    i = 0
    while i < len(text):
        m = re.match(r"\s*,?\s*([A-Za-z][\w-]*)\s*=\s*", text[i:])
        if not m:
            if text[i:].strip(" \t\r\n,"):
                raise KimGnnError(f"malformed BibTeX field in entry {key!r} near {text[i:i + 40].strip()!r}")
            break
        name = m.group(1).lower()
        i += m.end()
        if i < len(text) and text[i] == "{":
            depth, j = 1, i + 1
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise KimGnnError(f"malformed BibTeX: unbalanced braces in field {name!r} of {key!r}")
            value = text[i + 1:j - 1]
        elif i < len(text) and text[i] == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise KimGnnError(f"malformed BibTeX: unclosed quote in field {name!r} of {key!r}")
            value, j = text[i + 1:j], j + 1
        else:
            m2 = re.match(r"[^,]*", text[i:])
            value, j = m2.group(0), i + m2.end()
        fields[name] = " ".join(value.split())
        i = j
    return fields


def citation(value: Any) -> List[Dict[str, str]]:
    """One ``citations`` item of a metadata file: a DOI (``10.x/y``,
    ``doi:``, a doi.org address) or BibTeX text (one or more entries), or
    already a map of fields."""
    if isinstance(value, dict):
        if not value:
            raise KimGnnError("a citation is an empty map")
        return [{str(k).lower(): str(v) for k, v in value.items()}]
    if not isinstance(value, str) or not value.strip():
        raise KimGnnError(f"a citation must be a DOI or BibTeX text, got {value!r}")
    doi = _DOI.match(value.strip())
    if doi:
        return [{"doi": doi.group(1)}]
    return parse_bibtex(value)
