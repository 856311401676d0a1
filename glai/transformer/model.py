"""The trained part of a family T run: the last feed-forward block over a frozen encoder's tokens, mask-mean
pooling and a linear classifier (SPEC 13; issue 28), and the heads that differ only in that block.

Every head sees the same cached tokens (:class:`Tokens`: the frozen layers' output at the block's input ``a``,
[N, L, d] with the attention mask [N, L]) and trains inside the same ``LN(a + f(a))``
(:class:`glai.transformer.blocks.ResidualFFN`):

- ``ffn_mlp``: ``f`` = the pretrained block as it is (GELU), fine-tuned;
- ``ffn_relu``: ``f`` = the block with ReLU (ReLU-fication, Mirzadeh et al., ICLR 2024), fine-tuned;
- ``ffn_lora``: ``f`` = the pretrained block frozen, with LoRA adapters of rank r on its two linear layers (Hu et
  al. 2021, through ``peft``; B = 0 at the start, so the head starts as the pretrained block);
- ``ffn_glai``: ``f`` = GLAI over the ReLU-switched block: the frozen path selector ``1[W1 a + b1 > 0]`` and the
  estimator initialised by the block's exact conversion (paper Theorem 1), pruned by path norm to the block's own
  parameter count (``2 d d_ff + d_ff + d``), so its trainable budget is ``ffn_mlp``'s; ``selector="random"`` draws
  ``W1, b1`` at random (seeded ``nn.Linear`` initialisation), the gated-ReLU control (SPEC 11);
- ``linear``: ``f`` = the pretrained block (or its ReLU switch, ``activation="relu"``), frozen: the classifier alone.

The classifier is trainable in every head.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from glai.method.pipeline import convert
from glai.transformer.blocks import FFNBlock, ResidualFFN, block_parameters, relu_mlp

__all__ = ["FFN_HEADS", "TokenClassifier", "Tokens", "build_ffn_head", "trainable_parameters"]

#: The heads of family T built here.
FFN_HEADS = ("ffn_mlp", "ffn_relu", "ffn_lora", "ffn_glai", "linear")


@dataclass
class Tokens:
    """Rows of tokens, indexed like a tensor by the training loop (``tokens[idx]``, ``tokens[a:b]``).

    Attributes:
        a: float32 [N, L, d], the block's input per token (zeros at padding).
        mask: bool [N, L], True at a token.
        gates: uint8 [N, L, n_gates] or None: a GLAI head's cached gates (zeros at padding).
    """

    a: torch.Tensor
    mask: torch.Tensor
    gates: torch.Tensor | None = None

    def __getitem__(self, idx) -> Tokens:
        return Tokens(self.a[idx], self.mask[idx], None if self.gates is None else self.gates[idx])

    def __len__(self) -> int:
        return self.a.shape[0]

    @property
    def shape(self) -> torch.Size:
        return self.a.shape

    @property
    def device(self) -> torch.device:
        return self.a.device

    def to(self, device) -> Tokens:
        return Tokens(self.a.to(device), self.mask.to(device), None if self.gates is None else self.gates.to(device))

    def valid(self) -> torch.Tensor:
        """float32 [T, d]: the valid tokens in row-major order (``a[mask]``)."""
        return self.a[self.mask]

    def count(self) -> int:
        """The number of valid tokens."""
        return int(self.mask.sum())


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

    def forward(self, a: torch.Tensor | Tokens, mask: torch.Tensor | None = None, *inner_args) -> torch.Tensor:
        """Logits float32 [B, n_classes] of ``a`` float32 [B, L, d] under ``mask`` bool [B, L] (True = a token);
        ``inner_args`` (e.g. a GLAI head's cached gates of the valid tokens, in ``a[mask]`` order) go to the block.
        ``a`` may be :class:`Tokens` instead (the training loop's batches): its mask, and its gates when cached.

        Raises:
            ValueError: a row without a single valid token.
        """
        if isinstance(a, Tokens):
            if a.gates is not None:
                inner_args = (a.gates[a.mask],)
            a, mask = a.a, a.mask
        counts = mask.sum(1, keepdim=True)  # [B, 1]
        if bool((counts == 0).any()):
            raise ValueError("a row of the batch has no valid token (attention mask all False)")
        out = self.ffn(a[mask], *inner_args)  # [T, d]: padding never enters the block
        h = a.new_zeros(a.shape)
        h[mask] = out
        return self.classifier(h.sum(1) / counts)


def _gelu_block(block: FFNBlock) -> nn.Sequential:
    """The pretrained block's ``W2 act(W1 a + b1) + b2`` as it is, in fp32 (copies)."""
    # trainable copies (a frozen backbone's own modules do not require gradients)
    return nn.Sequential(copy.deepcopy(block.fc1).float(), copy.deepcopy(block.act),
                         copy.deepcopy(block.fc2).float()).requires_grad_(True)


def build_ffn_head(kind: str, block: FFNBlock, n_classes: int, tokens: torch.Tensor | None = None,
                   backend: str = "auto", *, lora_rank: int = 8, lora_alpha: float = 16.0, selector: str = "trained",
                   relu_block: nn.Sequential | None = None, cache: tuple[torch.Tensor, ...] = (),
                   activation: str = "model") -> TokenClassifier:
    """One head of family T over ``block`` (see the module docstring). Call after ``torch.manual_seed``: the
    classifier's (and a random selector's) initialisation is drawn here.

    Args:
        kind: one of :data:`FFN_HEADS`.
        block: the pretrained block (:func:`glai.transformer.read_ffn_blocks`); copied, never modified.
        n_classes: the classifier's outputs.
        tokens: float32 [T, d] training tokens (valid ones): ``ffn_glai`` converts on them (path norms for the
            pruning, and the gates it caches in ``head.ffn.inner.conversion.gates[0]``).
        backend: the sparse estimator's backend (``ffn_glai``).
        lora_rank, lora_alpha: ``ffn_lora``'s adapters (``ffn.lora_rank``, ``ffn.lora_alpha``).
        selector: ``ffn_glai``'s path selector: ``trained`` (the pretrained ``W1, b1``) | ``random``.
        relu_block: ``ffn_glai``: the ReLU-switched block to convert instead of the pretrained one (a selector phase's
            fine-tuned block); None: :func:`relu_mlp` of ``block``.
        cache: ``ffn_glai``: more token sets float32 [T_k, d] whose gates the conversion computes
            (``conversion.gates[k + 1]``).
        activation: ``linear``: ``model`` (the block as it is) | ``relu`` (its ReLU switch, the switch's own cost).

    Raises:
        ValueError: an unknown ``kind`` or ``selector``, or ``ffn_glai`` without ``tokens``.
    """
    if kind not in FFN_HEADS:
        raise ValueError(f"head={kind!r}: family T's heads are {FFN_HEADS}")
    if kind == "ffn_glai":
        if tokens is None:
            raise ValueError("ffn_glai converts the block on training tokens: pass tokens=[T, d]")
        if selector not in ("trained", "random"):
            raise ValueError(f"selector={selector!r}: choose trained or random")
        mlp = copy.deepcopy(relu_block) if relu_block is not None else relu_mlp(block)
        if selector == "random":
            # random hyperplanes as the gates, from a stream of their own (seed + 1): the classifier drawn below
            # starts as the trained selector's head of the same seed does
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(torch.initial_seed() + 1)
                mlp[0] = nn.Linear(block.d, block.d_ff)
        # the block's own budget: keep + the d output biases = 2 d d_ff + d_ff + d trainable values (SPEC 13)
        keep = block_parameters(block.d, block.d_ff) - block.d
        inner = convert(mlp, tokens.float(), keep=keep, backend=backend, cache=cache)
    elif kind == "ffn_relu" or (kind == "linear" and activation == "relu"):
        inner = relu_mlp(block)
    else:
        inner = _gelu_block(block)
    head = TokenClassifier(ResidualFFN(inner, block), block.d, n_classes)
    if kind == "linear":
        head.ffn.requires_grad_(False)
    elif kind == "ffn_lora":
        from peft import LoraConfig, inject_adapter_in_model

        # freezes the block's weights; adapters A ~ Kaiming, B = 0 (the head starts as the pretrained block)
        inject_adapter_in_model(LoraConfig(r=int(lora_rank), lora_alpha=float(lora_alpha), lora_dropout=0.0,
                                           target_modules=["0", "2"]), head.ffn.inner)
    return head


def trainable_parameters(head: nn.Module) -> int:
    """Trainable values of ``head`` (what each family T record reports beside its score)."""
    return sum(p.numel() for p in head.parameters() if p.requires_grad)
