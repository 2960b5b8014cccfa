"""MACE adapter: MACE / ScaleShiftMACE models (mace-torch 0.3.x) as staged KIM models."""

from .convert import convert_mace, inspect_mace, load_mace_model

__all__ = ["convert_mace", "inspect_mace", "load_mace_model"]
