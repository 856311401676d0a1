"""The method family's multi-model studies (GreenLightningAI; docs/method.md, The method family): re-training
and combining.

Each study trains the MLP and GLAI in one job, on one split of the data, under the same load, and returns
plain numbers for its record (``metrics.study``). Every arm uses the same loop, batch size, early stopping
and validation passes as the protocol runs; GLAI's work (reduced MLP, conversion, gates of new data) is on
its clock.

- :func:`retrain_study`: learn new data after old data. The label space is known up front (the heads have
  every class's output from the start); with ``split="class"`` the new data are classes the old data never
  showed (class-incremental, the hard case).
- :func:`combine_study`: K estimators from one conversion, trained on K disjoint shards and averaged
  (:func:`glai.method.combine.average_estimators`), against one estimator on all data and K averaged MLPs.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping

import torch

from glai.method.combine import average_estimators, average_modules, shard_weights
from glai.method.heads import GLAIHead, MLPHead
from glai.method.pipeline import GLAIOptions, train_glai
from glai.training.loop import LoopOptions, OptimizerOptions, fit
from glai.training.tasks import SupervisedTask

__all__ = ["combine_study", "nearest_pattern_distance", "retrain_study", "split_old_new", "split_shards",
           "unseen_pattern_fraction"]


def split_old_new(y: torch.Tensor, *, split: str, new_classes: int, new_fraction: float, n_classes: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks ``(old, new)`` over the rows of ``y`` (int64 [N]).

    ``split="class"``: the classes ``n_classes - new_classes .. n_classes - 1`` are new. ``split="random"``:
    a seeded ``new_fraction`` of the rows is new.
    """
    if split == "class":
        new = y >= n_classes - new_classes
    else:
        order = torch.randperm(y.numel(), generator=generator)
        new = torch.zeros(y.numel(), dtype=torch.bool)
        new[order[: round(new_fraction * y.numel())]] = True
        new = new.to(y.device)
    return ~new, new


def split_shards(y: torch.Tensor, k: int, how: str, generator: torch.Generator) -> list[torch.Tensor]:
    """K disjoint index sets covering the rows of ``y``: ``iid`` deals a seeded permutation round-robin;
    ``class`` sorts the rows by label (ties in seeded order) and cuts K contiguous blocks (each shard sees a
    few classes: non-IID).

    Raises:
        ValueError: ``k`` below 2 or above the number of rows (a shard would be empty).
    """
    if not 2 <= k <= y.numel():
        raise ValueError(f"study.shards={k}: need 2 <= shards <= {y.numel()} training rows (an empty shard has "
                         f"no estimator to average). Fix: study.shards={min(4, max(2, y.numel()))}")
    perm = torch.randperm(y.numel(), generator=generator).to(y.device)
    if how == "iid":
        return [perm[i::k] for i in range(k)]
    order = perm[torch.argsort(y[perm], stable=True)]
    return list(torch.tensor_split(order, k))


@torch.no_grad()
def unseen_pattern_fraction(selector: MLPHead, x_old: torch.Tensor, x_new: torch.Tensor) -> float:
    """Fraction of the rows of ``x_new`` whose activation pattern (all hidden layers) no row of ``x_old`` has:
    the "selector outdated" signal of GreenLightningAI. Returns 0.0 for an empty ``x_new``."""
    if x_new.shape[0] == 0:
        return 0.0

    def patterns(x):
        return torch.cat(selector.hidden_patterns(x), dim=1)  # uint8 [N, sum n_l]

    old, new = patterns(x_old), patterns(x_new)
    both = torch.cat([old, new])
    _, inverse = torch.unique(both, dim=0, return_inverse=True)
    seen = torch.zeros(int(inverse.max()) + 1, dtype=torch.bool, device=both.device)
    seen[inverse[: old.shape[0]]] = True
    return float((~seen[inverse[old.shape[0]:]]).float().mean())


