"""One family T head trained on cached tokens (docs/method.md, Family T): the block, the loop, the clock.

Every head goes through :func:`glai.training.loop.fit` on the same :class:`glai.transformer.Tokens` rows, batches,
validation passes and early stopping. ``ffn_glai``'s work is on its clock: the optional selector phase (the
ReLU-switched block fine-tuned for ``selector_epochs`` before the conversion), the conversion (path norms, pruning,
every token's gates) and the estimator's training; what is only measured (the converted model's score before any
estimator step) is not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from glai.method.pipeline import conversion_error
from glai.method.sparsity import active_paths_per_sample
from glai.training.loop import History, LoopOptions, OptimizerOptions, fit, wall_clock
from glai.training.tasks import SupervisedTask
from glai.transformer.blocks import FFNBlock
from glai.transformer.model import FrozenAttention, Tokens, build_ffn_head, convert_blocks, trainable_parameters

__all__ = ["FFNOptions", "peak_rss", "train_ffn_head"]


@dataclass(frozen=True)
class FFNOptions:
    """How a family T head trains (``conf/head/ffn_*.yaml``, ``ffn.*``, ``experiment.*``).

    Attributes:
        kind: ``ffn_mlp`` | ``ffn_relu`` | ``ffn_lora`` | ``ffn_glai`` | ``linear``.
        optim: the head's optimiser (every trainable value: block or estimator, and the classifier).
        loop: batch size (rows of tokens) and early stopping.
        backend: ``ffn_glai``'s sparse estimator backend.
        lora_rank, lora_alpha: ``ffn_lora``'s adapters.
        selector: ``ffn_glai``: trained (pretrained ``W1``) | random.
        selector_epochs: ``ffn_glai``: epochs of the selector phase (0 = none), fixed.
        activation: ``linear``: model | relu.
    """

    kind: str
    optim: OptimizerOptions
    loop: LoopOptions
    backend: str = "auto"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    selector: str = "trained"
    selector_epochs: int = 0
    activation: str = "model"


def peak_rss(fn):
    """``(fn(), peak MiB)``: the process's resident-memory high-water mark while ``fn`` ran, above its resident
    memory when it started (Linux ``/proc/self/status`` ``VmHWM``, reset through ``/proc/self/clear_refs``); the
    peak is None where ``/proc`` cannot be read or reset."""
    status = Path("/proc/self/status")

    def read(field: str) -> float | None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith(field + ":"):
                    return float(line.split()[1]) / 1024  # kB -> MiB
        except OSError:
            return None
        return None

    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        start = read("VmRSS")
    except OSError:
        start = None
    out = fn()
    peak = read("VmHWM")
    return out, (None if start is None or peak is None else max(0.0, peak - start))


def _with_gates(tokens: Tokens, valid_gates: torch.Tensor) -> Tokens:
    """``tokens`` with the gates of its valid tokens, uint8 [T, n_gates] in ``a[mask]`` order (:class:`Tokens`).

    Raises:
        ValueError: one row of gates per valid token is not what was given.
    """
    count = tokens.count()
    if valid_gates.shape[0] != count:
        raise ValueError(f"{valid_gates.shape[0]} rows of gates for {count} valid tokens")
    return Tokens(tokens.a, tokens.mask, valid_gates)


def _phase(hist: History, tokens: int) -> dict[str, Any]:
    return {"epochs": hist.epochs, "bvs": hist.bvs, "best_epoch": hist.best_epoch, "curves": hist.curves,
            "stopped_by": hist.stopped_by, "step_ms": hist.step_ms,
            # training tokens through a training step per second (forward, loss, backward, optimiser step)
            "tokens_per_s": tokens * hist.epochs / hist.step_s if hist.step_s > 0 else math.nan}


def train_ffn_head(opts: FFNOptions, block: FFNBlock | list[FFNBlock], train: tuple[Tokens, torch.Tensor],
                   val: tuple[Tokens, torch.Tensor], n_classes: int, seed: int,
                   attentions: list[FrozenAttention] = ()) -> dict[str, Any]:
    """Train one family T head and return the record's ``metrics`` and ``cost`` parts.

    Args:
        opts: the head (:class:`FFNOptions`).
        block: the frozen encoder's trained block (:func:`glai.transformer.read_ffn_blocks`), or the stack of them,
            lowest first; never modified.
        train, val: ``(tokens, y int64 [N])``: the tokens enter the first block.
        n_classes: the classifier's outputs.
        seed: the head's initialisation (classifier, adapters, a random selector) and the batch order.
        attentions: the frozen attentions between the blocks of a stack (``ffn.blocks`` > 1), on every head alike.
            ``ffn_glai``'s first block has its gates cached; the blocks above it run their selectors in the loop (their
            inputs change as the blocks below them train), on its clock. ``kept_paths`` sums the blocks;
            ``active_paths_per_token`` and ``firing_ratio`` are the first block's on the validation tokens.

    Returns:
        ``{"metrics": {...}, "cost": {...}}``: BVS, curves, tokens per second, trainable parameters; ``ffn_glai``
        adds the converted model's score before any estimator step (``converted_bvs``: the classifier is new, so
        about chance) and its fidelity (``conversion_error``: the first block's relative output error against the
        ReLU block it converts, on the validation tokens; :func:`glai.method.pipeline.conversion_error`), the kept
        paths, the active paths and the firing ratio per validation token, and the conversion's seconds and peak
        memory.

    Raises:
        glai.training.loop.NonFiniteLossError: a NaN/inf loss.
    """
    (x, y), (vx, vy) = train, val
    n_tokens = x.count()
    fit_kw = dict(task=SupervisedTask(), seed=seed, **opts.optim.kwargs(), **opts.loop.kwargs())
    torch.manual_seed(seed)
    blocks = list(block) if isinstance(block, (list, tuple)) else [block]
    attentions = list(attentions)
    if opts.kind != "ffn_glai":
        head = build_ffn_head(opts.kind, blocks, n_classes, lora_rank=opts.lora_rank, lora_alpha=opts.lora_alpha,
                              activation=opts.activation, attentions=attentions).to(x.device)
        hist = fit(head, (x, y), (vx, vy), **fit_kw)
        return {"metrics": _phase(hist, n_tokens),
                "cost": {"time_s": {"train": hist.time_s}, "total_s": hist.time_s,
                         "params": {"trainable": trainable_parameters(head)}}}

    times: dict[str, float] = {"selector": 0.0}
    relu_block, selector_hist = None, None
    if opts.selector_epochs > 0 and opts.selector == "trained":
        # the selector phase: the ReLU-switched block fine-tuned for a fixed count, then converted (on the clock)
        relu_head = build_ffn_head("ffn_relu", blocks, n_classes, attentions=attentions).to(x.device)
        selector_hist = fit(relu_head, (x, y), (vx, vy), **{**fit_kw, "max_epochs": opts.selector_epochs,
                                                             "patience": None})
        relu_block, times["selector"] = [f.inner for f in relu_head.ffns], selector_hist.time_s
        torch.manual_seed(seed)
    t0 = wall_clock(x.device)
    inners, peak_mib = peak_rss(lambda: convert_blocks(blocks, attentions, x, vx.valid(), backend=opts.backend,
                                                       selector=opts.selector, relu_blocks=relu_block))
    head = build_ffn_head("ffn_glai", blocks, n_classes, inners=inners, attentions=attentions).to(x.device)
    glai = head.ffn.inner
    x, vx = _with_gates(x, glai.conversion.gates[0]), _with_gates(vx, glai.conversion.gates[1])
    times["conversion"] = wall_clock(x.device) - t0
    head.eval()
    t_measure = time.perf_counter()
    converted = SupervisedTask().evaluate(head, vx, vy, None)  # measured, not on the clock
    # the first block's pruned estimator against the ReLU block it converts, on the validation tokens (Theorem 1: 0
    # before pruning); with random gates, against the random-first-layer MLP converted
    val_tokens = vx.valid()
    error = conversion_error(glai, val_tokens, glai.conversion.gates[1]) if len(val_tokens) else None
    measure_s = time.perf_counter() - t_measure
    hist = fit(head, (x, y), (vx, vy), **fit_kw)
    times["estimator"] = hist.time_s
    layout = getattr(glai.estimator, "layout", None)
    val_gates = glai.conversion.gates[1]
    metrics = {**_phase(hist, n_tokens), "converted_bvs": converted["val_acc"], "conversion_error": error,
               "selector_epochs": selector_hist.epochs if selector_hist else 0,
               "selector_bvs": selector_hist.bvs if selector_hist else None,
               "kept_paths": sum(int(f.inner.conversion.kept.values.numel()) for f in head.ffns),
               "active_paths_per_token": (active_paths_per_sample(val_gates, layout.gate_idx)
                                          if layout is not None and len(val_gates) else None),
               "firing_ratio": [float(val_gates.float().mean())] if len(val_gates) else None,
               "theorem2_bound": sum(float(f.inner.conversion.kept.removed_score) for f in head.ffns)}
    cost = {"time_s": times, "total_s": sum(times.values()),
            "params": {"trainable": trainable_parameters(head),
                       "gate_columns": sum(f.inner.conversion.gate_columns for f in head.ffns)},
            "conversion": {"seconds": sum(f.inner.conversion.seconds for f in head.ffns), "peak_mib": peak_mib,
                           "measure_s": measure_s}}
    ran = getattr(glai.estimator, "backends_ran", None)
    if ran:
        # token batches vary in size: each backend that ran with the range of batches it ran on
        spans: dict[str, list[int]] = {}
        for batch, backend in ran.items():
            low, high = spans.get(backend, [batch, batch])
            spans[backend] = [min(low, batch), max(high, batch)]
        cost["estimator_backends"] = {f"{low}-{high}": b for b, (low, high) in sorted(spans.items())}
    return {"metrics": metrics, "cost": cost}

