"""Data sources: frozen embeddings for every split a family needs (docs/method.md, Families).

``load_data(cfg)`` returns ``{"train", "val"}`` for families A and B and ``{"pool"}`` for family C. The embedded
default, scikit-learn's digits, needs no backbone; every other dataset goes through a frozen backbone and the
embedding cache (:func:`glai.data.embeddings.load_embeddings`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from glai.data.backbones import BackboneUnavailableError
from glai.data.datasets import DatasetUnavailableError, holdout_rows, resolve_path
from glai.data.embeddings import load_embeddings
from glai.data.splits import EmbeddingSplit, check_splits
from glai.errors import ConfigError

__all__ = ["data_identity", "load_data", "load_digits", "resolved_paths", "search_folds", "tuning_folds",
           "tuning_pool_split", "tuning_splits"]


def resolved_paths(config: dict, data_root: str | None) -> dict[str, str | None]:
    """The absolute sources a resolved config reads (docs/method.md, Run identity), never their spelling:
    ``dataset.path`` and ``backbone.path`` resolved against ``data_root`` (a relative path names other data
    under another root), and a torchvision dataset's root (``<data_root>/torchvision`` by default).

    Args:
        config: a resolved config (``OmegaConf.to_container(cfg, resolve=True)``) or its record copy.
        data_root: the folder relative paths are taken from (``GLAI_DATA_ROOT``).

    Returns:
        ``{"dataset.path": str | None, "backbone.path": str | None}`` (None: the source is not a local path).
    """
    dataset, backbone = config.get("dataset") or {}, config.get("backbone") or {}
    ds_path = dataset.get("path")
    if dataset.get("source") == "torchvision":
        ds_path = ds_path or "torchvision"
    return {"dataset.path": None if ds_path is None else str(resolve_path(ds_path, data_root)),
            "backbone.path": None if backbone.get("path") is None else str(resolve_path(backbone["path"], data_root))}


def data_identity(config: dict, data_root: str | None) -> str | None:
    """SHA-256 of what the local sources hold: (name, size, mtime) of every file under the resolved
    ``dataset.path`` and ``backbone.path`` (as the embedding cache and the weight memo key them); a hub or
    bundled source contributes its id only. A file changed in place changes it: a new run, never a skip.

    Returns:
        64 hex digits; None when no source is a local path (bundled digits, hub ids): nothing to stat.
    """
    stats = {}
    for key, path in resolved_paths(config, data_root).items():
        if path is None:
            continue
        root = Path(path)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        stats[key] = [(str(p.relative_to(root)) if p != root else p.name, p.stat().st_size, p.stat().st_mtime_ns)
                      for p in files]
    if not stats:
        return None
    return hashlib.sha256(json.dumps(stats, sort_keys=True).encode()).hexdigest()


def load_digits(val_fraction: float, seed: int) -> dict[str, EmbeddingSplit]:
    """scikit-learn's bundled digits: 1797 real 8x8 images, 10 classes, no download.

    Pixels are standardised with the training split's mean and std (constant pixels keep std 1); the
    stratified train/val split is fixed by ``seed``, so every head of a seed sees the same split.

    Returns:
        ``{"train": EmbeddingSplit, "val": EmbeddingSplit}``, x float32 [N, 64].

    Raises:
        ValueError: if ``val_fraction`` is not in (0, 1).
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"dataset.val_fraction must be in (0, 1), got {val_fraction}")
    x, y = sk_load_digits(return_X_y=True)
    x_tr, x_va, y_tr, y_va = train_test_split(
        x.astype(np.float64), y, test_size=val_fraction, stratify=y, random_state=seed
    )
    mean, std = x_tr.mean(0), x_tr.std(0)
    std[std == 0] = 1.0

    def split(a, b):
        return EmbeddingSplit(torch.from_numpy((a - mean) / std).float(), torch.from_numpy(b).long())

    return {"train": split(x_tr, y_tr), "val": split(x_va, y_va)}