@torch.no_grad()
def nearest_pattern_distance(selector: MLPHead, x_ref: torch.Tensor, x: torch.Tensor, chunk: int = 2048) -> float:
    """Mean over the rows of ``x`` of the Hamming distance from its activation pattern (all hidden layers) to
    the nearest pattern among the rows of ``x_ref``, as a fraction of the hidden units (0 = seen exactly).

    A graded form of :func:`unseen_pattern_fraction` (exact repeats are rare with tens of units): new data far
    from every old pattern means the old selector's structure fits them poorly (GreenLightningAI).
    """
    ref = torch.cat(selector.hidden_patterns(x_ref), dim=1).float()  # [M, H]
    units = ref.shape[1]
    total = 0.0
    for start in range(0, x.shape[0], chunk):
        q = torch.cat(selector.hidden_patterns(x[start:start + chunk]), dim=1).float()  # [n, H]
        # |a - b|_1 = |a| + |b| - 2 a.b for {0, 1} vectors
        dist = q.sum(1, keepdim=True) + ref.sum(1) - 2 * q @ ref.T  # [n, M]
        total += float(dist.min(1).values.sum())
    return total / max(1, x.shape[0]) / units


def _batches(seed: int) -> torch.Generator:
    """Each model's own batch order, seeded alike: one arm's epochs never shift another's batches."""
    return torch.Generator().manual_seed(seed)


def _with_estimator(head: GLAIHead, estimator) -> GLAIHead:
    """A GLAI head sharing ``head``'s frozen selector and conversion, with its own estimator."""
    out = GLAIHead(head.selector, estimator, head._gate_fn)
    out.conversion = head.conversion
    return out


def _accuracy(model, x, y, gates=None) -> float:
    """Validation accuracy in percent (NaN for no rows)."""
    if x.shape[0] == 0:
        return float("nan")
    return SupervisedTask().evaluate(model, x, y, gates)["val_acc"]


def _scores(model, val_parts: Mapping[str, tuple], gates: Mapping[str, torch.Tensor] | None = None) -> dict:
    return {f"acc_{name}": _accuracy(model, vx, vy, None if gates is None else gates[name])
            for name, (vx, vy) in val_parts.items()}


