"""The trained part of a family T run: the last feed-forward block over a frozen encoder's tokens, mask-mean
pooling and a linear classifier (SPEC 13; issue 28, second slice), and the heads that differ only in that block.

Every head sees the same cached tokens ``a`` (the frozen layers' output at the block's input, [B, L, d] with the
attention mask [B, L]) and trains inside the same ``LN(a + f(a))`` (:class:`glai.transformer.blocks.ResidualFFN`):

- ``ffn_mlp``: ``f`` = the pretrained block as it is (GELU), fine-tuned;
- ``ffn_relu``: ``f`` = the block with ReLU (ReLU-fication, Mirzadeh et al., ICLR 2024), fine-tuned;
- ``ffn_glai``: ``f`` = GLAI over the ReLU-switched block: the frozen path selector ``1[W1 a + b1 > 0]`` and the
  estimator initialised by the block's exact conversion (paper Theorem 1), pruned by path norm to the block's own
  parameter count (``2 d d_ff + d_ff + d``), so its trainable budget is ``ffn_mlp``'s;
- ``linear``: ``f`` = the pretrained block, frozen: the classifier alone.

(LoRA on the block's two linear layers, the token cache and the runner's dispatch are the slices still to come.)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from glai.method.pipeline import convert
from glai.transformer.blocks import FFNBlock, ResidualFFN, block_parameters, relu_mlp

__all__ = ["FFN_HEADS", "TokenClassifier", "build_ffn_head", "trainable_parameters"]

#: The heads of family T built here.
FFN_HEADS = ("ffn_mlp", "ffn_relu", "ffn_glai", "linear")


class TokenClassifier(nn.Module):
    """``Linear(mean over valid tokens of LN(a + f(a)))``: the block runs on the valid tokens only.

    Args:
        ffn: the block (:class:`ResidualFFN`) applied to every valid token.
        d: the hidden size.
        n_classes: outputs of the classifier.
    """

    def __init__(self, ffn: ResidualFFN, d: int, n_classes: int):
        super().__init__()
        self.ffn = ffn
        self.classifier = nn.Linear(d, n_classes)

    def forward(self, a: torch.Tensor, mask: torch.Tensor, *inner_args) -> torch.Tensor:
        """Logits float32 [B, n_classes] of ``a`` float32 [B, L, d] under ``mask`` bool [B, L] (True = a token);
        ``inner_args`` (e.g. a GLAI head's cached gates of the valid tokens, in ``a[mask]`` order) go to the block.

        Raises:
            ValueError: a row without a single valid token.
        """
        counts = mask.sum(1, keepdim=True)  # [B, 1]
        if bool((counts == 0).any()):
            raise ValueError("a row of the batch has no valid token (attention mask all False)")
        out = self.ffn(a[mask], *inner_args)  # [T, d]: padding never enters the block
        h = a.new_zeros(a.shape)
        h[mask] = out
        return self.classifier(h.sum(1) / counts)


def _gelu_block(block: FFNBlock) -> nn.Sequential:
    """The pretrained block's ``W2 act(W1 a + b1) + b2`` as it is, in fp32 (copies)."""
    return nn.Sequential(copy.deepcopy(block.fc1).float(), copy.deepcopy(block.act), copy.deepcopy(block.fc2).float())


def build_ffn_head(kind: str, block: FFNBlock, n_classes: int, tokens: torch.Tensor | None = None,
                   backend: str = "auto") -> TokenClassifier:
    """One head of family T over ``block`` (see the module docstring).

    Args:
        kind: one of :data:`FFN_HEADS`.
        block: the pretrained block (:func:`glai.transformer.read_ffn_blocks`); copied, never modified.
        n_classes: the classifier's outputs.
        tokens: float32 [T, d] training tokens (valid ones): ``ffn_glai`` converts on them (path norms for the
            pruning, and the gates it caches in ``head.ffn.inner.conversion.gates``).
        backend: the sparse estimator's backend (``ffn_glai``).

    Raises:
        ValueError: an unknown ``kind``, or ``ffn_glai`` without ``tokens``.
    """
    if kind not in FFN_HEADS:
        raise ValueError(f"head={kind!r}: family T's heads are {FFN_HEADS}")
    if kind == "ffn_glai":
        if tokens is None:
            raise ValueError("ffn_glai converts the block on training tokens: pass tokens=[T, d]")
        # the block's own budget: keep + the d output biases = 2 d d_ff + d_ff + d trainable values (SPEC 13)
        keep = block_parameters(block.d, block.d_ff) - block.d
        inner = convert(relu_mlp(block), tokens.float(), keep=keep, backend=backend)
    elif kind == "ffn_relu":
        inner = relu_mlp(block)
    else:
        inner = _gelu_block(block)
    head = TokenClassifier(ResidualFFN(inner, block), block.d, n_classes)
    if kind == "linear":
        head.ffn.requires_grad_(False)
    return head


def trainable_parameters(head: nn.Module) -> int:
    """Trainable values of ``head`` (what each family T record reports beside its score)."""
    return sum(p.numel() for p in head.parameters() if p.requires_grad)