def load_data(cfg) -> dict[str, EmbeddingSplit]:
    """The splits of ``cfg.dataset`` embedded by ``cfg.backbone`` (cached), as the family needs them.

    Raises:
        ValueError / FileNotFoundError / RuntimeError: from the loaders, naming the key to fix (e.g. a dataset
            that needs a download while offline).
    """
    if cfg.experiment.family == "T":
        from glai.data.tokens import load_tokens  # family T: the trained block's input per token

        try:
            tensors = load_tokens(cfg)
        except (DatasetUnavailableError, BackboneUnavailableError) as err:
            raise type(err)(str(err).replace("<experiment>", cfg.experiment.name)) from err
        splits = {role: EmbeddingSplit(t["a"], t["y"], t["mask"]) for role, t in tensors.items()}
    elif cfg.dataset.source == "sklearn_digits":
        split_seed = cfg.dataset.subset_seed if cfg.dataset.get("fixed_split", False) else cfg.seed
        splits = load_digits(cfg.dataset.val_fraction, split_seed)
        if cfg.experiment.family == "C":
            splits = {"pool": EmbeddingSplit(torch.cat([s.x for s in splits.values()]),
                                             torch.cat([s.y for s in splits.values()]))}
    else:
        try:
            splits = load_embeddings(cfg)
        except (DatasetUnavailableError, BackboneUnavailableError) as err:
            # the loaders do not know the experiment: name the exact prefetch command
            raise type(err)(str(err).replace("<experiment>", cfg.experiment.name)) from err
    check_splits(cfg, splits)
    tuning = cfg.get("tuning")
    if tuning is not None and tuning.role != "none":
        if "pool" in splits:
            tuning_part = tuning_pool_split(splits["pool"], tuning.fraction, tuning.seed, cfg.experiment.n_way)
            splits = {"pool": tuning_part["tuning" if tuning.role == "search" else "held_out"]}
        elif tuning.role == "search":
            k = search_folds(len(splits["train"]), tuning.fraction, tuning.get("folds", 1),
                             tuning.get("repeats", 1))
            if k == 1:
                splits = tuning_splits(splits["train"], tuning.fraction, tuning.seed)
            elif k < 0:
                # repeated tuning splits (a large training split: k-fold would train on 80 % anyway, at 5x the cost)
                splits = {f"fold{j}/{part}": s for j in range(-k)
                          for part, s in tuning_splits(splits["train"], tuning.fraction, tuning.seed + j).items()}
            else:
                splits = {f"fold{j}/{part}": s for j, fold in enumerate(tuning_folds(splits["train"], k, tuning.seed))
                          for part, s in fold.items()}
    return splits


#: A tuning split with fewer rows than this is scored by k-fold instead (``tuning.folds: 0``, auto).
MIN_TUNING_ROWS = 500
AUTO_FOLDS = 5
#: The fewest validation rows a fold of ``tuning.folds=k`` may hold.
MIN_FOLD_ROWS = 5


def search_folds(n_train: int, fraction: float, folds: int, repeats: int = 1) -> int:
    """How a search trial is scored: ``folds`` when set (1 = the one tuning split, k = k-fold), else (0, auto)
    ``AUTO_FOLDS`` folds when the tuning split would hold fewer than ``MIN_TUNING_ROWS`` rows, else ``-repeats``
    (``repeats`` repeated tuning splits, seeds ``tuning.seed + j``; 1 when ``repeats`` is 1). Either way a trial's
    score is a mean with a standard error."""
    if folds:
        return int(folds)
    if round(fraction * n_train) < MIN_TUNING_ROWS:
        return AUTO_FOLDS
    return -int(repeats) if repeats > 1 else 1


def tuning_folds(train: EmbeddingSplit, k: int, seed: int) -> list[dict[str, EmbeddingSplit]]:
    """k folds of the training split for a search (a small tuning split gives a noisy score).

    Stratified when labelled: each class's rows, in a permutation seeded by ``seed`` (independent of the run seed),
    are dealt round-robin to the folds; unlabelled rows likewise in one permutation. Fold j validates on its rows
    and trains on the others; the folds partition the training rows, and the dataset's validation split is not
    among them.

    Returns:
        ``[{"train": ..., "val": ...}, ...]`` of length ``k``.

    Raises:
        ValueError: ``k < 2``.
        ConfigError: folds of fewer than :data:`MIN_FOLD_ROWS` rows (more folds than rows among them).
    """
    n = len(train.x)
    if k < 2:
        raise ValueError(f"tuning.folds={k}: need 2 <= folds <= {n} training rows")
    # more folds than rows too (tuning.folds=5000 on digits' 1437): folds of no row
    if n // k < MIN_FOLD_ROWS:
        # a fold of a row or two scores noise, k times slower
        raise ConfigError(f"tuning.folds={k}: folds of {n // k} of the {n} training rows score noise; a fold needs "
                          f">= {MIN_FOLD_ROWS} rows, so at most {max(2, n // MIN_FOLD_ROWS)} folds here. Fix: "
                          "tuning.folds=0 (5 folds where the tuning split is small)")
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    groups = [np.arange(n)] if train.y is None else [
        np.flatnonzero(train.y.cpu().numpy() == c) for c in np.unique(train.y.cpu().numpy())]
    offset = 0
    for rows in groups:
        fold[rows[rng.permutation(len(rows))]] = (np.arange(len(rows)) + offset) % k
        offset += len(rows)

    def part(mask: np.ndarray) -> EmbeddingSplit:
        return train.rows(torch.from_numpy(np.flatnonzero(mask)).to(train.x.device))

    return [{"train": part(fold != j), "val": part(fold == j)} for j in range(k)]


