"""The family's roles (train, val, pool) from a dataset's source splits: held-out validation rows, deterministic
subsets, and the raw samples with the content fingerprint of the embedding cache key."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from glai.data.readers.base import Subset, sha256_json
from glai.data.sources import SourceOpener
from glai.data.splits import check_class_ids
from glai.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["RawSplit", "drop_undecodable", "holdout_rows", "load_splits", "roles_for_family", "select_subset"]


_ROLE_SALT = {"train": 1, "val": 2, "pool": 3}


@dataclass
class RawSplit:
    """The samples of one role, before the backbone.

    Attributes:
        role: "train" | "val" | "pool".
        split: the source split they come from.
        samples: lazily indexed sequence; item i is a PIL image (modality "image") or a str ("text").
        labels: int64 [N] class ids, or None (unlabeled source or `label_column: null`).
        modality: "image" | "text".
        fingerprint: sha256 hex of the source's identity and the selected indices (cache key part).
        info: JSON-able description (source, split, sizes, subset) written into the cache manifest.
    """

    role: str
    split: str
    samples: Sequence
    labels: np.ndarray | None
    modality: str
    fingerprint: str
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

def roles_for_family(family: str) -> tuple[str, ...]:
    """Roles a family trains on (docs/method.md, Families, Family T): A, B and T `train` + `val`, C the episode `pool`.

    Raises:
        ValueError: for an unknown family.
    """
    if family in ("A", "B", "T"):
        return ("train", "val")
    if family == "C":
        return ("pool",)
    raise ValueError(f"experiment.family={family!r}: expected A, B, C or T")

def drop_undecodable(raw: RawSplit) -> tuple[RawSplit, list[str]]:
    """``dataset.on_bad_image=skip``: the split without the samples that fail to decode.

    Every sample is decoded once (only when its embeddings are computed, never for a cache hit); each failure
    is logged with its file or row.

    Returns:
        ``(raw without them, their descriptions)``; ``raw`` itself when every sample decodes.
    """
    samples = raw.samples
    if not isinstance(samples, Subset):
        return raw, []
    bad, reasons = [], []
    for i in range(len(samples)):
        try:
            samples[i]
        except DataError as err:
            bad.append(i)
            where = samples.table.describe(int(samples.indices[i]))
            reasons.append(where)
            cause = err.__cause__ or err
            # what happens: the sample is left out and the run goes on (the stop message's advice is not for here)
            log.warning("dataset.on_bad_image=skip: leaving out %s, which does not decode (%s: %s); training goes "
                        "on without it", where, type(cause).__name__, cause)
    if not bad:
        return raw, []
    keep = np.setdiff1d(np.arange(len(samples)), np.asarray(bad))
    labels = raw.labels[keep] if raw.labels is not None else None
    if len(keep) == 0:
        raise DataError(f"every sample of split {raw.split!r} failed to decode (first: {reasons[0]}). Fix: "
                        "dataset.path= images that open (PIL), or another dataset.format")
    return replace(raw, samples=Subset(samples.table, samples.indices[keep]), labels=labels), reasons

def holdout_rows(n: int, labels: np.ndarray | None, fraction: float, seed: int) -> np.ndarray:
    """The rows held out as validation when a dataset has no validation split: int64 indices into [0, n).

    Unlabelled: the first ``round(fraction * n)`` of a permutation seeded by ``seed``. Labelled: stratified,
    ``round(fraction * n_c)`` rows of each class c (at least one when the class has two or more rows), each
    from that class's own seeded permutation, so every class is in both parts.
    """
    rng = np.random.default_rng(seed)
    if labels is None:
        return rng.permutation(n)[: int(round(fraction * n))]
    out = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        k = int(round(fraction * len(rows)))
        if len(rows) >= 2:
            k = min(max(k, 1), len(rows) - 1)
        out.append(rows[rng.permutation(len(rows))[:k]])
    return np.sort(np.concatenate(out)).astype(np.int64) if out else np.zeros(0, dtype=np.int64)

def _check_holdout(dcfg, table, source: dict) -> None:
    """A validation part held out of the train split (``dataset.val_split: null``) needs two rows of every class:
    one to train on, one to validate on.

    Raises:
        DataError: naming the classes with fewer rows, how many each has, and the fix.
    """
    if not dcfg.use_labels or table.labels is None or not table.n:
        return
    ids, counts = np.unique(table.labels, return_counts=True)
    few = [(int(c), int(k)) for c, k in zip(ids, counts, strict=True) if k < 2]
    if few:
        names = getattr(table, "classes", None)
        shown = ", ".join(f"{names[c] if names is not None and c < len(names) else c!r}: {k} row"
                          for c, k in few[:8]) + (", ..." if len(few) > 8 else "")
        raise DataError(f"dataset {dcfg.name!r} ({source.get('path', source)}): validation is held out of every "
                        f"class (dataset.val_fraction={dcfg.val_fraction}), which needs >= 2 rows per class (one to "
                        f"train, one to validate), but {len(few)} classes have fewer ({shown}). Fix: add rows to "
                        "those classes or drop them, or give a validation split (dataset.val_split)")


def select_subset(
    indices: np.ndarray,
    labels: np.ndarray | None,
    max_per_class: int | None,
    max_n: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """A deterministic subset of `indices` (int64 [n]) in ascending order.

    `max_per_class` keeps a random `max_per_class` of every class (labels needed, else ignored), then
    `max_n` keeps a random `max_n` of what is left. Randomness comes only from `rng`.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if max_per_class is not None and labels is not None:
        keep = []
        for c in np.unique(labels[idx]):
            members = idx[labels[idx] == c]
            keep.append(rng.permutation(members)[:max_per_class])
        idx = np.sort(np.concatenate(keep)) if keep else idx
    if max_n is not None and len(idx) > max_n:
        idx = np.sort(rng.choice(idx, size=max_n, replace=False))
    return idx

