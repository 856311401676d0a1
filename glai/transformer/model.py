"""The trained part of a family T run: the last feed-forward block over a frozen encoder's tokens, mask-mean
pooling and a linear classifier (docs/method.md, Family T), and the heads that differ only in that block.

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
  ``W1, b1`` at random (seeded ``nn.Linear`` initialisation), the gated-ReLU control;
- ``linear``: ``f`` = the pretrained block (or its ReLU switch, ``activation="relu"``), frozen: the classifier alone.

The classifier is trainable in every head.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from glai.method.pipeline import convert
from glai.transformer.blocks import FFNBlock, ResidualFFN, block_parameters, relu_mlp

__all__ = ["FFN_HEADS", "FrozenAttention", "TokenClassifier", "Tokens", "build_ffn_head", "convert_blocks",
           "trainable_parameters"]

#: The heads of family T built here.
FFN_HEADS = ("ffn_mlp", "ffn_relu", "ffn_lora", "ffn_glai", "linear")


@dataclass
class Tokens:
    """Rows of tokens, indexed like a tensor by the training loop (``tokens[idx]``, ``tokens[a:b]``).

    Attributes:
        a: float32 [N, L, d], the block's input per token (zeros at padding).
        mask: bool [N, L], True at a token.
        gates: uint8 [T, n_gates] or None: a GLAI head's cached gates, one row per valid token of the set they were
            computed for, in its ``a[mask]`` order; a batch shares its set's rows (no copy) and finds its own through
            ``token_index``.
        token_index: int64 [N, L] or None: each position's row in ``gates`` (-1 at padding); None when ``gates`` are
            these rows' own, in ``a[mask]`` order (the whole set).

    A batch's gates are gathered once, its valid tokens' rows (:meth:`valid_gates`): one gather of [T, n_gates]
    rows, where gates stored per position ([N, L, n_gates]) would be copied whole per batch and then again for
    the valid tokens (the measured step is in docs/FINDINGS.md).
    """

    a: torch.Tensor
    mask: torch.Tensor
    gates: torch.Tensor | None = None
    token_index: torch.Tensor | None = None
    _own_rows: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __getitem__(self, idx) -> Tokens:
        if self.gates is None:
            return Tokens(self.a[idx], self.mask[idx])
        return Tokens(self.a[idx], self.mask[idx], self.gates, self.gate_rows()[idx])

    def __len__(self) -> int:
        return self.a.shape[0]

    @property
    def shape(self) -> torch.Size:
        return self.a.shape

    @property
    def device(self) -> torch.device:
        return self.a.device

    def to(self, device) -> Tokens:
        def move(t):
            return None if t is None else t.to(device)

        return Tokens(self.a.to(device), self.mask.to(device), move(self.gates), move(self.token_index))

    def gate_rows(self) -> torch.Tensor:
        """int64 [N, L]: each position's row in ``gates`` (-1 at padding); built once for a whole set.

        Raises:
            ValueError: these tokens carry no gates.
        """
        if self.gates is None:
            raise ValueError("these tokens carry no cached gates (Tokens.gates is None)")
        if self.token_index is not None:
            return self.token_index
        if self._own_rows is None:
            index = torch.full(self.mask.shape, -1, dtype=torch.long, device=self.mask.device)
            index[self.mask] = torch.arange(self.gates.shape[0], device=self.mask.device)
            self._own_rows = index
        return self._own_rows

    def valid_gates(self) -> torch.Tensor | None:
        """uint8 [T, n_gates]: the gates of the valid tokens in ``a[mask]`` order (None without gates): a set's own
        rows as they are, a batch's gathered from its set's."""
        if self.gates is None:
            return None
        if self.token_index is None:
            return self.gates
        return self.gates[self.token_index[self.mask]]

    def valid(self) -> torch.Tensor:
        """float32 [T, d]: the valid tokens in row-major order (``a[mask]``)."""
        return self.a[self.mask]

    def count(self) -> int:
        """The number of valid tokens."""
        return int(self.mask.sum())


class FrozenAttention(nn.Module):
    """A frozen layer's self-attention between two trained blocks (``ffn.blocks`` > 1): ``[B, L, d] -> [B, L, d]``
    under the attention mask, the model's own module (an fp32 copy, never trained, always in eval mode), on every
    head alike.

    Args:
        attention: the layer's attention module (``encoder.layer[i].attention`` of a BERT-style model).
        config: the model's config (the mask is built as the model builds it:
            ``transformers.masking_utils.create_bidirectional_mask``).
    """

    def __init__(self, attention: nn.Module, config):
        super().__init__()
        self.attention = copy.deepcopy(attention).float().requires_grad_(False).eval()
        self.config = config

    def train(self, mode: bool = True) -> FrozenAttention:
        super().train(mode)
        self.attention.eval()  # frozen: its dropout stays off whatever the head's mode
        return self

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        mask4 = create_bidirectional_mask(config=self.config, inputs_embeds=h, attention_mask=mask.long())
        return self.attention(h, mask4)[0]


class TokenClassifier(nn.Module):
    """``Linear(mean over valid tokens of the trained blocks' output)``: each block runs on the valid tokens only,
    a frozen attention between two blocks (``ffn.blocks`` > 1) on the padded rows under the mask.

    Args:
        ffn: the block (:class:`ResidualFFN`) applied to every valid token, or the list of them, lowest first.
        d: the hidden size.
        n_classes: outputs of the classifier.
        attentions: the frozen attention of each layer above the first trained one (``len(ffn) - 1`` of them).

    Raises:
        ValueError: ``attentions`` not one fewer than the blocks.
    """

    def __init__(self, ffn: ResidualFFN | list[ResidualFFN], d: int, n_classes: int,
                 attentions: list[FrozenAttention] = ()):
        super().__init__()
        self.ffns = nn.ModuleList(ffn if isinstance(ffn, (list, tuple, nn.ModuleList)) else [ffn])
        if len(attentions) != len(self.ffns) - 1:
            raise ValueError(f"{len(self.ffns)} blocks need {len(self.ffns) - 1} attentions between them, "
                             f"got {len(attentions)}")
        self.attentions = nn.ModuleList(attentions)
        self.classifier = nn.Linear(d, n_classes)

    @property
    def ffn(self) -> ResidualFFN:
        """The first (lowest) trained block, whose input is the cached tokens (its gates can be cached)."""
        return self.ffns[0]

    def blocks_output(self, a: torch.Tensor, mask: torch.Tensor, *inner_args) -> torch.Tensor:
        """``[B, L, d]``: the trained blocks, with the frozen attention between each two, over ``a`` under ``mask``;
        ``inner_args`` go to the first block. Padding positions hold zeros."""
        h = a
        for i in range(len(self.ffns)):
            out = self.ffns[i](h[mask], *(inner_args if i == 0 else ()))  # [T, d]: padding never enters a block
            h = a.new_zeros(a.shape)
            h[mask] = out
            if i < len(self.attentions):  # the attention of the layer above block i (never after the last block)
                h = self.attentions[i](h, mask) * mask.unsqueeze(-1)
        return h

    def forward(self, a: torch.Tensor | Tokens, mask: torch.Tensor | None = None, *inner_args) -> torch.Tensor:
        """Logits float32 [B, n_classes] of ``a`` float32 [B, L, d] under ``mask`` bool [B, L] (True = a token);
        ``inner_args`` (e.g. a GLAI head's cached gates of the valid tokens, in ``a[mask]`` order) go to the first
        block. ``a`` may be :class:`Tokens` instead (the training loop's batches): its mask, and its gates when
        cached.

        Raises:
            ValueError: a row without a single valid token.
        """
        if isinstance(a, Tokens):
            if a.gates is not None:
                inner_args = (a.valid_gates(),)
            a, mask = a.a, a.mask
        counts = mask.sum(1, keepdim=True)  # [B, 1]
        if bool((counts == 0).any()):
            raise ValueError("a row of the batch has no valid token (attention mask all False)")
        return self.classifier(self.blocks_output(a, mask, *inner_args).sum(1) / counts)


def _gelu_block(block: FFNBlock) -> nn.Sequential:
    """The pretrained block's ``W2 act(W1 a + b1) + b2`` as it is, in fp32 (copies)."""
    # trainable copies (a frozen backbone's own modules do not require gradients)
    return nn.Sequential(copy.deepcopy(block.fc1).float(), copy.deepcopy(block.act),
                         copy.deepcopy(block.fc2).float()).requires_grad_(True)


def _random_first_layer(mlp: nn.Sequential, block: FFNBlock, offset: int) -> None:
    """``mlp[0]`` drawn at random (seeded ``nn.Linear`` initialisation) from a stream of its own (the caller's seed +
    ``offset``): the classifier drawn after it starts as the trained selector's head of the same seed does."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch.initial_seed() + offset)
        mlp[0] = nn.Linear(block.d, block.d_ff)


def _convert_block(block: FFNBlock, tokens: torch.Tensor, relu_block: nn.Sequential | None, selector: str,
                   offset: int, backend: str, cache: tuple[torch.Tensor, ...]) -> nn.Module:
    """One block's GLAI head: its ReLU switch (or ``relu_block``; a random first layer for ``selector="random"``,
    seed stream ``offset``) converted on ``tokens`` [T, d] and pruned to the block's own parameter count."""
    mlp = copy.deepcopy(relu_block) if relu_block is not None else relu_mlp(block)
    if selector == "random":
        _random_first_layer(mlp, block, offset)
    keep = block_parameters(block.d, block.d_ff) - block.d  # + the d output biases = the block's budget
    return convert(mlp, tokens.float(), keep=keep, backend=backend, cache=cache)


def convert_blocks(blocks: list[FFNBlock], attentions: list[FrozenAttention], train: Tokens,
                   val_tokens: torch.Tensor, *, backend: str = "auto", selector: str = "trained",
                   relu_blocks: list[nn.Sequential] | None = None, batch_rows: int = 64) -> list[nn.Module]:
    """``ffn_glai``'s estimators, one per trained block, lowest first: the exact conversion of each ReLU-switched
    block (paper Theorem 1) pruned by path norm to the block's own parameter count (``2 d d_ff + d_ff + d``), the
    path norms taken over the tokens that block sees at the start of training -- the cached tokens for the first,
    for each one above the output of the converted blocks and frozen attentions below it.

    Args:
        blocks: the pretrained blocks; attentions: the frozen attentions between them.
        train: the training rows (their valid tokens are Omega of the first block).
        val_tokens: float32 [T_val, d] validation tokens of the first block: their gates are cached too
            (``conversion.gates[1]``).
        selector: ``trained`` (the blocks' pretrained ``W1``) | ``random`` (random hyperplanes).
        relu_blocks: a selector phase's fine-tuned ReLU blocks to convert instead of the pretrained ones.
        batch_rows: rows per forward when the upper blocks' inputs are computed.

    Returns:
        The GLAI heads (``glai.GLAIHead``), one per block.

    Raises:
        ValueError: an unknown ``selector``.
    """
    if selector not in ("trained", "random"):
        raise ValueError(f"selector={selector!r}: choose trained or random")
    inners: list[nn.Module] = []
    rows, mask = train.a, train.mask  # [N, L, d]: the input of block i, padded
    for i, block in enumerate(blocks):
        inner = _convert_block(block, rows[mask], None if relu_blocks is None else relu_blocks[i], selector,
                               1 + i, backend, (val_tokens,) if i == 0 else ())
        inners.append(inner)
        if i + 1 < len(blocks):
            # the next block's Omega: the tokens it sees at the start of training (this block, then the attention)
            ffn = ResidualFFN(inner, block).eval()
            nxt = torch.zeros_like(rows)
            with torch.no_grad():
                for r in range(0, len(train), batch_rows):
                    m = mask[r:r + batch_rows]
                    h = torch.zeros_like(rows[r:r + batch_rows])
                    h[m] = ffn(rows[r:r + batch_rows][m])
                    nxt[r:r + batch_rows] = attentions[i](h, m) * m.unsqueeze(-1)
            rows = nxt
    return inners


def build_ffn_head(kind: str, block: FFNBlock | list[FFNBlock], n_classes: int, tokens: torch.Tensor | None = None,
                   backend: str = "auto", *, lora_rank: int = 8, lora_alpha: float = 16.0, selector: str = "trained",
                   relu_block: nn.Sequential | None = None, cache: tuple[torch.Tensor, ...] = (),
                   activation: str = "model", attentions: list[FrozenAttention] = (),
                   inners: list[nn.Module] | None = None) -> TokenClassifier:
    """One head of family T over ``block`` (or the stack of trained blocks, lowest first; see the module docstring).
    Call after ``torch.manual_seed``: the classifier's (and a random selector's) initialisation is drawn here.

    Args:
        kind: one of :data:`FFN_HEADS`.
        block: the pretrained block (:func:`glai.transformer.read_ffn_blocks`), or the list of them; copied, never
            modified.
        n_classes: the classifier's outputs.
        tokens: one block's ``ffn_glai``: float32 [T, d] training tokens (valid ones) it converts on (path norms
            for the pruning, and the gates it caches in ``head.ffn.inner.conversion.gates[0]``).
        backend: the sparse estimator's backend (``ffn_glai``).
        lora_rank, lora_alpha: ``ffn_lora``'s adapters (``ffn.lora_rank``, ``ffn.lora_alpha``).
        selector: ``ffn_glai``'s path selector: ``trained`` (the pretrained ``W1, b1``) | ``random``.
        relu_block: one block's ``ffn_glai``: the ReLU-switched block to convert instead of the pretrained one (a
            selector phase's fine-tuned block); None: :func:`relu_mlp` of ``block``.
        cache: one block's ``ffn_glai``: more token sets float32 [T_k, d] whose gates the conversion computes
            (``conversion.gates[k + 1]``).
        activation: ``linear``: ``model`` (the block as it is) | ``relu`` (its ReLU switch, the switch's own cost).
        attentions: the frozen attentions between the blocks of a stack.
        inners: a stack's ``ffn_glai``: the converted blocks (:func:`convert_blocks`).

    Raises:
        ValueError: an unknown ``kind`` or ``selector``, or ``ffn_glai`` without ``tokens`` or ``inners``.
    """
    if kind not in FFN_HEADS:
        raise ValueError(f"head={kind!r}: family T's heads are {FFN_HEADS}")
    blocks = list(block) if isinstance(block, (list, tuple)) else [block]
    if kind == "ffn_glai":
        if inners is None:
            if tokens is None or len(blocks) != 1:
                raise ValueError("ffn_glai converts the block on training tokens: pass tokens=[T, d] (one block) or "
                                 "inners=convert_blocks(...) (a stack)")
            if selector not in ("trained", "random"):
                raise ValueError(f"selector={selector!r}: choose trained or random")
            inners = [_convert_block(blocks[0], tokens, relu_block, selector, 1, backend, cache)]
    elif kind == "ffn_relu" or (kind == "linear" and activation == "relu"):
        inners = [relu_mlp(b) for b in blocks]
    else:
        inners = [_gelu_block(b) for b in blocks]
    head = TokenClassifier([ResidualFFN(inner, b) for inner, b in zip(inners, blocks, strict=True)], blocks[0].d,
                           n_classes, list(attentions))
    if kind == "linear":
        head.ffns.requires_grad_(False)
    elif kind == "ffn_lora":
        from peft import LoraConfig, inject_adapter_in_model

        # freezes the blocks' weights; adapters A ~ Kaiming, B = 0 (the head starts as the pretrained blocks)
        for ffn in head.ffns:
            inject_adapter_in_model(LoraConfig(r=int(lora_rank), lora_alpha=float(lora_alpha), lora_dropout=0.0,
                                               target_modules=["0", "2"]), ffn.inner)
    return head


def trainable_parameters(head: nn.Module) -> int:
    """Trainable values of ``head`` (what each family T record reports beside its score)."""
    return sum(p.numel() for p in head.parameters() if p.requires_grad)
