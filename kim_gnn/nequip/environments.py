"""The environment each NequIP adapter converts (and verifies) its models
in, one clause each: the ``environment_hint`` of the ``nequip`` (0.5/0.6)
and ``nequip-modern`` (>= 0.7) adapters, and what their error messages tell
a user who is in the other environment. Held here, at the family's top, so
that neither adapter imports the other's (adapters outside the family ask
``kim_gnn.adapters.environment_hint``). Standard library only."""

#: NequIP 0.5/0.6 (e3nn 0.4.4): the legacy environment.
LEGACY_ENV_HINT = (
    "convert it in the legacy environment: `bash scripts/setup.sh`, then `.venv/bin/kim-gnn ...` "
    "(e3nn 0.4.4, nequip 0.6, mace-torch)"
)

#: nequip >= 0.7 and Allegro (e3nn 0.6): the modern environment.
MODERN_ENV_HINT = (
    "convert it in the modern environment: `bash scripts/setup_modern.sh`, then "
    "`.venv-modern/bin/kim-gnn ...` (torch 2.13, e3nn 0.6, nequip 0.19, nequip-allegro)"
)
