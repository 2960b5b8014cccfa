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


def _one_block(receivers: torch.Tensor, edge_chunk: int) -> bool:
    """Whether a layer computes all its edges' messages in one block (both
    aggregations' ``block_sizes``): off the CPU (a GPU's caching allocator
    has no mmap cost, and each block launches every kernel again), or for
    at most ``edge_chunk`` edges."""
    return receivers.device.type != "cpu" or int(receivers.shape[0]) <= edge_chunk


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

    def block_sizes(self, receivers: torch.Tensor, plan: List[torch.Tensor], edge_chunk: int) -> List[int]:
        """The sizes of the blocks of consecutive edges a layer computes its
        messages on (``scatter_blocks`` sums them): ``edge_chunk`` edges each
        on the CPU, one block elsewhere or for at most ``edge_chunk`` edges."""
        num_edges = int(receivers.shape[0])
        if _one_block(receivers, edge_chunk):
            return [num_edges]
        sizes = [edge_chunk] * (num_edges // edge_chunk)
        if num_edges % edge_chunk > 0:
            sizes.append(num_edges % edge_chunk)
        return sizes

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

    def block_sizes(self, receivers: torch.Tensor, plan: List[torch.Tensor], edge_chunk: int) -> List[int]:
        """As ``AtenAggregation.block_sizes``, but every block ends where a
        receiver's edges end (the edges are sorted by receiver; a block
        ends at the first receiver boundary at or after each multiple of
        ``edge_chunk``), so that ``scatter_blocks`` sums each receiver
        within one block, in the kernel's own order."""
        num_edges = int(receivers.shape[0])
        if _one_block(receivers, edge_chunk):
            return [num_edges]
        ptr = plan[0]
        targets = torch.arange(edge_chunk, num_edges, edge_chunk, dtype=ptr.dtype, device=ptr.device)
        ends = torch.unique_consecutive(ptr.index_select(0, torch.searchsorted(ptr, targets)))
        ends = ends[(ends > 0) & (ends < num_edges)]
        bounds: List[int] = ends.tolist()
        sizes: List[int] = []
        start = 0
        for end in bounds + [num_edges]:
            sizes.append(end - start)
            start = end
        return sizes

    def scatter_blocks(self, blocks: List[torch.Tensor], receivers: torch.Tensor, num_out: int,
                       plan: List[torch.Tensor]) -> torch.Tensor:
        """``scatter(torch.cat(blocks), ...)`` without forming the
        concatenation where every block ends at a receiver boundary (the
        blocks of ``block_sizes``): each block's receivers summed by the
        kernel into their own rows, the same sums in the same order. Blocks
        split otherwise are summed as their concatenation."""
        if len(blocks) == 1:
            return self.scatter(blocks[0], receivers, num_out, plan)
        ptr = plan[0]
        ends: List[int] = []
        end = 0
        for block in blocks[:-1]:
            end += int(block.shape[0])
            ends.append(end)
        rows: List[int] = torch.searchsorted(ptr, torch.tensor(ends, dtype=ptr.dtype, device=ptr.device)).tolist()
        aligned = True
        for i in range(len(ends)):
            if rows[i] > num_out or int(ptr[rows[i]]) != ends[i]:
                aligned = False
        if not aligned:
            return self.scatter(torch.cat(blocks), receivers, num_out, plan)
        rows.append(num_out)
        sums: List[torch.Tensor] = []
        start = 0
        row = 0
        for i in range(len(blocks)):
            local = ptr.narrow(0, row, rows[i] - row + 1) - start
            sums.append(torch.ops.kim_gnn.segment_sum(blocks[i], local))
            start += int(blocks[i].shape[0])
            row = rows[i]
        return torch.cat(sums)


def make_aggregation(kernels: str) -> torch.nn.Module:
    """The aggregation module of a kernels choice ('aten' or 'kim_gnn')."""
    if kernels == "kim_gnn":
        return KernelAggregation()
    return AtenAggregation()