def retrain_study(arch, train: tuple, val: tuple, *, split: str, new_classes: int, new_fraction: float,
                  seed: int, loop: LoopOptions, glai: GLAIOptions, mlp: OptimizerOptions, tracker=None) -> dict:
    """Learn new data after old data, five ways (GreenLightningAI's estimator-only re-training).

    1. Old phase: the MLP (``mlp``: optimizer, lr, weight_decay) and GLAI (``train_glai`` with ``glai``) on the
       old training rows, early-stopped on the old validation rows.
    2. New phase, each arm from a copy of its old model, early-stopped on the whole validation set (old and new
       rows: learn the new without forgetting the old), timed, and scored on old, new and all validation rows:
       ``mlp_new`` (fine-tune on new rows only), ``mlp_all`` (on old + new), ``glai_new`` and ``glai_all``
       (GLAI's estimator only: the selector and the kept paths stay frozen; the gates of the rows it has not
       seen are computed on its clock).

    Args:
        arch: the MLP's widths; ``arch[-1]`` = the number of classes (all of them, from the start).
        train, val: ``(x float32 [N, n0], y int64 [N])``.
        split, new_classes, new_fraction: see :func:`split_old_new`.
        seed: initialisation, splits and batch order.
        loop: batch size and early stopping (the protocol's; :class:`glai.training.loop.LoopOptions`).
        glai: GLAI's pipeline (:class:`glai.method.pipeline.GLAIOptions`); its estimator optimiser also
            re-trains the estimator.
        mlp: the MLP's optimiser (:class:`glai.training.loop.OptimizerOptions`).
        tracker: path-distance tracker of GLAI's reduced phase (required by ``glai.structure_threshold > 0``).

    Accuracies are the final models' (no best-epoch restore), in percent.

    Returns:
        ``{"old": {...}, "arms": {arm: {acc_old, acc_new, acc_all, time_s, epochs}}, "unseen_pattern_fraction",
        "rows": {...}, "new_output_paths": ...}``.
    """
    (x, y), (vx, vy) = train, val
    gen = torch.Generator().manual_seed(seed)
    n_classes = arch[-1]
    old, new = split_old_new(y, split=split, new_classes=new_classes, new_fraction=new_fraction,
                             n_classes=n_classes, generator=gen)
    if split == "class":
        vold, vnew = split_old_new(vy, split=split, new_classes=new_classes, new_fraction=new_fraction,
                                   n_classes=n_classes, generator=gen)
    else:  # same distribution: old and new validation rows are the whole validation set
        vold = vnew = torch.ones_like(vy, dtype=torch.bool)
    parts = {"old": (vx[vold], vy[vold]), "new": (vx[vnew], vy[vnew]), "all": (vx, vy)}
    sizes = {"train_old": int(old.sum()), "train_new": int(new.sum()), "val_old": int(vold.sum()),
             "val_new": int(vnew.sum())}
    if min(sizes.values()) == 0:
        raise ValueError(f"the old/new split left an empty part {sizes}: change study.new_classes or "
                         "study.new_fraction")
    stop = loop.kwargs()

    # old phase
    torch.manual_seed(seed)
    mlp_old = MLPHead(arch).to(x.device)
    h_mlp_old = fit(mlp_old, (x[old], y[old]), parts["old"], generator=_batches(seed), **mlp.kwargs(), **stop)
    glai_old = train_glai(arch, (x[old], y[old]), parts["old"], glai, loop=loop, seed=seed, tracker=tracker)
    head: GLAIHead = glai_old.head
    out = {
        "rows": sizes,
        "old": {"mlp": {**_scores(mlp_old, parts), "time_s": h_mlp_old.time_s, "epochs": h_mlp_old.epochs},
                "glai": {**_scores(head, parts), "time_s": sum(glai_old.time_s.values()),
                         "epochs": glai_old.estimator.epochs, "reduced_epochs": glai_old.reduced.epochs}},
        "unseen_pattern_fraction": unseen_pattern_fraction(head.selector, x[old], x[new]),
        # nearest old training pattern, as a fraction of the hidden units: new rows vs old validation rows
        "pattern_distance": {"new": nearest_pattern_distance(head.selector, x[old], x[new]),
                             "old_val": nearest_pattern_distance(head.selector, x[old], vx[vold])},
        "arms": {},
    }
    if split == "class":
        out_idx = head.estimator.layout.out_idx if hasattr(head.estimator, "layout") else None
        if out_idx is not None:
            new_outputs = out_idx >= n_classes - new_classes
            out["new_output_paths"] = {"kept": int(new_outputs.sum()), "of": int(out_idx.numel()),
                                       "per_new_class": int(new_outputs.sum()) / new_classes}

    # new phase. GLAI's gates: the old rows' were cached at conversion; the new rows' are computed here, on
    # the clock of each GLAI arm (the selector never runs inside the estimator's loop).
    t0 = time.perf_counter()
    n_gates = head.conversion.gates[0].shape[1]
    gates_train = torch.empty(x.shape[0], n_gates, dtype=torch.uint8, device=x.device)
    gates_train[old], gates_train[new] = head.conversion.gates[0], head.gates(x[new])
    gates_val = torch.empty(vx.shape[0], n_gates, dtype=torch.uint8, device=x.device)
    gates_val[vold] = head.conversion.gates[1]
    gates_val[~vold] = head.gates(vx[~vold])
    gate_s = time.perf_counter() - t0
    val_gates = {"old": gates_val[vold], "new": gates_val[vnew], "all": gates_val}
    opt = glai.estimator_optimizer.kwargs()
    rows = {"new": new, "all": torch.ones_like(new)}
    for which in ("new", "all"):
        sel = rows[which]
        model = copy.deepcopy(mlp_old)
        hist = fit(model, (x[sel], y[sel]), parts["all"], generator=_batches(seed), **mlp.kwargs(), **stop)
        out["arms"][f"mlp_{which}"] = {**_scores(model, parts), "time_s": hist.time_s, "epochs": hist.epochs}
        model = _with_estimator(head, copy.deepcopy(head.estimator))
        hist = fit(model, (x[sel], y[sel], gates_train[sel]), (vx, vy, gates_val), generator=_batches(seed),
                   **opt, **stop)
        out["arms"][f"glai_{which}"] = {**_scores(model, parts, val_gates), "time_s": hist.time_s + gate_s,
                                        "epochs": hist.epochs}
    return out


