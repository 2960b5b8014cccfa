"""How a staged layer gathers sender features and sums messages into receivers.

Two interchangeable TorchScript modules with the same methods, chosen at
conversion time (``kernels="aten"`` or ``"kim_gnn"``):

* ``AtenAggregation``: ``x[senders]`` and ``scatter_add_`` (aten only: the
  default, portable to the stock driver);
* ``KernelAggregation``: the kim_gnn op library (``csrc/``,
  ``kim_gnn/kernels.py``): ``kim_gnn::gather`` and ``kim_gnn::segment_sum``,
  whose sums run in a fixed order (bit-identical across calls, threads and
  on the GPU). It needs the edges sorted by receiver (``needs_sorted_edges``:
  ``StagedRuntime`` sorts them); ``plan`` computes, from the edges alone, the
  receivers' CSR row pointer and the senders' sorting permutation and row
  pointer (for the deterministic backward of the gather).

``StagedRuntime.plan`` calls ``plan`` once per graph (the plan's ``routes``);
a layer then calls ``gather`` and ``scatter`` (or ``scatter_blocks``, for
values computed per block of consecutive edges) with that route. A model holds
only the class it was converted with, so an aten model never names a kim_gnn
op.
"""

from typing import List

import torch


class AtenAggregation(torch.nn.Module):
    needs_sorted_edges: bool

    def __init__(self):
        super().__init__()
        self.needs_sorted_edges = False

    def plan(self, senders: torch.Tensor, receivers: torch.Tensor, num_in: int, num_out: int) -> List[torch.Tensor]:
        return []

    def gather(self, x: torch.Tensor, senders: torch.Tensor, plan: List[torch.Tensor]) -> torch.Tensor:
        return x[senders]

    def scatter(self, values: torch.Tensor, receivers: torch.Tensor, num_out: int,
                plan: List[torch.Tensor]) -> torch.Tensor:
        shape = [num_out] + list(values.shape[1:])
        index = receivers.view([-1] + [1] * (values.dim() - 1)).expand_as(values)
        return torch.zeros(shape, dtype=values.dtype, device=values.device).scatter_add_(0, index, values)

    def scatter_blocks(self, blocks: List[torch.Tensor], receivers: torch.Tensor, num_out: int,
                       plan: List[torch.Tensor]) -> torch.Tensor:
        """``scatter(torch.cat(blocks), ...)`` (``blocks``: consecutive edges)
        without forming the concatenation: block by block into one sum, in
        the same order of edges."""
        if len(blocks) == 1:
            return self.scatter(blocks[0], receivers, num_out, plan)
        first = blocks[0]
        out = torch.zeros([num_out] + list(first.shape[1:]), dtype=first.dtype, device=first.device)
        start = 0
        for block in blocks:
            size = block.shape[0]
            index = receivers.narrow(0, start, size).view([-1] + [1] * (block.dim() - 1)).expand_as(block)
            out = out.scatter_add_(0, index, block)
            start += size
        return out


class KernelAggregation(torch.nn.Module):
    needs_sorted_edges: bool

    def __init__(self):
        super().__init__()
        self.needs_sorted_edges = True

    def plan(self, senders: torch.Tensor, receivers: torch.Tensor, num_in: int, num_out: int) -> List[torch.Tensor]:
        """[receiver row pointer (num_out + 1), sender sorting permutation (E),
        sender row pointer (num_in + 1)]; receivers must be sorted."""
        receivers = receivers.contiguous()
        ptr_out = torch.searchsorted(
            receivers, torch.arange(num_out + 1, dtype=receivers.dtype, device=receivers.device)
        )
        perm = torch.argsort(senders, stable=True)
        ptr_in = torch.searchsorted(
            senders.index_select(0, perm).contiguous(),
            torch.arange(num_in + 1, dtype=senders.dtype, device=senders.device),
        )
        return [ptr_out, perm, ptr_in]

    def gather(self, x: torch.Tensor, senders: torch.Tensor, plan: List[torch.Tensor]) -> torch.Tensor:
        return torch.ops.kim_gnn.gather(x, senders, plan[1], plan[2])

    def scatter(self, values: torch.Tensor, receivers: torch.Tensor, num_out: int,
                plan: List[torch.Tensor]) -> torch.Tensor:
        return torch.ops.kim_gnn.segment_sum(values, plan[0])

    def scatter_blocks(self, blocks: List[torch.Tensor], receivers: torch.Tensor, num_out: int,
                       plan: List[torch.Tensor]) -> torch.Tensor:
        """``scatter(torch.cat(blocks), ...)`` (the kernel sums over the whole
        receiver-sorted edge list)."""
        return self.scatter(torch.cat(blocks) if len(blocks) > 1 else blocks[0], receivers, num_out, plan)


def make_aggregation(kernels: str) -> torch.nn.Module:
    """The aggregation module of a kernels choice ('aten' or 'kim_gnn')."""
    if kernels == "kim_gnn":
        return KernelAggregation()
    return AtenAggregation()
