"""Embeddings of one split, and the check that they fit the head (SPEC 6-8)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from glai.errors import ConfigError, DataError

__all__ = ["EmbeddingSplit", "check_splits"]


@dataclass
class EmbeddingSplit:
    """Embeddings of one split.

    Attributes:
        x: float32 [N, d].
        y: int64 [N] class labels, or None for unlabeled data (family B).
    """

    x: torch.Tensor
    y: torch.Tensor | None

    def __len__(self) -> int:
        return self.x.shape[0]


def check_splits(cfg, splits: dict[str, EmbeddingSplit]) -> None:
    """The embeddings fit the head: width ``arch[0]``, labels where the family needs them, labels < ``n_out``.

    Raises:
        DataError: a split holds NaN or infinite values (names the split and the count of bad rows).
        ConfigError: naming the key to change (``experiment.arch``, ``dataset.label_column``).
    """
    arch, family = list(cfg.experiment.arch), cfg.experiment.family
    for name, split in splits.items():
        bad = int((~torch.isfinite(split.x)).any(dim=1).sum())
        if bad:
            raise DataError(
                f"the {name} embeddings of dataset '{cfg.dataset.name}' with backbone '{cfg.backbone.name}' have "
                f"{bad} of {split.x.shape[0]} rows with NaN or infinite values; nothing was trained. Fix the "
                f"data (or the backbone, e.g. backbone.dtype=fp32), then delete its entry under cache_dir="
                f"{cfg.get('cache_dir')!r} so that it is extracted again"
            )
        if split.x.shape[1] != arch[0]:
            raise ConfigError(
                f"experiment.arch[0]={arch[0]} but the {name} embeddings of dataset '{cfg.dataset.name}' with "
                f"backbone '{cfg.backbone.name}' have {split.x.shape[1]} dims. "
                f"Fix: experiment.arch[0]={split.x.shape[1]}"
            )
        if family in ("A", "C") and split.y is None:
            raise ConfigError(
                f"family {family} needs labels but the {name} split of dataset '{cfg.dataset.name}' has none. "
                "Fix: dataset.label_column / dataset.use_labels=true, or a family B experiment"
            )
        if family == "A" and int(split.y.max()) >= arch[-1]:
            raise ConfigError(
                f"experiment.arch[-1]={arch[-1]} outputs but the {name} split has label {int(split.y.max())}. "
                f"Fix: experiment.arch[-1]={int(split.y.max()) + 1}"
            )
