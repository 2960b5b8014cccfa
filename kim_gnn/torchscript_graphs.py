"""Rewrites of TorchScript method graphs that every family's converter can
use (no e3nn or architecture import).

``drop_whole_dimension_slices``: e3nn's generated tensor products (and
linears) take each path's weights as ``w[:, a:b]``. Python's indexing skips
the whole-dimension ``:``; TorchScript emits it as an ``aten::slice`` of its
own over every row, whose backward builds a zeroed copy of the whole weight
tensor ([edges, weight_numel]) and copies the gradient into it, once per
path: the original (eager) model does not. The slice is a view of the whole
tensor, so using the tensor in its place gives the same values and
gradients.

The graphs are changed in place, and a scripted module's method graph is
shared by every instance of its type (in its compilation unit), so the
converters change only modules of their own: ``private_scripted_copies``
gives each scripted part of a module tree a compilation unit of its own
(saved and loaded back), which nothing outside the converter references.
"""

from __future__ import annotations

import io
import zipfile

import torch

#: aten::slice's end when TorchScript slices ``x[:, ...]`` (the whole dimension)
SLICE_TO_END = 9223372036854775807


def _is_whole_dimension_slice(node) -> bool:
    inputs = list(node.inputs())
    if len(inputs) != 5 or not isinstance(inputs[0].type(), torch._C.TensorType):
        return False
    if any(v.node().kind() != "prim::Constant" for v in inputs[1:]):
        return False
    start, end, step = (v.toIValue() for v in inputs[2:])
    return start in (None, 0) and end in (None, SLICE_TO_END) and step == 1


def _method_graphs(model: torch.nn.Module):
    """The graph of every method of every scripted module in ``model`` (the
    module itself included); a type's graph comes once per instance."""
    for module in model.modules():
        if isinstance(module, torch.jit.ScriptModule):
            for name in module._c._method_names():
                yield module._c._get_method(name).graph


def count_whole_dimension_slices(model: torch.nn.Module) -> int:
    """How many whole-dimension tensor slices the methods of the scripted
    modules in ``model`` hold (a shared type's counted once per instance)."""
    return sum(1 for graph in _method_graphs(model) for node in graph.findAllNodes("aten::slice")
               if _is_whole_dimension_slice(node))


def count_saved_code_slices(path: str) -> int:
    """How many whole-dimension slices (``, 0, SLICE_TO_END)``) the Python
    code of a saved TorchScript archive holds: the check, on the file a
    user gets, that a conversion dropped them."""
    with zipfile.ZipFile(path) as archive:
        return sum(archive.read(name).decode().count(f", 0, {SLICE_TO_END})")
                   for name in archive.namelist() if name.endswith(".py"))


def drop_whole_dimension_slices(model: torch.nn.Module) -> int:
    """Remove ``aten::slice(x, dim, 0|None, <end>|None, 1)`` of a tensor over
    its whole dimension from the method graphs of the scripted modules in
    ``model`` (e3nn 0.4.4's ``__codegen__`` submodules of an eager model, or
    any scripted module: a loaded TorchScript file, e3nn's compiled parts);
    returns how many were removed (a graph shared by several instances is
    rewritten once, counted once). Functions the methods call
    (``prim::CallFunction``) are left as they are: they may belong to every
    script of the process.

    ``model`` must be a copy of the converter's own (see
    ``private_scripted_copies``): the graphs are changed in place. Rewrite a
    scripted module before its first call: a method that already ran keeps
    the optimised graph it compiled in this process (a saved and loaded
    model uses the rewritten code)."""
    removed = 0
    for graph in _method_graphs(model):
        for node in list(graph.findAllNodes("aten::slice")):
            if _is_whole_dimension_slice(node):
                node.output().replaceAllUsesWith(next(iter(node.inputs())))
                node.destroy()
                removed += 1
    return removed


def _reloaded(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    buffer = io.BytesIO()
    torch.jit.save(module, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer, map_location="cpu")


def private_scripted_copies(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with each outermost scripted module in it replaced by a copy
    in a compilation unit of its own (saved and loaded back: same code, same
    weights, types and method graphs no other module shares, never run);
    ``model`` itself when it is a scripted module. Eager modules are changed
    in place (their children replaced); a scripted module reached twice is
    copied once."""
    if isinstance(model, torch.jit.ScriptModule):
        return _reloaded(model)
    copies = {}

    def visit(module: torch.nn.Module) -> None:
        for name, child in list(module._modules.items()):
            if child is None:
                continue
            if isinstance(child, torch.jit.ScriptModule):
                if id(child) not in copies:
                    copies[id(child)] = (child, _reloaded(child))
                module._modules[name] = copies[id(child)][1]
            else:
                visit(child)

    visit(model)
    return model


def without_whole_dimension_slices(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with private copies of its scripted parts
    (``private_scripted_copies``), whose whole-dimension slices are dropped
    (``drop_whole_dimension_slices``): what a converter saves."""
    model = private_scripted_copies(model)
    drop_whole_dimension_slices(model)
    return model