def combine_study(arch, train: tuple, val: tuple, *, shards: int, shard_split: str, seed: int,
                  loop: LoopOptions, glai: GLAIOptions, mlp: OptimizerOptions, tracker=None) -> dict:
    """K estimators from one conversion on K disjoint shards, averaged (GreenLightningAI's federated case).

    The selector and the kept paths come from GLAI trained on all training rows (the one-estimator
    reference); each shard estimator starts from the same converted values and trains on its shard only,
    early-stopped on the validation set. The combined estimator averages values and biases with weights
    n_k / N. The MLP side: K MLPs from one initialisation (the same seed: one-shot FedAvg's best case) on the
    same shards, averaged parameter-wise, against one MLP on all rows.

    Accuracies are the final models' (what one would combine and deploy; the protocol tables' BVS is the best
    epoch's score), in percent.

    Returns:
        ``{"glai": {"all", "combined", "shards": [...]}, "mlp": {...}, "shard_sizes": [...]}`` with validation
        accuracies in percent and seconds.
    """
    (x, y), (vx, vy) = train, val
    gen = torch.Generator().manual_seed(seed)
    idx = split_shards(y, shards, shard_split, gen)
    weights = shard_weights([len(i) for i in idx])
    full = train_glai(arch, (x, y), (vx, vy), glai, loop=loop, seed=seed, keep_initial=True, tracker=tracker)
    head = full.head
    train_gates, val_gates = head.conversion.gates
    opt = glai.estimator_optimizer.kwargs()
    loop = loop.kwargs()
    shard_heads, shard_out = [], []
    for i in idx:
        # the frozen selector shared; each shard's estimator starts from the converted values
        shard_head = _with_estimator(head, copy.deepcopy(full.initial_estimator))
        t0 = time.perf_counter()
        hist = fit(shard_head, (x[i], y[i], train_gates[i]), (vx, vy, val_gates), generator=_batches(seed),
                   **opt, **loop)
        shard_out.append({"acc": _accuracy(shard_head, vx, vy, val_gates), "rows": len(i),
                          "time_s": time.perf_counter() - t0, "epochs": hist.epochs,
                          "classes": int(torch.unique(y[i]).numel())})
        shard_heads.append(shard_head)
    combined = _with_estimator(head, average_estimators([h.estimator for h in shard_heads], weights))
    out = {"shard_sizes": [len(i) for i in idx],
           "glai": {"all": _accuracy(head, vx, vy, val_gates), "all_time_s": sum(full.time_s.values()),
                    "reduced_epochs": full.reduced.epochs,
                    "combined": _accuracy(combined, vx, vy, val_gates), "shards": shard_out}}

    torch.manual_seed(seed)
    init = MLPHead(arch).to(x.device)
    mlp_all = copy.deepcopy(init)
    mlp = mlp.kwargs()
    h_all = fit(mlp_all, (x, y), (vx, vy), generator=_batches(seed), **mlp, **loop)
    mlps, mlp_out = [], []
    for i in idx:
        model = copy.deepcopy(init)
        hist = fit(model, (x[i], y[i]), (vx, vy), generator=_batches(seed), **mlp, **loop)
        mlp_out.append({"acc": _accuracy(model, vx, vy), "rows": len(i), "time_s": hist.time_s,
                        "epochs": hist.epochs})
        mlps.append(model)
    out["mlp"] = {"all": _accuracy(mlp_all, vx, vy), "all_time_s": h_all.time_s,
                  "combined": _accuracy(average_modules(mlps, weights), vx, vy), "shards": mlp_out}
    return out
