"""NequIP 0.5.x / 0.6.x adapter (deployed TorchScript models)."""

from .convert import convert_nequip, inspect_nequip

__all__ = ["convert_nequip", "inspect_nequip"]
