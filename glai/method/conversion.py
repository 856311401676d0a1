"""MLP -> GLAI conversion (paper Theorem 1, Remark 1; docs/method.md, Conversion).

A trained (reduced) ReLU MLP is rewritten as a linear estimator over its paths. With ``x~ = [x, 1]``:

- L = 1: ``w[o, i, s] = W1[o, s] * W0[s, i]`` (``b0[s]`` for the constant input ``i = n0``), gate ``a_s(x)``.
- L > 1: a path from input ``i`` crosses hidden units ``(s1, ..., sL)``; its weight is the product of the weights
  it crosses and its gate the product ``a_1[s1] ... a_L[sL]``. The bias of hidden layer ``k`` starts paths at
  layer ``k + 1`` whose contribution uses the constant input only.
- The output bias becomes the estimator bias ``beta = b_L``.

Gate columns ("routes") are numbered: first the full routes ``(s1, ..., sL)`` in C order, then for each
``k = 1..L-1`` the bias-started routes ``(s_{k+1}, ..., sL)`` in C order. Dense path tensors grow as the product
of widths: :class:`PathWeights` computes them a block of outputs at a time, so that pruning never holds them
all (:func:`glai.method.pruning.prune_streaming`); :func:`mlp_to_glai` builds them whole (tests, small heads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from glai.method.heads import MLPHead

__all__ = ["PathExpansion", "PathStructure", "PathWeights", "glai_reference_forward", "mlp_to_glai", "path_structure"]


@dataclass
class PathStructure:
    """The path layout of an MLP's GLAI model, without its weights (cheap for any width).

    Attributes:
        arch: widths of the MLP converted, ``(n0, n1, ..., nL, n_out)``.
        bias: float32 [n_out], output biases (never pruned).
        route_blocks: list of ``(first_layer, widths)``, one per block of gate columns: full routes start
            at layer 1, bias-started routes of hidden layer k at layer k + 1 (1-based hidden layers).
    """

    arch: tuple[int, ...]
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
        return sum(math.prod(widths) for _, widths in self.route_blocks)

    @property
    def num_paths(self) -> int:
        """Path weights (E - n_out; docs/method.md, Parameter matching)."""
        n_full = math.prod(self.route_blocks[0][1])
        return self.n_out * (self.n_in * n_full + (self.n_gates - n_full))

    def valid_mask(self, device: torch.device | str | None = None) -> torch.Tensor | None:
        """bool [n_in, n_gates], True where (input, route) is a path; None when every entry is one (L = 1).

        Bias-started routes (L > 1) only start at the constant input ``i = n0``.
        """
        if len(self.route_blocks) == 1:
            return None
        n_full = math.prod(self.route_blocks[0][1])
        valid = torch.zeros(self.n_in, self.n_gates, dtype=torch.bool, device=device)
        valid[:, :n_full] = True
        valid[self.n_in - 1, n_full:] = True
        return valid

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


@dataclass
class PathExpansion(PathStructure):
    """The unpruned GLAI model of an MLP: its :class:`PathStructure` and every path weight.

    Attributes:
        weight: float32 [n_out, n_in, n_gates], path weights; zero where ``valid`` is False.
        valid: bool [n_in, n_gates] marking real paths, or None when every entry is a path (L = 1).
    """

    weight: torch.Tensor = None
    valid: torch.Tensor | None = None


def path_structure(mlp: MLPHead) -> PathStructure:
    """The :class:`PathStructure` of ``mlp`` (no path weight is computed).

    Raises:
        ValueError: if the MLP has no hidden layer.
    """
    if mlp.num_hidden < 1:
        raise ValueError("GLAI conversion needs an MLP with >= 1 hidden ReLU layer (a linear head has no paths)")
    hidden = tuple(mlp.arch[1:-1])
    route_blocks = [(1, hidden)] + [(k + 1, hidden[k:]) for k in range(1, len(hidden))]
    return PathStructure(arch=tuple(mlp.arch), bias=mlp.layers[-1].bias.detach().float().clone(),
                         route_blocks=route_blocks)


class PathWeights:
    """Path weights of ``mlp`` output by output, as :func:`mlp_to_glai` computes them (docs/method.md, Conversion).

    The products up to the last hidden layer (the full routes ``C[sL, ..., s1, i]`` and the bias-started
    ``D_k``) are computed once in float64; :meth:`block` multiplies a range of output rows into them. Every
    element is the same product, in the same order, as in the dense expansion, so a block equals the
    matching rows of ``mlp_to_glai(mlp).weight`` bit for bit. Memory: the routes (``prod(widths) * (n0 + 1)``
    float64, computed once) plus one block.

    Args:
        mlp: an :class:`MLPHead` with L >= 1 hidden layers.
    """

    @torch.no_grad()
    def __init__(self, mlp: MLPHead):
        self.structure = path_structure(mlp)
        # on the MLP's device: conversion is part of GLAI's clock, so it runs where training runs
        self.Ws = [layer.weight.detach().double() for layer in mlp.layers]
        bs = [layer.bias.detach().double() for layer in mlp.layers]
        L = mlp.num_hidden
        # Full routes: C[s_l, ..., s_1, i], the product of the weights crossed up to layer l (no sum: paths
        # stay apart).
        C = torch.cat([self.Ws[0], bs[0].unsqueeze(1)], dim=1)  # [n1, n0 + 1]
        for l in range(1, L):
            C = self.Ws[l].reshape(self.Ws[l].shape + (1,) * (C.dim() - 1)) * C.unsqueeze(0)
        self.C = C
        self.D = []
        for k in range(1, L):
            D = bs[k]  # [n_{k+1}]: the bias of hidden layer k + 1 starts these paths
            for l in range(k + 1, L):
                D = self.Ws[l].reshape(self.Ws[l].shape + (1,) * (D.dim() - 1)) * D.unsqueeze(0)
            self.D.append(D)

    def block(self, start: int, stop: int) -> torch.Tensor:
        """Path weights of outputs ``start:stop``: float32 [stop - start, n_in, n_gates] (0 where no path).

        Each route block is cast straight into its slice of the result (no float64 copy of the whole block).
        """
        WL = self.Ws[-1][start:stop]
        n0, n_out, s = self.structure.arch[0], WL.shape[0], self.structure
        out = torch.empty(n_out, n0 + 1, s.n_gates, dtype=torch.float32, device=WL.device)
        C = self.C
        full = WL.reshape(WL.shape + (1,) * (C.dim() - 1)) * C.unsqueeze(0)  # [o, sL, ..., s1, i]
        order = [0, full.dim() - 1, *range(full.dim() - 2, 0, -1)]  # -> [o, i, s1, ..., sL]
        hidden = s.route_blocks[0][1]
        n_full = math.prod(hidden)
        out[:, :, :n_full].view(n_out, n0 + 1, *hidden).copy_(full.permute(order))
        del full
        offset = n_full
        for D, (_, widths) in zip(self.D, s.route_blocks[1:]):
            w = WL.reshape(WL.shape + (1,) * (D.dim() - 1)) * D.unsqueeze(0)  # [o, sL, ..., s_{k+1}]
            width = math.prod(widths)
            block = out[:, :, offset : offset + width]
            block.zero_()
            block[:, n0, :].view(n_out, *widths).copy_(w.permute([0, *range(w.dim() - 1, 0, -1)]))
            offset += width
        return out


@torch.no_grad()
def mlp_to_glai(mlp: MLPHead) -> PathExpansion:
    """Rewrite a ReLU MLP as the dense path weights of its GLAI model (paper Theorem 1; docs/method.md, Conversion).

    The maths runs in float64 and is returned in float32, so that before pruning the GLAI model reproduces
    the MLP's outputs to float32 rounding (see :func:`glai_reference_forward`). The dense tensor has
    ``n_out * n_in * n_gates`` entries; to prune without it use :func:`glai.method.pruning.prune_streaming`.

    Args:
        mlp: an :class:`MLPHead` with L >= 1 hidden layers.

    Returns:
        The :class:`PathExpansion` (weights [n_out, n0 + 1, n_gates]).

    Raises:
        ValueError: if the MLP has no hidden layer.
    """
    weights = PathWeights(mlp)
    s = weights.structure
    weight = weights.block(0, s.n_out)
    return PathExpansion(arch=s.arch, bias=s.bias, route_blocks=s.route_blocks, weight=weight,
                         valid=s.valid_mask(weight.device))


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
