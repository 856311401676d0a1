"""The feed-forward blocks of a BERT-style encoder, read as the MLPs GLAI converts (docs/method.md,
Family T).

A BERT-style layer computes ``a = attention(h)`` and then its feed-forward block (FFN)
``LN(a + W2 act(W1 a + b1) + b2)``: in Hugging Face ``transformers`` the modules ``intermediate.dense`` (W1, b1),
``intermediate.intermediate_act_fn`` (act), ``output.dense`` (W2, b2) and ``output.LayerNorm`` (LN) of
``encoder.layer[i]`` (``BertModel``, and the models built like it: all-MiniLM-L6-v2, RoBERTa, ...).

- :func:`read_ffn_blocks` finds the last ``n`` blocks, or refuses a model it cannot read with an error that names the
  model and the modules it expected.
- :func:`relu_mlp` is a block's inner ``W2 act(W1 a + b1) + b2`` with ``act`` switched to ReLU, as the
  ``Linear-ReLU-Linear`` module that :func:`glai.convert` turns into a path selector (``1[W1 a + b1 > 0]``) and an
  estimator over its paths (``w[o, i, g] = W2[o, g] W1[g, i]``, bias paths ``W2[o, g] b1[g]``: paper Theorem 1).
- :class:`ResidualFFN` wraps any inner module (the block's own, a ReLU MLP, a GLAI head) in the block's residual
  and LayerNorm, so every head of family T trains inside the same ``LN(a + f(a))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["FFNBlock", "ResidualFFN", "block_parameters", "read_ffn_blocks", "relu_mlp"]

#: The module paths of a BERT-style layer's feed-forward block (relative to ``encoder.layer[i]``).
EXPECTED = ("intermediate.dense", "intermediate.intermediate_act_fn", "output.dense", "output.LayerNorm")


@dataclass
class FFNBlock:
    """One feed-forward block of an encoder layer (modules of the model itself, not copies).

    Attributes:
        layer: the layer's index in ``encoder.layer``.
        fc1: ``W1, b1``: Linear(d, d_ff).
        act: the activation between them (GELU in BERT).
        fc2: ``W2, b2``: Linear(d_ff, d).
        norm: the LayerNorm after the residual, over d.
        dropout: the dropout on ``fc2``'s output (inactive in eval mode).
        attention: the layer's self-attention (``encoder.layer[i].attention``), which runs before the block: frozen
            between two trained blocks (``ffn.blocks`` > 1, :class:`glai.transformer.FrozenAttention`).
    """

    layer: int
    fc1: nn.Linear
    act: nn.Module
    fc2: nn.Linear
    norm: nn.LayerNorm
    dropout: nn.Module
    attention: nn.Module | None = None

    @property
    def d(self) -> int:
        return self.fc1.in_features

    @property
    def d_ff(self) -> int:
        return self.fc1.out_features


def _get(module: nn.Module, path: str):
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def read_ffn_blocks(model: nn.Module, n_blocks: int = 1) -> list[FFNBlock]:
    """The feed-forward blocks of the last ``n_blocks`` layers of a BERT-style encoder, in layer order.

    Args:
        model: a ``transformers`` encoder (``BertModel``-like: ``encoder.layer[i]`` holding :data:`EXPECTED`), or
            a model wrapping one as ``.bert`` / ``.base_model``.
        n_blocks: how many of the last layers (``ffn.blocks``), >= 1.

    Raises:
        ValueError: ``n_blocks`` out of range, or a model whose blocks cannot be read (the message names the
            model's class and the modules expected).
    """
    base = model
    for attr in ("bert", "roberta", "base_model"):
        if _get(base, "encoder.layer") is None and isinstance(getattr(base, attr, None), nn.Module):
            base = getattr(base, attr)
    layers = _get(base, "encoder.layer")
    expected = ", ".join(f"encoder.layer[i].{p}" for p in EXPECTED)
    if not isinstance(layers, (nn.ModuleList, list)) or not len(layers):
        raise ValueError(f"{type(model).__name__}: no encoder.layer list, so its feed-forward blocks cannot be read. "
                         f"GLAI's family T reads BERT-style layers ({expected}). Fix: backbone= a BERT-style encoder "
                         "(e.g. backbone=minilm)")
    if not 1 <= n_blocks <= len(layers):
        raise ValueError(f"ffn.blocks={n_blocks}: {type(model).__name__} has {len(layers)} layers. Fix: "
                         f"1 <= ffn.blocks <= {len(layers)}")
    blocks = []
    for index in range(len(layers) - n_blocks, len(layers)):
        layer = layers[index]
        parts = {p: _get(layer, p) for p in EXPECTED}
        missing = [p for p, m in parts.items() if m is None]
        kinds_ok = (isinstance(parts["intermediate.dense"], nn.Linear) and isinstance(parts["output.dense"], nn.Linear)
                    and isinstance(parts["output.LayerNorm"], nn.LayerNorm))
        if missing or not kinds_ok:
            raise ValueError(f"{type(model).__name__}: layer {index} ({type(layer).__name__}) lacks "
                             f"{', '.join(missing) or 'Linear / LayerNorm modules'} of a BERT-style feed-forward "
                             f"block ({expected}). Fix: backbone= a BERT-style encoder (e.g. backbone=minilm)")
        fc1, fc2 = parts["intermediate.dense"], parts["output.dense"]
        if fc1.out_features != fc2.in_features or fc2.out_features != fc1.in_features:
            raise ValueError(f"{type(model).__name__}: layer {index}'s feed-forward block is {fc1.in_features} -> "
                             f"{fc1.out_features}, then {fc2.in_features} -> {fc2.out_features}: not d -> d_ff -> d")
        blocks.append(FFNBlock(index, fc1, parts["intermediate.intermediate_act_fn"], fc2, parts["output.LayerNorm"],
                               _get(layer, "output.dropout") or nn.Identity(), _get(layer, "attention")))
    return blocks


def block_parameters(d: int, d_ff: int) -> int:
    """Trainable parameters of one FFN block's two linear layers: ``2 d d_ff + d_ff + d`` (the budget
    GLAI's estimator is pruned to)."""
    return 2 * d * d_ff + d_ff + d


def relu_mlp(block: FFNBlock) -> nn.Sequential:
    """The block's ``W2 act(W1 a + b1) + b2`` with ``act`` switched to ReLU, as ``Linear-ReLU-Linear`` in fp32
    (copies: the model is untouched); :func:`glai.convert` reads it as a path selector and its paths.

    Returns:
        ``nn.Sequential(Linear(d, d_ff), ReLU(), Linear(d_ff, d))``: [T, d] -> [T, d] per token.
    """
    mlp = nn.Sequential(nn.Linear(block.d, block.d_ff), nn.ReLU(), nn.Linear(block.d_ff, block.d))
    with torch.no_grad():
        for own, theirs in ((mlp[0], block.fc1), (mlp[2], block.fc2)):
            own.weight.copy_(theirs.weight.detach().float())
            own.bias.copy_(theirs.bias.detach().float())
    return mlp


class ResidualFFN(nn.Module):
    """``LN(a + dropout(f(a)))`` around an inner module ``f`` ([T, d] -> [T, d]): the block's residual and LayerNorm
    (a copy of the block's LayerNorm, frozen unless ``train_norm``), so every head trains inside the same block.

    Args:
        inner: the block's transformation of the tokens, e.g. :func:`relu_mlp` or a GLAI head.
        block: the block whose LayerNorm (and dropout) wrap it.
        train_norm: whether the LayerNorm's weight and bias train with the head.
    """

    def __init__(self, inner: nn.Module, block: FFNBlock, train_norm: bool = False):
        super().__init__()
        self.inner = inner
        self.norm = nn.LayerNorm(block.d, eps=block.norm.eps)
        self.norm.load_state_dict({k: v.detach().float() for k, v in block.norm.state_dict().items()})
        self.norm.requires_grad_(train_norm)
        self.dropout = block.dropout

    def forward(self, a: torch.Tensor, *args) -> torch.Tensor:
        """``a``: float32 [T, d] tokens (extra arguments, e.g. cached gates, go to ``inner``) -> [T, d]."""
        return self.norm(a + self.dropout(self.inner(a, *args)))