def tuning_pool_split(pool: EmbeddingSplit, fraction: float, seed: int, n_way: int) -> dict[str, EmbeddingSplit]:
    """A family C pool split for a search (docs/method.md, Tuned comparison): episodes of the tuning part score the
    trials, episodes of the held-out part evaluate the tuned runs, so no episode of a tuned run holds a row a
    search has seen.

    The split is by class when the pool has at least ``2 * n_way`` classes (``round(fraction * C)`` tuning
    classes, kept within [n_way, C - n_way]: unseen classes, as few-shot evaluation intends); with fewer (AG
    News: 4 classes, 4-way episodes) it is by row, a stratified ``fraction`` of every class
    (:func:`glai.data.datasets.holdout_rows`).

    Args:
        pool: the pool, x [N, d], y [N] int64 class ids.
        fraction: share of the classes (or of every class's rows) in the tuning part, in (0, 1).
        seed: chooses them, independent of the run seed.
        n_way: classes per episode.

    Returns:
        ``{"tuning": its rows, "held_out": the other rows}``.

    Raises:
        ValueError: an unlabelled pool.
    """
    if pool.y is None:
        raise ValueError("tuning a family C experiment needs a labelled pool (its classes are split)")
    labels = pool.y.cpu().numpy()
    classes = np.unique(labels)
    if len(classes) >= 2 * n_way:
        k = min(max(int(round(fraction * len(classes))), n_way), len(classes) - n_way)
        chosen = np.random.default_rng(seed).permutation(classes)[:k]
        in_tuning = np.isin(labels, chosen)
    else:
        in_tuning = np.zeros(len(labels), dtype=bool)
        in_tuning[holdout_rows(len(labels), labels, fraction, seed)] = True
    is_tuning = torch.from_numpy(in_tuning).to(pool.x.device)

    def part(mask: torch.Tensor) -> EmbeddingSplit:
        return EmbeddingSplit(pool.x[mask], pool.y[mask])

    return {"tuning": part(is_tuning), "held_out": part(~is_tuning)}


def tuning_splits(train: EmbeddingSplit, fraction: float, seed: int) -> dict[str, EmbeddingSplit]:
    """A hyperparameter search's splits, carved from the training split alone (docs/method.md, Tuned
    comparison).

    Args:
        train: the training split, x [N, d], y [N] int64 or None.
        fraction: share of the rows held out as the tuning split, in (0, 1); stratified by label when there
            are labels (:func:`glai.data.datasets.holdout_rows`).
        seed: chooses the rows, independent of the run seed, so every trial and head of a search is scored
            on the same rows.

    Returns:
        ``{"train": the other rows, "val": the tuning split}``; the dataset's validation split is not among
        them, so nothing a search does can read it.

    Raises:
        ValueError: ``fraction`` outside (0, 1), or a part that would be empty.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"tuning.fraction must lie in (0, 1), got {fraction}")
    n = len(train.x)
    labels = None if train.y is None else train.y.cpu().numpy()
    held = holdout_rows(n, labels, fraction, seed)
    rest = np.setdiff1d(np.arange(n), held)
    if len(held) == 0 or len(rest) == 0:
        raise ValueError(f"tuning.fraction={fraction} of {n} training rows leaves an empty part: choose a "
                         "fraction that keeps rows on both sides (e.g. tuning.fraction=0.2)")

    def part(rows: np.ndarray) -> EmbeddingSplit:
        return train.rows(torch.from_numpy(rows).to(train.x.device))

    return {"train": part(rest), "val": part(held)}
