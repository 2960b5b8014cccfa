"""``kim_gnn.torchscript_graphs``: TorchScript's whole-dimension slices
(``x[:, a:b]`` -> a slice of dimension 0 over every row, then dimension 1)
are removed from a module's own copy, with the same numbers and gradients."""

import torch

from kim_gnn.torchscript_graphs import (count_whole_dimension_slices, drop_whole_dimension_slices,
                                        private_scripted_copies)


class _Paths(torch.nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return (w[:, 0:2] * w[:, 2:4]).sum() + w[1:, :1].sum()


class _Holder(torch.nn.Module):
    def __init__(self, first, second):
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.first(w) + self.second(w)


def _value_and_grad(module, w):
    w = w.detach().clone().requires_grad_(True)
    out = module(w)
    return out.detach(), torch.autograd.grad(out, w)[0]


def test_slices_are_dropped_from_private_copies_only_with_the_same_numbers():
    w = torch.randn(5, 4, dtype=torch.float64)
    # two instances of one scripted type share its method graphs: a user's and the converter's
    users = torch.jit.script(_Paths()), torch.jit.script(_Paths())
    before = count_whole_dimension_slices(users[0])
    assert before == 2  # the dim-0 slices of w[:, 0:2] and w[:, 2:4]; w[1:, :1] has none
    reference = _value_and_grad(users[0], w)

    holder = private_scripted_copies(_Holder(*users))
    assert holder.first is not users[0] and count_whole_dimension_slices(holder) == 2 * before
    assert drop_whole_dimension_slices(holder) == 2 * before
    assert count_whole_dimension_slices(holder) == 0
    assert count_whole_dimension_slices(users[0]) == before and count_whole_dimension_slices(users[1]) == before
    value, grad = _value_and_grad(holder.first, w)
    assert torch.equal(value, reference[0]) and torch.equal(grad, reference[1])

    scripted = private_scripted_copies(users[0])  # a scripted module: its copy
    assert drop_whole_dimension_slices(scripted) == before and count_whole_dimension_slices(users[0]) == before
    assert "9223372036854775807" not in torch.jit.script(_Holder(scripted, scripted)).first.code
