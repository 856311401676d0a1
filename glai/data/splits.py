"""Embeddings of one split, and the check that they fit the head."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from glai.errors import ConfigError, DataError

__all__ = ["EmbeddingSplit", "check_class_ids", "check_splits"]


@dataclass
class EmbeddingSplit:
    """Embeddings of one split.

    Attributes:
        x: float32 [N, d]; family T: [N, L, d], the trained block's input per token.
        y: int64 [N] class labels, or None for unlabeled data (family B).
        mask: family T only: bool [N, L], True at a token (padding False); None otherwise.
    """

    x: torch.Tensor
    y: torch.Tensor | None
    mask: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> EmbeddingSplit:
        """The split's rows ``index`` (int64 [n]), their labels and (family T) their token masks."""
        return EmbeddingSplit(self.x[index], None if self.y is None else self.y[index],
                              None if self.mask is None else self.mask[index])

    def to(self, device) -> EmbeddingSplit:
        """The split on ``device``."""
        return EmbeddingSplit(self.x.to(device), None if self.y is None else self.y.to(device),
                              None if self.mask is None else self.mask.to(device))

    def __len__(self) -> int:
        return self.x.shape[0]


def check_splits(cfg, splits: dict[str, EmbeddingSplit]) -> None:
    """The embeddings fit the head: width ``arch[0]``, labels where the family needs them, labels in
    ``0..n_out-1``, at least two classes to train on, enough classes for an N-way episode, enough rows for the
    combining study's shards. Runs before any record, lock or partner run exists.

    Raises:
        DataError: a split is empty or holds NaN or infinite values (names the split and the count of bad rows).
        ConfigError: naming the key to change (``experiment.arch``, ``dataset.label_column``, ``study.shards``).
    """
    arch, family = list(cfg.experiment.arch), cfg.experiment.family
    where = f"dataset '{cfg.dataset.name}' (dataset.path={cfg.dataset.get('path')!r})"
    if family in ("A", "T"):
        check_class_ids([s.y for s in splits.values()], where)
    for name, split in splits.items():
        if split.x.ndim != (3 if family == "T" else 2) or split.x.shape[0] == 0:
            raise DataError(f"the {name} split of {where} is empty (shape {tuple(split.x.shape)}); nothing was "
                            "trained. Fix: point dataset.path at data with rows in that split, or raise "
                            "dataset.max_per_class / dataset.max_train")
        bad = int((~torch.isfinite(split.x)).flatten(1).any(dim=1).sum())
        if bad:
            raise DataError(
                f"the {name} embeddings of dataset '{cfg.dataset.name}' with backbone '{cfg.backbone.name}' have "
                f"{bad} of {split.x.shape[0]} rows with NaN or infinite values; nothing was trained. Fix the "
                f"data (or the backbone, e.g. backbone.dtype=fp32), then delete its entry under cache_dir="
                f"{cfg.get('cache_dir')!r} so that it is extracted again"
            )
        if split.x.shape[-1] != arch[0]:
            raise ConfigError(
                f"experiment.arch[0]={arch[0]} but the {name} embeddings of dataset '{cfg.dataset.name}' with "
                f"backbone '{cfg.backbone.name}' have {split.x.shape[-1]} dims. "
                f"Fix: experiment.arch[0]={split.x.shape[-1]}"
            )
        if family in ("A", "C", "T") and split.y is None:
            raise ConfigError(
                f"family {family} needs labels but the {name} split of dataset '{cfg.dataset.name}' has none. "
                "Fix: dataset.label_column / dataset.use_labels=true, or a family B experiment"
            )
        if split.y is not None and int(split.y.min()) < 0:
            raise DataError(f"the {name} split of {where} has label {int(split.y.min())}: labels must be class "
                            "indices 0..K-1. Fix: dataset.label_column names a column of class names or indices")
        if family in ("A", "T") and int(split.y.max()) >= arch[-1]:
            raise ConfigError(
                f"experiment.arch[-1]={arch[-1]} outputs but the {name} split has label {int(split.y.max())}. "
                f"Fix: experiment.arch[-1]={int(split.y.max()) + 1}"
            )
    labelled = [s.y for s in splits.values() if s.y is not None and len(s.y)]
    if family in ("A", "T") and labelled:
        classes = max(int(y.max()) for y in labelled) + 1
        if arch[-1] > classes:
            # outputs no label ever reaches: a head of another shape than the data's, and a parameter budget off
            raise ConfigError(f"experiment.arch[-1]={arch[-1]} outputs but {where} has {classes} classes (labels "
                              f"0..{classes - 1}). Fix: experiment.arch[-1]={classes}")
    train = splits.get("train")
    if family in ("A", "T") and train is not None and int(torch.unique(train.y).numel()) < 2:
        raise DataError(f"the train split of {where} has {int(torch.unique(train.y).numel())} class: a "
                        "classifier needs >= 2. Fix: point dataset.path at data with two or more classes")
    pool = splits.get("pool")
    if family == "C" and pool is not None and pool.y is not None:
        n_way, per_class = int(cfg.experiment.n_way), int(cfg.experiment.k_shot) + int(cfg.experiment.q_query)
        counts = torch.bincount(pool.y)
        usable = int((counts >= per_class).sum())
        if usable < n_way:
            raise ConfigError(f"experiment.n_way={n_way}: the pool of {where} has {usable} classes with >= "
                              f"k_shot + q_query = {per_class} rows. Fix: experiment.n_way={max(2, usable)} "
                              "(and experiment.arch[-1] alike), or smaller experiment.k_shot / q_query")
    study = cfg.get("study")
    if study is not None and study.name == "combine" and train is not None and study.shards > len(train):
        raise ConfigError(f"study.shards={study.shards} but the train split of {where} has {len(train)} rows: a "
                          f"shard would be empty. Fix: study.shards={min(4, len(train))}")


def check_class_ids(labels: list, where: str) -> None:
    """``labels`` (int arrays or tensors of the splits) are class indices 0..K-1, not class ids (stars 1-5, ids
    like 1000000): a head would get outputs no label reaches, and "experiment.arch[-1] = the largest id + 1" is no
    fix. And K >= 2: one class is nothing to classify.

    Raises:
        DataError: naming the ids found (or the one class) and the fix.
    """
    labelled = [torch.as_tensor(y) for y in labels if y is not None and len(y)]
    if not labelled:
        return
    ids = torch.unique(torch.cat(labelled))
    k, low, high = int(ids.numel()), int(ids.min()), int(ids.max())
    if k < 2:
        # before any check of the outputs: experiment.arch[-1]=1 would be a one-output classifier, no fix
        raise DataError(f"{where} holds 1 class: a classifier needs at least 2. Fix: point dataset.path at data with "
                        "two or more classes (an image folder: one sub-folder per class, at least 2)")
    if low >= 1 or high + 1 > 2 * k:
        shown = ", ".join(str(int(i)) for i in ids[:8]) + (", ..." if k > 8 else "")
        raise DataError(f"the labels of {where} are {k} class ids ({shown}; largest {high}), not class indices "
                        f"0..{k - 1}. Fix: re-code them to 0..{k - 1}, or write them as class names (a column "
                        "of strings is numbered in sorted order)")
