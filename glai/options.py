"""One seam from config to code: the typed options of a run, built once from the composed config.

:func:`run_options` reads ``cfg`` (``glai.config.Config``) into frozen dataclasses -- the loop, the head and its
optimiser, GLAI's pipeline (:class:`glai.method.pipeline.GLAIOptions`) -- and :func:`build_head` makes the model
of an MLP-family head. The runner, the method-family studies and the auto partner all take these objects, so
an option reaches every code path or none (a hand-copied keyword list can drop one from a code path unseen).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from glai.method.heads import LinearHead, MLPHead, reduced_arch
from glai.method.pipeline import GLAIOptions
from glai.training.loop import LoopOptions, OptimizerOptions

__all__ = ["HeadOptions", "RunOptions", "build_head", "run_options"]


@dataclass(frozen=True)
class HeadOptions:
    """A head and how it trains (``conf/head/*.yaml``; docs/method.md, Heads and optimisers).

    Attributes:
        name: ``mlp`` | ``mlp_reduced`` | ``linear`` | ``glai``.
        optim: the head's optimiser (GLAI: its estimator's; the same values as ``glai.estimator_optimizer``).
        width_factor: hidden-width factor of the MLP heads (1 for mlp, rho for mlp_reduced).
        l0_lambda, l0_sigma: the l0 activation penalty of the MLP heads (0 = off; EAT, docs/method.md).
        glai: the pipeline's options, for ``name == "glai"`` only.
    """

    name: str
    optim: OptimizerOptions
    width_factor: float = 1.0
    l0_lambda: float = 0.0
    l0_sigma: float = 1e-4
    glai: GLAIOptions | None = None


@dataclass(frozen=True)
class RunOptions:
    """Everything a run's training reads from its config (the data aside).

    Attributes:
        arch: the original MLP's widths ``(n0, n1, ..., nL, n_out)``.
        loop: batch size and early stopping of every phase.
        head: the head (:class:`HeadOptions`).
        seed: initialisation and batch order.
    """

    arch: tuple[int, ...]
    loop: LoopOptions
    head: HeadOptions
    seed: int


def min_delta(exp, n_val: int | None) -> float:
    """The early stop's smallest improvement (the monitor's unit): ``experiment.min_delta``, raised to
    ``experiment.min_delta_rows`` validation rows' accuracy (``100 * rows / n_val`` percentage points) when that is
    set and the monitor is an accuracy, so that an improvement is never a row or two of a small validation split
    (docs/method.md, Early stopping)."""
    value = float(exp.min_delta)
    rows = exp.get("min_delta_rows")
    if rows and n_val and exp.monitor == "val_acc":
        value = max(value, 100.0 * float(rows) / int(n_val))
    return value


def run_options(cfg, n_val: int | None = None) -> RunOptions:
    """The typed options of a composed, validated config (``glai.config.Config`` as a DictConfig); ``n_val``, the
    validation rows of the split the head trains on, resolves ``experiment.min_delta_rows`` (:func:`min_delta`)."""
    exp, head = cfg.experiment, cfg.head
    loop = LoopOptions(batch_size=int(exp.batch_size), max_epochs=int(exp.max_epochs), patience=int(exp.patience),
                       min_delta=min_delta(exp, n_val))
    optim = OptimizerOptions(str(head.optimizer), float(head.lr), float(head.weight_decay))
    glai = None
    if head.name == "glai":
        glai = GLAIOptions(
            rho=float(head.width_factor), reduced_epochs=int(exp.reduced_epochs),
            reduced_optimizer=str(head.reduced_optimizer),
            reduced_lr=None if head.reduced_lr is None else float(head.reduced_lr),
            reduced_weight_decay=float(head.reduced_weight_decay), optimizer=optim.optimizer, lr=optim.lr,
            weight_decay=optim.weight_decay, estimator=str(head.estimator), backend=str(head.backend),
            structure_threshold=float(head.structure_threshold), l0_lambda=float(head.l0_lambda),
            l0_sigma=float(head.l0_sigma), selector=str(head.selector))
    return RunOptions(arch=tuple(int(a) for a in exp.arch), loop=loop, seed=int(cfg.seed),
                      head=HeadOptions(name=str(head.name), optim=optim, width_factor=float(head.width_factor),
                                       l0_lambda=float(head.l0_lambda), l0_sigma=float(head.l0_sigma), glai=glai))


def build_head(head: HeadOptions, arch: Sequence[int]) -> nn.Module:
    """The untrained model of an MLP-family head (call after ``torch.manual_seed``): ``linear`` ->
    :class:`LinearHead` (n0 -> n_out), ``mlp`` / ``mlp_reduced`` -> :class:`MLPHead` of ``arch`` with hidden
    widths x ``width_factor``.

    Raises:
        ValueError: ``head.name == "glai"`` (GLAI is built by :func:`glai.method.pipeline.train_glai`) or an
            unknown head.
    """
    if head.name == "linear":
        return LinearHead(arch[0], arch[-1])
    if head.name in ("mlp", "mlp_reduced"):
        return MLPHead(reduced_arch(arch, head.width_factor) if head.width_factor < 1 else list(arch))
    raise ValueError(f"build_head makes the MLP-family heads (mlp, mlp_reduced, linear), not {head.name!r}")