def load_splits(
    dcfg,
    roles: Sequence[str],
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = ".cache/glai",
) -> dict[str, RawSplit]:
    """The raw samples of each role of `dcfg` (a `DatasetConfig` or composed `dataset` node).

    Roles map to `train_split`, `val_split`, `pool_split`. With `val_split: null`, val is a held-out
    `val_fraction` of the train split (a permutation seeded by `subset_seed`; train keeps the rest).
    Subsets (`max_per_class`, then `max_train` / `max_val` / `max_pool`) are drawn with
    `numpy.random.default_rng([subset_seed, role])`, independent of the run seed, so every head, seed and
    rho sees the same samples and shares one cache entry.

    Returns:
        {role: RawSplit} for each requested role.

    Raises:
        DatasetUnavailableError: the data needs a hub download while offline, or `dataset.path` is missing.
        ValueError: a role has no source split, or a column / split name does not exist.
    """
    from glai.data.config import check_dataset_config

    check_dataset_config(dcfg)
    if dcfg.modality not in ("image", "text"):
        raise ValueError(f"dataset.modality={dcfg.modality!r}: a backbone needs image or text samples")
    opener = SourceOpener(dcfg, data_root, cache_dir)
    source = opener.describe()
    split_of = {"train": dcfg.train_split, "val": dcfg.val_split, "pool": dcfg.pool_split}
    cap = {"train": dcfg.max_train, "val": dcfg.max_val, "pool": dcfg.max_pool}
    out: dict[str, RawSplit] = {}
    for role in roles:
        if role not in split_of:
            raise ValueError(f"unknown role {role!r}: expected train, val or pool")
        holdout = role == "val" and split_of["val"] is None
        split = split_of["train"] if holdout else split_of[role]
        if split is None:
            key = "train_split" if holdout else f"{role}_split"
            raise ValueError(f"dataset.{key} is null but the experiment needs a {role!r} split of {dcfg.name!r}")
        table = opener.open(split)
        indices = np.arange(table.n, dtype=np.int64)
        subset: dict[str, Any] = {"subset_seed": dcfg.subset_seed}
        if role in ("train", "val") and split_of["val"] is None:
            _check_holdout(dcfg, table, opener.describe())
            val_rows = holdout_rows(table.n, table.labels if dcfg.use_labels else None, dcfg.val_fraction,
                                    dcfg.subset_seed)
            indices = np.sort(val_rows if role == "val" else np.setdiff1d(indices, val_rows))
            subset["holdout"] = {"val_fraction": dcfg.val_fraction, "part": role,
                                 "stratified": bool(dcfg.use_labels and table.labels is not None)}
        rng = np.random.default_rng([dcfg.subset_seed, _ROLE_SALT[role]])
        indices = select_subset(indices, table.labels, dcfg.max_per_class, cap[role], rng)
        subset.update({"max_per_class": dcfg.max_per_class, "max_n": cap[role], "n": int(len(indices)),
                       "n_source": int(table.n)})
        if len(indices) == 0:
            raise DataError(f"dataset {dcfg.name!r}: its {role} rows (split {split!r} of {source}, {table.n} rows) are "
                            f"none after subsetting (dataset.max_per_class={dcfg.max_per_class}, "
                            f"max_{role}={cap[role]}). Fix: raise or drop those limits (=null)")
        labels = table.labels[indices] if table.labels is not None else None
        if labels is not None and dcfg.num_classes is not None and labels.max() >= dcfg.num_classes:
            raise DataError(f"dataset.num_classes={dcfg.num_classes} but split {split!r} of {source} has label "
                            f"{int(labels.max())}. Fix: dataset.num_classes={int(labels.max()) + 1}, or labels "
                            f"0..{dcfg.num_classes - 1}")
        content = {
            "source": source,
            "source_fingerprint": table.fingerprint,
            "split": split,
            "modality": table.modality,
            "indices_sha256": hashlib.sha256(indices.tobytes()).hexdigest(),
            "text": {"columns": list(dcfg.text_columns), "unit": dcfg.text_unit, "min_chars": dcfg.min_chars}
            if table.modality == "text" else None,
            "image": {"mode": dcfg.image_mode, "invert": dcfg.invert_images,
                      # skipped samples leave the embeddings: never the cache entry of a run that stops on them
                      **({"on_bad_image": "skip"} if dcfg.on_bad_image == "skip" else {})}
            if table.modality == "image" else None,
        }
        out[role] = RawSplit(
            role=role,
            split=split,
            samples=Subset(table, indices),
            labels=labels,
            modality=table.modality,
            fingerprint=sha256_json(content),
            info={**content, "subset": subset, "name": dcfg.name},
        )
        log.info("dataset %s role %s: split %s, %d of %d samples", dcfg.name, role, split, len(indices), table.n)
    if dcfg.use_labels and set(out) <= {"train", "val"}:
        # class ids instead of indices 0..K-1 are refused before any embedding is extracted
        check_class_ids([r.labels for r in out.values()], f"dataset '{dcfg.name}' ({source.get('path', source)})")
    return out
