"""Storage layout of the kept paths of a pruned GLAI estimator.

Layout decision: paths sorted by ``(o, s, i)`` (output, gate column, input), i.e. CSR over *rows*
``r = (o, s)``, one row per distinct kept (output, gate) pair, with the input ``i`` as column. Paths of one
output are then contiguous too (``out_ptr``, CSR over outputs).

Why: the estimator factorises over rows,

    H[r, b] = sum_{p in row r} values[p] * x~[b, i_p]        (sparse [R, n_in] @ dense [n_in, B])
    y[b, o] = sum_{r: o_r = o} gates[b, s_r] * H[r, b] + beta[o]

and its weight gradient is an SDDMM over the same rows,

    dvalues[p] = sum_b (dy[b, o_r] * gates[b, s_r]) * x~[b, i_p]    (dense [R, B] @ [B, n_in], sampled)

so forward and backward are one sparse-times-dense product each over the P kept paths (B*P multiply-adds,
MKL ``csr @ dense`` and ``torch.sparse.sampled_addmm`` on CPU), plus O(R*B) work on an intermediate that is
small because pruning keeps few distinct (o, s) pairs: the L = 1 score ``|W1[o,s]| * |W0[s,i]| * ||c_is||``
is a product of an (o, s) factor and an (s, i) factor, so the kept set concentrates on the large (o, s).

Measured on the six paper shapes (``scripts/bench_estimator.py``'s pruning: ``glai.method.pruning.prune`` of a
random reduced MLP on random inputs, P = round(mu * (E - n_out)) kept paths), the number of distinct
groups under each candidate grouping, and the fill of the dense [R, n_in] row matrix:

    shape  P        (o,s) rows R   of n_out*n_gates   (i,s) stems K   of n_in*n_gates   row fill P/(R*n_in)
    A1     54,015   1,246          4,736              10,044          49,280            0.11
    A2     50,111   340            896                15,247          49,216            0.19
    B1     450,879  7,154          40,960             46,802          409,920           0.05
    B2     344,447  8,225          49,152             35,151          295,296           0.05
    C1     74,495   378            640                33,766          73,856            0.34
    C2     197,887  645            1,024              101,884         196,864           0.40

Rows (o, s) are 4-160x fewer than stems (i, s), so the (o, s) factorisation's intermediate [R, B] is the
smallest (the stem factorisation ``z = x~[:, i] * gates[:, s]``, then ``y = z @ W^T``, needs [K, B]).
Kernel times, one thread, best of 30 (milliseconds; 2-core shared machine, torch 2.15 + MKL):

    shape  batch  csr spmm (fwd)  sampled_addmm (bwd)  dense rows fwd (scatter+GEMM)  dense rows bwd (GEMM+gather)
    A1     16     0.094           0.179                0.435                          0.355
    A2     16     0.144           0.301                0.376                          0.294
    C1     16     0.204           0.404                0.418                          0.295
    C2     16     0.311           0.553                0.885                          0.693
    B2     16     0.897           1.041                10.5                           16.0
    A1     1024   7.9             7.7                  12.0                           12.8
    C1     1024   17.8            11.2                 6.6                            5.4
    C2     1024   43.5            32.3                 13.1                           14.8
    B2     1024   93.7            51.0                 188                            234

At the training batch (16) the sparse CSR products win or tie everywhere and densifying the rows loses
10-15x at 5% fill (B1, B2), so one sparse path serves every shape. Dense rows would pay only at large
batches and fill >= 0.3 (C1, C2 at batch 1024: 2.5-3x), not a training setting of the paper (family C
trains on 16-32 samples). A plain gather (``x~[:, in_idx] * gates[:, gate_idx]``: [B, P] temporaries) was
20-60x slower than the CSR products at B1, FBGEMM's ``embedding_bag`` (the same CSR product) tied with MKL
in the forward and was 4x slower in the per-sample-weight backward, and ``torch.compile`` of the gather
formulation did not beat them. The Triton kernels use the same order: one program per (output, batch
block) walks ``out_ptr``; the backward is one program per block of paths, so both are deterministic
without atomics. The compiled CPU kernels (``compiled.py``, the CPU default) walk the same rows too, in tiles of
16 samples, in output order or gate by gate; their large-batch measurements are there and in docs/FINDINGS.md.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PathLayout"]


class PathLayout(nn.Module):
    """Kept paths in ``(o, s, i)`` order with the index arrays every backend needs (built once).

    An ``nn.Module`` holding only buffers, so ``.to(device)`` moves it with its estimator and it appears in
    ``state_dict``. Values are stored by the caller in layout order: ``values_layout = values[layout.perm]``.

    Args:
        out_idx, in_idx, gate_idx: int64 (any integer dtype) [P], the kept paths ``(o, i, s)``
            (``glai.method.pruning.KeptPaths``), in any order. Duplicated paths are allowed and summed.
        n_in: inputs including the constant column (n0 + 1).
        n_gates: gate columns (n1 for L = 1).
        n_out: outputs.

    Buffers (layout order, P paths, R rows = distinct (o, s) pairs):
        perm: int64 [P], ``perm[k]`` = index in the caller's order of the path stored at position k.
        out_idx, in_idx, gate_idx: int64 [P].
        out_ptr: int64 [n_out + 1], paths of output o are ``out_ptr[o]:out_ptr[o+1]`` (empty rows allowed).
        row_ptr: int32 [R + 1], ``col``: int32 [P] (= in_idx), CSR of the [R, n_in] row matrix.
        row_out, row_gate: int64 [R], the (o, s) of each row.
        path_row: int32 [P], the row of each path (not in ``state_dict``: derived from the others).

    Raises:
        ValueError: if the index arrays are not 1-D of equal length, or an index is out of range.
    """

    def __init__(
        self,
        out_idx: torch.Tensor,
        in_idx: torch.Tensor,
        gate_idx: torch.Tensor,
        n_in: int,
        n_gates: int,
        n_out: int,
    ):
        super().__init__()
        idx = [torch.as_tensor(t).detach().to("cpu", torch.int64) for t in (out_idx, in_idx, gate_idx)]
        if any(t.dim() != 1 for t in idx) or len({t.numel() for t in idx}) != 1:
            raise ValueError(
                "out_idx, in_idx, gate_idx must be 1-D of equal length, got shapes "
                f"{[tuple(t.shape) for t in idx]}"
            )
        for t, n, name in zip(idx, (n_out, n_in, n_gates), ("out_idx", "in_idx", "gate_idx"), strict=True):
            if int(n) < 1:
                raise ValueError(f"{name} indexes an empty dimension ({n}): n_in, n_gates, n_out must be > 0")
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
                raise ValueError(f"{name} must lie in [0, {n}), got range [{int(t.min())}, {int(t.max())}]")
        o, i, s = idx
        self.n_in, self.n_gates, self.n_out = int(n_in), int(n_gates), int(n_out)

        # A stable sort by the combined key puts paths in (o, s, i) order.
        row_key = o * self.n_gates + s  # [P]
        perm = torch.argsort(row_key * self.n_in + i, stable=True)
        o, i, s, row_key = o[perm], i[perm], s[perm], row_key[perm]
        rows, path_row = torch.unique_consecutive(row_key, return_inverse=True)  # [R], [P]
        row_ptr = torch.zeros(rows.numel() + 1, dtype=torch.int64)
        row_ptr[1:] = torch.cumsum(torch.bincount(path_row, minlength=rows.numel()), 0)
        out_ptr = torch.zeros(self.n_out + 1, dtype=torch.int64)
        out_ptr[1:] = torch.cumsum(torch.bincount(o, minlength=self.n_out), 0)

        self.register_buffer("perm", perm)
        self.register_buffer("out_idx", o)
        self.register_buffer("in_idx", i)
        self.register_buffer("gate_idx", s)
        self.register_buffer("out_ptr", out_ptr)
        # int32 CSR indices: MKL's csr @ dense is ~15% faster with them than with int64.
        self.register_buffer("row_ptr", row_ptr.to(torch.int32))
        self.register_buffer("col", i.to(torch.int32))
        self.register_buffer("row_out", rows // self.n_gates)
        self.register_buffer("row_gate", rows % self.n_gates)
        # the row of every path (the compiled backward's blocks of 16 paths cross rows); derived, not saved
        self.register_buffer("path_row", path_row.to(torch.int32), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Loading buffers also re-derives what follows from them: ``path_row`` and the compiled kernels' caches
        (``_cpp_*``: gate order, used-gate count, input segments; :mod:`glai.kernels.estimator.compiled`)."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        counts = (self.row_ptr[1:] - self.row_ptr[:-1]).long()
        rows = torch.arange(counts.numel(), device=counts.device)
        self.path_row = torch.repeat_interleave(rows, counts).to(torch.int32)
        for key in [k for k in self.__dict__ if k.startswith("_cpp_")]:
            del self.__dict__[key]

    @property
    def num_paths(self) -> int:
        """P, the number of kept paths."""
        return self.perm.numel()

    @property
    def num_rows(self) -> int:
        """R, the number of distinct kept (output, gate) pairs."""
        return self.row_out.numel()

    def to_layout(self, values: torch.Tensor) -> torch.Tensor:
        """Reorder per-path values from the caller's order to layout order: [P] -> [P]."""
        return values[self.perm.to(values.device)]

    def from_layout(self, values: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_layout`: [P] in layout order -> [P] in the caller's order."""
        out = torch.empty_like(values)
        out[self.perm.to(values.device)] = values
        return out

    def extra_repr(self) -> str:
        return (
            f"paths={self.num_paths}, rows={self.num_rows}, n_in={self.n_in}, n_gates={self.n_gates}, "
            f"n_out={self.n_out}"
        )
