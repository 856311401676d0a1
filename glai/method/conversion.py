"""MLP -> GLAI conversion (paper Theorem 1, Remark 1, SPEC 2).

A trained (reduced) ReLU MLP is rewritten as a linear estimator over its paths. With ``x~ = [x, 1]``:

- L = 1: ``w[o, i, s] = W1[o, s] * W0[s, i]`` (``b0[s]`` for the constant input ``i = n0``), gate ``a_s(x)``.
- L > 1: a path from input ``i`` crosses hidden units ``(s1, ..., sL)``; its weight is the product of the weights
  it crosses and its gate the product ``a_1[s1] ... a_L[sL]``. The bias of hidden layer ``k`` starts paths at
  layer ``k + 1`` whose contribution uses the constant input only.
- The output bias becomes the estimator bias ``beta = b_L``.

Gate columns ("routes") are numbered: first the full routes ``(s1, ..., sL)`` in C order, then for each
``k = 1..L-1`` the bias-started routes ``(s_{k+1}, ..., sL)`` in C order. Dense path tensors grow as the product
of widths; they are only built here, once, to score and prune (SPEC 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from glai.method.heads import MLPHead

__all__ = ["PathExpansion", "mlp_to_glai", "glai_reference_forward"]


@dataclass
class PathExpansion:
    """The unpruned GLAI model of an MLP.

    Attributes:
        arch: widths of the MLP converted, ``(n0, n1, ..., nL, n_out)``.
        weight: float32 [n_out, n_in, n_gates], path weights; zero where ``valid`` is False.
        valid: bool [n_in, n_gates] marking real paths, or None when every entry is a path (L = 1).
        bias: float32 [n_out], output biases (never pruned).
        route_blocks: list of ``(first_layer, widths)``, one per block of gate columns: full routes start
            at layer 1, bias-started routes of hidden layer k at layer k + 1 (1-based hidden layers).
    """

    arch: tuple[int, ...]
    weight: torch.Tensor
    valid: torch.Tensor | None
    bias: torch.Tensor
    route_blocks: list[tuple[int, tuple[int, ...]]]

    @property
    def n_in(self) -> int:
        return self.arch[0] + 1

    @property
    def n_out(self) -> int:
        return self.arch[-1]

    @property
    def n_gates(self) -> int:
        return self.weight.shape[2]

    @property
    def num_paths(self) -> int:
        """Path weights (E - n_out in SPEC 3)."""
        return self.n_out * (int(self.valid.sum()) if self.valid is not None else self.n_in * self.n_gates)

    def gates_from_patterns(self, patterns: list[torch.Tensor]) -> torch.Tensor:
        """Gate columns from per-layer activation patterns.

        Args:
            patterns: L uint8 tensors [B, n_l] (``MLPHead.hidden_patterns``).

        Returns:
            uint8 [B, n_gates]; for L = 1 the pattern itself.
        """
        if len(patterns) == 1:
            return patterns[0]
        blocks = []
        for first, _ in self.route_blocks:
            g = patterns[first - 1]
            for a in patterns[first:]:
                g = (g.unsqueeze(2) * a.unsqueeze(1)).flatten(1)  # C order over (s_first, ..., s_l)
            blocks.append(g)
        return torch.cat(blocks, dim=1)

    def gates(self, mlp: MLPHead, x: torch.Tensor) -> torch.Tensor:
        """Gate columns of inputs ``x`` float32 [N, n0] through the (frozen) selector: uint8 [N, n_gates]."""
        return self.gates_from_patterns(mlp.hidden_patterns(x))


@torch.no_grad()
def mlp_to_glai(mlp: MLPHead) -> PathExpansion:
    """Rewrite a ReLU MLP as the dense path weights of its GLAI model (paper Theorem 1, SPEC 2).

    The maths runs in float64 and is returned in float32, so that before pruning the GLAI model reproduces
    the MLP's outputs to float32 rounding (see :func:`glai_reference_forward`).

    Args:
        mlp: an :class:`MLPHead` with L >= 1 hidden layers.

    Returns:
        The :class:`PathExpansion` (weights [n_out, n0 + 1, n_gates]).

    Raises:
        ValueError: if the MLP has no hidden layer.
    """
    if mlp.num_hidden < 1:
        raise ValueError("GLAI conversion needs an MLP with >= 1 hidden ReLU layer (a linear head has no paths)")
    # on the MLP's device: conversion is part of GLAI's clock, so it runs where training runs
    Ws = [layer.weight.detach().double() for layer in mlp.layers]
    bs = [layer.bias.detach().double() for layer in mlp.layers]
    L = mlp.num_hidden
    n0, n_out = mlp.arch[0], mlp.arch[-1]
    hidden = mlp.arch[1:-1]

    # Full routes: C[s_l, ..., s_1, i], the product of the weights crossed up to layer l (no sum: paths stay apart).
    C = torch.cat([Ws[0], bs[0].unsqueeze(1)], dim=1)  # [n1, n0 + 1]
    for l in range(1, L):
        C = Ws[l].reshape(Ws[l].shape + (1,) * (C.dim() - 1)) * C.unsqueeze(0)
    full = Ws[L].reshape(Ws[L].shape + (1,) * (C.dim() - 1)) * C.unsqueeze(0)  # [o, sL, ..., s1, i]
    order = [0, full.dim() - 1, *range(full.dim() - 2, 0, -1)]  # -> [o, i, s1, ..., sL]
    blocks = [full.permute(order).reshape(n_out, n0 + 1, -1)]
    route_blocks = [(1, tuple(hidden))]

    for k in range(1, L):
        D = bs[k]  # [n_{k+1}]: the bias of hidden layer k + 1 starts these paths
        for l in range(k + 1, L):
            D = Ws[l].reshape(Ws[l].shape + (1,) * (D.dim() - 1)) * D.unsqueeze(0)
        w = Ws[L].reshape(Ws[L].shape + (1,) * (D.dim() - 1)) * D.unsqueeze(0)  # [o, sL, ..., s_{k+1}]
        w = w.permute([0, *range(w.dim() - 1, 0, -1)]).reshape(n_out, 1, -1)
        block = w.new_zeros(n_out, n0 + 1, w.shape[2])
        block[:, n0:, :] = w
        blocks.append(block)
        route_blocks.append((k + 1, tuple(hidden[k:])))

    weight = torch.cat(blocks, dim=2).float()
    valid = None
    if L > 1:
        n_full = math.prod(hidden)
        valid = torch.zeros(n0 + 1, weight.shape[2], dtype=torch.bool, device=weight.device)
        valid[:, :n_full] = True
        valid[n0, n_full:] = True
    return PathExpansion(
        arch=tuple(mlp.arch), weight=weight, valid=valid, bias=bs[L].float(), route_blocks=route_blocks
    )


def glai_reference_forward(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, gates: torch.Tensor):
    """Paper Listing 1: ``y = einsum(bis,ois->bo, x~ (x) a, w) + beta``.

    Args:
        weight: float32 [n_out, n0 + 1, n_gates]; bias float32 [n_out]; x float32 [B, n0];
        gates: uint8 [B, n_gates].

    Returns:
        float32 [B, n_out].
    """
    x_tilde = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
    outer = torch.einsum("bi,bs->bis", x_tilde, gates.to(x.dtype))
    return torch.einsum("bis,ois->bo", outer, weight) + bias
