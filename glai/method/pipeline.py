"""The GLAI pipeline as functions a researcher can call on their own MLP (paper 3.3; docs/method.md).

- :func:`as_mlp_head`: any trained Linear-ReLU-...-Linear module (``nn.Sequential`` or a custom ``nn.Module``)
  as an :class:`MLPHead`, checked and copied in float32.
- :func:`convert`: a trained MLP (the path selector) -> a :class:`GLAIHead` pruned to a budget, with the
  activation patterns of the inputs it was given computed once (``head.conversion.gates``).
- :func:`train_glai`: the paper's whole pipeline from scratch: the reduced MLP for a fixed number of epochs,
  conversion and pruning to the MLP's parameter budget, then the estimator with early stopping; every
  phase timed. The runner calls it for ``head=glai``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from glai.method.budget import ParamBudget, parameter_budget
from glai.method.conversion import path_structure
from glai.method.dense_estimator import DenseEstimator
from glai.method.heads import GLAIHead, MLPHead, reduced_arch
from glai.method.pruning import KeptPaths, prune_streaming
from glai.method.sparse_estimator import SparseEstimator
from glai.training.loop import History, LoopOptions, OptimizerOptions, fit, wall_clock
from glai.training.penalty import ActivationPenaltyTask
from glai.training.tasks import SupervisedTask, Task

__all__ = ["Conversion", "GLAIOptions", "GLAIRun", "as_mlp_head", "build_glai_head", "conversion_error", "convert",
           "train_glai"]

# Layers that compute the identity at inference (eval mode) and are skipped when reading a user's MLP.
_IDENTITY_LAYERS = (nn.Identity, nn.Dropout)
# Largest |module(x) - MLPHead(x)| accepted when checking a user's module against its Linear-ReLU reading,
# relative to max(1, |module(x)|): float32 rounding of the same products, summed in another order.
_CHECK_RTOL = 1e-4


@dataclass
class Conversion:
    """What :func:`convert` did, kept on the head as ``head.conversion``.

    Attributes:
        kept: the paths kept, in descending score order (``glai.method.pruning.KeptPaths``); its
            ``removed_score`` is the paper Theorem 2 bound on the mean absolute output change.
        num_paths: path weights of the unpruned expansion (E - n_out).
        gates: uint8 [N_k, n_gates] activation patterns (gate columns) of ``x_train`` and then of each
            ``cache`` input, in the estimator's gate order (the selector never runs in training).
        seconds: wall-clock seconds of the conversion (expansion, gates, path norms, pruning, estimator).
        gate_columns: routes of the selector (n_gates before pruning: n1 for L = 1, the full and bias-started
            routes for L > 1); the estimator keeps only those a kept path uses (``estimator.n_gates``).
    """

    kept: KeptPaths
    num_paths: int
    gates: tuple[torch.Tensor, ...]
    seconds: float
    gate_columns: int


def as_mlp_head(module: nn.Module, x: torch.Tensor | None = None) -> MLPHead:
    """Read a trained ReLU MLP of Linear layers as an :class:`MLPHead` (paper Definition 1), in float32.

    The module's leaf layers, in registration order, must read ``Linear, ReLU, Linear, ..., ReLU, Linear``
    (``nn.Dropout`` and ``nn.Identity`` are skipped: they are the identity at inference). A Linear without
    bias gets a zero bias. When ``x`` is given, the module's own forward (eval mode) is compared with the
    reading on ``x[:256]``, which catches a forward that does not run its layers in that order (a residual,
    a functional activation).

    Args:
        module: an :class:`MLPHead`, an ``nn.Sequential`` or any ``nn.Module`` of that shape.
        x: optional float [N, n0] inputs for the forward check.

    Returns:
        An :class:`MLPHead` holding float32 copies of the weights, on the module's device.

    Raises:
        ValueError: naming the first unsupported layer and what GLAI converts, or when the forward check fails.
    """
    if isinstance(module, MLPHead):
        head = module
    else:
        layers = [m for m in module.modules() if not list(m.children()) and not isinstance(m, _IDENTITY_LAYERS)]
        kinds = ["Linear" if isinstance(m, nn.Linear) else "ReLU" if isinstance(m, nn.ReLU) else type(m).__name__
                 for m in layers]
        expected = ["Linear" if k % 2 == 0 else "ReLU" for k in range(len(kinds))]
        bad = next((k for k, (a, b) in enumerate(zip(kinds, expected)) if a != b), None)
        if bad is not None or len(kinds) < 3 or kinds[-1] != "Linear":
            if bad is not None:
                where = f"layer {bad} is {kinds[bad]}, expected {expected[bad]}"
            elif kinds and kinds[-1] != "Linear":
                where = f"the last layer is {kinds[-1]}, expected Linear"
            else:
                where = f"the layers are {kinds}"
            raise ValueError(
                f"GLAI converts ReLU MLPs of Linear layers (Linear, ReLU, ..., ReLU, Linear with >= 1 hidden "
                f"layer; paper Definition 1), but {where}. Other activations (GELU, LeakyReLU, ...), "
                "normalisation layers and an activation after the last Linear are not supported: pass the MLP "
                "part of your model, e.g. nn.Sequential(*model.mlp[:k])"
            )
        linears = layers[0::2]
        for a, b in zip(linears[:-1], linears[1:]):
            if a.out_features != b.in_features:
                raise ValueError(f"consecutive Linear layers do not chain: {a} then {b}")
        arch = [linears[0].in_features] + [lin.out_features for lin in linears]
        device = linears[0].weight.device
        head = MLPHead(arch).to(device)
        with torch.no_grad():
            for dst, src in zip(head.layers, linears):
                dst.weight.copy_(src.weight.float())
                dst.bias.copy_(src.bias.float() if src.bias is not None else torch.zeros_like(dst.bias))
    if x is not None and head is not module:
        _check_forward(module, head, x)
    return head


@torch.no_grad()
def _check_forward(module: nn.Module, head: MLPHead, x: torch.Tensor) -> None:
    was_training = module.training
    module.eval()
    try:
        sample = x[:256].to(head.layers[0].weight.device)
        want = module(sample.to(next(module.parameters()).dtype)).float()
        got = head(sample.float())
    finally:
        module.train(was_training)
    if want.shape != got.shape:
        raise ValueError(f"the module's output has shape {tuple(want.shape)}, its Linear-ReLU reading "
                         f"{tuple(got.shape)}: pass a module whose forward is exactly its layers in order")
    err = float((want - got).abs().max() / want.abs().max().clamp_min(1.0))
    if err > _CHECK_RTOL:
        raise ValueError(
            f"the module's forward differs from Linear-ReLU-...-Linear over its layers in registration order "
            f"(relative error {err:.2g}): it may add a residual, reorder layers or apply an activation "
            "functionally. Pass an nn.Sequential of the MLP's layers instead"
        )


def _selector_budget(selector: MLPHead, rho: float, arch: Sequence[int] | None) -> ParamBudget:
    """The parameter budget of paper 4.2 for a selector that is the rho-reduced MLP of ``arch``."""
    if arch is None:
        arch = (selector.arch[0], *(round(n / rho) for n in selector.arch[1:-1]), selector.arch[-1])
    if tuple(reduced_arch(arch, rho)) != tuple(selector.arch):
        raise ValueError(
            f"rho={rho}: the selector's widths {selector.arch} are not the rho-reduced widths of arch "
            f"{tuple(arch)} ({reduced_arch(arch, rho)}). Pass arch=<the original MLP's widths>, or keep=<paths>"
        )
    return parameter_budget(arch, rho)


@torch.no_grad()
def build_glai_head(selector: MLPHead, x_train: torch.Tensor, keep: int, estimator: str = "sparse",
                    backend: str = "auto", cache: Sequence[torch.Tensor] = ()) -> GLAIHead:
    """Convert a trained MLP into a GLAI head pruned to ``keep`` path weights (paper 3.3; docs/method.md).

    The selector is frozen (eval mode, no grad). The path norms that score paths for pruning are taken over
    ``x_train`` (Omega; docs/method.md, Pruning). For L > 1 only the gate columns (routes) that a kept path uses
    are kept.

    Args:
        selector: the trained MLP (:class:`MLPHead`).
        x_train: float32 [N, n0], Omega.
        keep: path weights to keep, 1 <= keep <= number of paths (``ParamBudget.kept_paths``).
        estimator: ``"sparse"`` (:class:`SparseEstimator`) or ``"dense"`` (paper Listing 1).
        backend: sparse estimator backend, ``"auto"`` | ``"triton"`` | ``"torch"``.
        cache: more inputs float32 [N_k, n0] whose gates to compute now.

    Returns:
        The :class:`GLAIHead` with ``head.conversion`` (:class:`Conversion`) set.

    Raises:
        ValueError: ``keep`` out of range, an unknown estimator, or shapes that do not match the selector.
    """
    if estimator not in ("sparse", "dense"):
        raise ValueError(f"estimator must be 'sparse' or 'dense', got {estimator!r}")
    for x in (x_train, *cache):
        if x.dim() != 2 or x.shape[1] != selector.arch[0]:
            raise ValueError(f"inputs must be float32 [N, n0={selector.arch[0]}], got {tuple(x.shape)}")
    t0 = wall_clock(x_train.device)
    selector.eval()
    x_train = x_train.float()
    expansion = path_structure(selector)
    gates = [expansion.gates(selector, x.float()) for x in (x_train, *cache)]
    x_tilde = torch.cat([x_train, x_train.new_ones(x_train.shape[0], 1)], dim=1)
    # streaming: the dense [n_out, n_in, n_gates] path tensor is never built (peak ~ kept paths + one block)
    kept = prune_streaming(selector, x_tilde, gates[0], keep)
    gate_idx, gate_fn = kept.gate_idx, None
    if selector.num_hidden > 1:
        # L > 1: keep only the gate columns (routes) that a kept path uses.
        used, gate_idx = torch.unique(kept.gate_idx, return_inverse=True)
        gates = [g[:, used] for g in gates]

        def gate_fn(patterns, _e=expansion, _u=used):
            return _e.gates_from_patterns(patterns)[:, _u]

    dims = dict(n_in=expansion.n_in, n_gates=gates[0].shape[1], n_out=expansion.n_out)
    if estimator == "dense":
        est = DenseEstimator.from_paths(kept.out_idx, kept.in_idx, gate_idx, kept.values, expansion.bias, **dims)
    else:
        est = SparseEstimator.from_paths(kept.out_idx, kept.in_idx, gate_idx, kept.values, expansion.bias,
                                         backend=backend, **dims)
    head = GLAIHead(selector, est.to(x_train.device), gate_fn)
    head.conversion = Conversion(kept=kept, num_paths=expansion.num_paths, gates=tuple(gates),
                                 seconds=wall_clock(x_train.device) - t0, gate_columns=expansion.n_gates)
    return head


def convert(
    mlp: nn.Module,
    x_train: torch.Tensor,
    *,
    keep: int | None = None,
    rho: float | None = None,
    arch: Sequence[int] | None = None,
    cache: Sequence[torch.Tensor] = (),
    estimator: str = "sparse",
    backend: str = "auto",
) -> GLAIHead:
    """Turn a trained ReLU MLP into a pruned GLAI head: the MLP becomes the frozen path selector.

    Without ``keep`` or ``rho`` every path is kept and the head computes exactly the MLP's function (paper
    Theorem 1). ``keep`` keeps that many path weights of highest score (paper 3.7, Theorem 2); ``rho`` keeps
    the paper's parameter budget (4.2): the MLP is read as the rho-reduced selector of an MLP of widths
    ``arch`` (default: the hidden widths divided by rho), and ``O - R - n_out`` paths are kept so that the
    selector plus the estimator have as many parameters as that MLP (docs/method.md, Parameter matching).

    Args:
        mlp: any trained Linear-ReLU-...-Linear module (see :func:`as_mlp_head`); copied, not modified.
        x_train: float32 [N, n0], the training inputs (Omega: path norms for pruning, and the forward check).
        keep: path weights to keep (output biases are always kept).
        rho: hidden-width reduction factor in (0, 1) of the selector relative to ``arch``.
        arch: the original MLP's widths ``(n0, n1, ..., n_out)`` for ``rho``.
        cache: more inputs float32 [N_k, n0] (e.g. validation) whose activation patterns to compute now.
        estimator: ``"sparse"`` (cost follows the kept paths) or ``"dense"`` (paper Listing 1).
        backend: sparse estimator backend, ``"auto"`` | ``"triton"`` | ``"torch"``.

    Returns:
        A :class:`GLAIHead`; ``head(x)`` runs the selector, ``head(x, gates)`` uses cached gates, and
        ``head.conversion.gates`` holds the gates of ``x_train`` and of each ``cache`` input.

    Raises:
        ValueError: both ``keep`` and ``rho`` given, ``keep`` out of range, ``rho`` not matching the MLP's
            widths, an unsupported module, or inputs of the wrong width.

    Example:
        >>> head = glai.convert(my_mlp, x_train, keep=50_000, cache=(x_val,))
        >>> history = glai.fit(head, (x_train, y_train, head.conversion.gates[0]),
        ...                    (x_val, y_val, head.conversion.gates[1]), optimizer="adam", weight_decay=0.1)
    """
    if keep is not None and rho is not None:
        raise ValueError("pass keep=<paths> or rho=<reduction factor>, not both")
    if x_train.dim() != 2:
        raise ValueError(f"x_train must be float32 [N, n0], got shape {tuple(x_train.shape)}")
    selector = as_mlp_head(mlp, x_train)
    if selector is mlp:
        # never freeze or move the caller's module: the head gets its own copy of the selector
        selector = MLPHead(mlp.arch).to(x_train.device)
        selector.load_state_dict({k: v.float() for k, v in mlp.state_dict().items()})
    if selector.num_hidden < 1:
        raise ValueError("GLAI needs >= 1 hidden ReLU layer: a linear model has no paths to select")
    if rho is not None:
        keep = _selector_budget(selector, rho, arch).kept_paths
    elif keep is None:
        keep = path_structure(selector).num_paths
    return build_glai_head(selector.to(x_train.device), x_train, int(keep), estimator, backend, cache)


@torch.no_grad()
def conversion_error(head: GLAIHead, x: torch.Tensor, gates: torch.Tensor | None = None, rows: int = 4096) -> float:
    """The estimator's output error against the MLP it was converted from, on ``x``: the relative Frobenius norm
    ``||estimator(x) - selector(x)|| / ||selector(x)||`` (the selector is that MLP, frozen).

    Before pruning it is zero up to float32 rounding (paper Theorem 1: the expansion is exact); after pruning it is
    what the kept paths lose of the function, the measured side of the paper Theorem 2 bound. Measured in eval mode,
    ``rows`` inputs at a time; the head's training mode is restored.

    Args:
        head: a converted head (:func:`convert`), before or after estimator training.
        x: float32 [N, n0] inputs, N >= 1.
        gates: their cached gate columns, uint8 [N, n_gates] (``head.conversion.gates[k]``), or None to run the
            selector.
        rows: inputs per forward.

    Returns:
        The relative error (float, >= 0; nan where the MLP's output is all zeros).

    Raises:
        ValueError: empty ``x``, or ``gates`` not one row per input.
    """
    if len(x) == 0:
        raise ValueError(f"conversion_error needs at least one input row, got x of shape {tuple(x.shape)}")
    if gates is not None and len(gates) != len(x):
        raise ValueError(f"gates has {len(gates)} rows for {len(x)} inputs: pass head.conversion.gates[k] of x")
    was_training = head.training
    head.eval()
    num = den = 0.0
    for i in range(0, len(x), rows):
        xi = x[i:i + rows].float()
        ref = head.selector(xi)
        out = head(xi, None if gates is None else gates[i:i + rows])
        num += float((out - ref).double().pow(2).sum())
        den += float(ref.double().pow(2).sum())
    head.train(was_training)
    return (num / den) ** 0.5 if den > 0 else float("nan")


@dataclass
class GLAIRun:
    """The result of :func:`train_glai`.

    Attributes:
        head: the trained :class:`GLAIHead` (``head.conversion`` set).
        budget: O, R, E, mu and the kept count.
        reduced: the reduced MLP's :class:`History` (fixed epochs).
        estimator: the estimator's :class:`History` (early stopping).
        conversion_s: seconds of the conversion phase.
        initial_estimator: with ``train_glai(keep_initial=True)``, a copy of the estimator as converted,
            before its training (the common start of the shard estimators of ``glai.method.combine``).
    """

    head: GLAIHead
    budget: ParamBudget
    reduced: History
    estimator: History
    conversion_s: float
    initial_estimator: nn.Module | None = None

    @property
    def time_s(self) -> dict[str, float]:
        """Seconds per phase: reduced_mlp, conversion, estimator (everything GLAI does is on its clock)."""
        return {"reduced_mlp": self.reduced.time_s, "conversion": self.conversion_s,
                "estimator": self.estimator.time_s}


@dataclass(frozen=True)
class GLAIOptions:
    """The settings of GLAI's pipeline (paper 3.3; docs/method.md, Heads and optimisers), built once from a run's config
    (:func:`glai.options.run_options`) or by hand, and read by :func:`train_glai` and the studies alike.

    Attributes:
        rho: hidden-width reduction factor of the selector, in (0, 1) (paper 4.2).
        reduced_epochs: epochs of the reduced-MLP phase (the cap when ``structure_threshold > 0``).
        reduced_optimizer, reduced_lr, reduced_weight_decay: the reduced MLP's optimiser (paper: SGD, WD(MLP));
            ``reduced_lr`` None: the estimator's ``lr``.
        optimizer, lr, weight_decay: the estimator's optimiser (paper: Adam, WD(GLAI)).
        estimator: ``sparse`` (cost follows the kept paths) | ``dense`` (paper Listing 1).
        backend: sparse estimator backend, ``auto`` | ``triton`` | ``cpp`` | ``torch``.
        structure_threshold: end the reduced phase once the path distance m_t < this (0 = off; needs a
            ``tracker`` in :func:`train_glai`).
        l0_lambda, l0_sigma: EAT's l0 activation penalty on the reduced MLP (0 = off; EAT, docs/method.md).
        selector: ``trained`` (the paper's: the reduced MLP after its reduced epochs) | ``random`` (the reduced MLP
            at its seeded initialisation, no reduced epochs: gates from random hyperplanes; the estimator is then
            the gated-ReLU model of Mishkin, Sahiner & Pilanci 2022 -- the control for what training the
            selector is worth).
    """

    rho: float = 0.5
    reduced_epochs: int = 20
    reduced_optimizer: str = "sgd"
    reduced_lr: float | None = None
    reduced_weight_decay: float = 1e-3
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.1
    estimator: str = "sparse"
    backend: str = "auto"
    structure_threshold: float = 0.0
    l0_lambda: float = 0.0
    l0_sigma: float = 1e-4
    selector: str = "trained"

    @property
    def estimator_optimizer(self) -> OptimizerOptions:
        """The estimator's optimiser (also what estimator-only re-training and the shard estimators use)."""
        return OptimizerOptions(self.optimizer, self.lr, self.weight_decay)

    @property
    def reduced_optimizer_options(self) -> OptimizerOptions:
        """The reduced MLP's optimiser, ``reduced_lr`` None resolved to ``lr``."""
        lr = self.lr if self.reduced_lr is None else self.reduced_lr
        return OptimizerOptions(self.reduced_optimizer, lr, self.reduced_weight_decay)


_GLAI_FIELDS = frozenset(f.name for f in fields(GLAIOptions))
_LOOP_FIELDS = frozenset(f.name for f in fields(LoopOptions))


def train_glai(
    arch: Sequence[int],
    train: tuple,
    val: tuple,
    options: GLAIOptions | None = None,
    *,
    loop: LoopOptions | None = None,
    task: Task | None = None,
    seed: int = 0,
    tracker=None,
    keep_initial: bool = False,
    **settings,
) -> GLAIRun:
    """The paper's GLAI pipeline (3.3) on embeddings: selector, conversion, estimator.

    1. The reduced MLP (hidden widths x ``rho``) for exactly ``reduced_epochs`` epochs (or until the path
       distance falls below ``structure_threshold``), with ``reduced_optimizer`` (paper: SGD, WD(MLP)).
    2. Conversion: path weights, gates of train and val computed once, path norms, pruning to
       ``parameter_budget(arch, rho).kept_paths``, the estimator built.
    3. The estimator with ``optimizer`` (paper: Adam, WD(GLAI)) and early stopping.

    One seeded generator orders the batches of both training phases; ``torch.manual_seed(seed)`` fixes the
    selector's initialisation, as for every other head of the seed.

    Args:
        arch: the original MLP's widths ``(n0, n1, ..., nL, n_out)``.
        train, val: ``(x float32 [N, n0], y int64 [N] or None)``.
        options: the pipeline's settings (:class:`GLAIOptions`; default: its defaults).
        loop: batch size and early stopping of both phases (:class:`glai.training.loop.LoopOptions`; the
            reduced phase runs its fixed epochs without early stopping).
        task: loss and validation (default cross-entropy with accuracy).
        seed: initialisation and batch order.
        tracker: a ``glai.training.structure.PathDistanceTracker`` for the reduced phase; required when
            ``structure_threshold > 0``.
        keep_initial: keep a copy of the converted estimator before training (``GLAIRun.initial_estimator``;
            taken outside the timed phases).
        **settings: any field of :class:`GLAIOptions` or :class:`LoopOptions` by name (``rho=0.25``,
            ``max_epochs=30``), replacing the value of ``options`` / ``loop``.

    Returns:
        The :class:`GLAIRun`.

    Raises:
        TypeError: a keyword that is neither a :class:`GLAIOptions` nor a :class:`LoopOptions` field.
        ValueError: a bad ``rho`` for ``arch`` (paper 4.2), bad shapes, or ``structure_threshold > 0``
            without a ``tracker``.
        NonFiniteLossError: a NaN/inf training loss in either phase.
    """
    unknown = set(settings) - _GLAI_FIELDS - _LOOP_FIELDS
    if unknown:
        raise TypeError(f"train_glai() got unknown settings {sorted(unknown)}; valid: "
                        f"{sorted(_GLAI_FIELDS | _LOOP_FIELDS)}")
    options = replace(options or GLAIOptions(), **{k: v for k, v in settings.items() if k in _GLAI_FIELDS})
    loop = replace(loop or LoopOptions(), **{k: v for k, v in settings.items() if k in _LOOP_FIELDS})
    if options.structure_threshold > 0 and tracker is None and options.selector == "trained":
        raise ValueError("structure_threshold > 0 ends the reduced phase on the path distance m_t, which needs a "
                         "tracker (glai.training.structure.PathDistanceTracker over a sample of x_train)")
    (x, y, *_), (vx, vy, *_) = train, val
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    selector = MLPHead(reduced_arch(arch, options.rho)).to(x.device)
    reduced_task = task or SupervisedTask()
    if options.l0_lambda > 0:
        reduced_task = ActivationPenaltyTask(reduced_task, options.l0_lambda, options.l0_sigma)
    if options.selector == "random":
        # the seeded initialisation is the selector: random hyperplanes, nothing trained (History of 0 epochs)
        reduced = History(stopped_by="random_selector")
    elif options.selector == "trained":
        reduced = fit(selector, (x, y), (vx, vy), task=reduced_task, **options.reduced_optimizer_options.kwargs(),
                      batch_size=loop.batch_size, max_epochs=options.reduced_epochs, patience=None, generator=gen,
                      tracker=tracker, structure_threshold=options.structure_threshold)
    else:
        raise ValueError(f"selector={options.selector!r}: choose trained or random")
    t0 = wall_clock(x.device)
    budget = parameter_budget(arch, options.rho)
    head = build_glai_head(selector, x, budget.kept_paths, options.estimator, options.backend, cache=(vx,))
    conversion_s = wall_clock(x.device) - t0
    initial = copy.deepcopy(head.estimator) if keep_initial else None
    train_gates, val_gates = head.conversion.gates
    est = fit(head, (x, y, train_gates), (vx, vy, val_gates), task=task, **options.estimator_optimizer.kwargs(),
              **loop.kwargs(), generator=gen)
    return GLAIRun(head=head, budget=budget, reduced=reduced, estimator=est, conversion_s=conversion_s,
                   initial_estimator=initial)
