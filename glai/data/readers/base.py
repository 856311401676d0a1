"""What every source reader shares: the table interface, lazy subsets, paths, labels, images and text filters."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glai.errors import DataError

__all__ = [
    "DatasetUnavailableError",
    "IMAGE_EXTENSIONS",
    "Subset",
    "Table",
    "abs_path",
    "apply_text_filter",
    "check_text_columns",
    "clean_labels",
    "filter_texts",
    "join_text",
    "keep_mask",
    "resolve_path",
    "sha256_json",
    "to_pil",
]


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

class DatasetUnavailableError(RuntimeError):
    """A dataset needs a download that cannot happen here (offline), or its local files are missing."""

def resolve_path(path: str | os.PathLike, root: str | os.PathLike | None) -> Path:
    """An absolute path: `~` expanded, relative paths taken relative to `root` (e.g. `data_root`)."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and root is not None:
        p = Path(abs_path(root)) / p
    return p.resolve()

def abs_path(path: str | os.PathLike) -> str:
    """Absolute path relative to the launch directory, also inside a Hydra run that changed the cwd."""
    try:
        from hydra.utils import to_absolute_path

        return to_absolute_path(str(path))
    except Exception:  # noqa: BLE001 - hydra absent or not initialised: the cwd is the launch dir
        return os.path.abspath(str(path))

def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()

class Table:
    """One source split. `get(i)` returns the sample (PIL image or str)."""

    n: int
    labels: np.ndarray | None
    fingerprint: str
    modality: str

    def get(self, i: int):
        raise NotImplementedError

    def describe(self, i: int) -> str:
        """Where sample ``i`` comes from, for error messages (a file, or a row of a split)."""
        return f"sample {i} of {type(self).__name__.strip('_')}"

    def texts(self) -> list[str]:
        return [self.get(i) for i in range(self.n)]

class Subset(Sequence):
    """Lazy view `table[indices]`."""

    def __init__(self, table: Table, indices: np.ndarray):
        self.table, self.indices = table, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        row = int(self.indices[i])
        try:
            return self.table.get(row)
        except DataError:
            raise
        except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
            raise DataError(f"cannot decode {self.table.describe(row)} ({type(err).__name__}: {err}); nothing "
                            "was trained: remove or replace it, or set dataset.on_bad_image=skip (embeddings "
                            "already cached are kept)") from err

def to_pil(image, mode: str, invert: bool):
    from PIL import Image, ImageOps

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    elif isinstance(image, dict) and ("bytes" in image or "path" in image):
        import io

        image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    if invert:
        image = ImageOps.invert(image.convert("L"))
    return image.convert(mode) if mode else image

def clean_labels(values) -> np.ndarray | None:
    if values is None:
        return None
    labels = np.asarray(values)
    if labels.dtype.kind not in "iub" or labels.size == 0 or (labels < 0).any():
        # unlabeled sources mark missing labels with -1 (e.g. STL-10 unlabeled)
        return None
    return labels.astype(np.int64)

def check_text_columns(dcfg, columns: list[str], where: str) -> None:
    """A text dataset's ``dataset.text_columns`` must name at least one column, each a column of ``where``.

    Raises:
        DataError: naming ``dataset.text_columns``, the columns there are and a fix.
    """
    given = list(dcfg.text_columns)
    missing = [c for c in given if c not in columns]
    if given and not missing:
        return
    text = [c for c in columns if c != dcfg.label_column]
    fix = f"dataset.text_columns=[{'text' if 'text' in text else (text[0] if text else '<the text column>')}]"
    if not given:
        raise DataError(f"dataset.text_columns=[]: a text dataset reads each row's text from these columns of "
                        f"{where} (its columns: {columns}). Fix: {fix}")
    raise DataError(f"dataset.text_columns: {missing} are not columns of {where} (its columns: {columns}). Fix: {fix}")


def join_text(parts) -> str:
    return " ".join(str(p).strip() for p in parts if p is not None and str(p).strip())

def keep_mask(texts: list[str], unit: str, min_chars: int) -> np.ndarray:
    """bool [N]: texts kept by `text_unit` ("paragraph" drops empty and `= Heading =` lines) and `min_chars`."""
    keep = np.ones(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        t = t.strip()
        if unit == "paragraph" and (not t or (t.startswith("=") and t.endswith("="))):
            keep[i] = False
        elif len(t) < max(min_chars, 1 if unit == "paragraph" else 0):
            keep[i] = False
    return keep

def filter_texts(texts: list[str], unit: str, min_chars: int) -> list[str]:
    keep = keep_mask(texts, unit, min_chars)
    return [t.strip() for t, k in zip(texts, keep) if k]

def apply_text_filter(texts: list[str], labels: np.ndarray | None, dcfg):
    if dcfg.text_unit == "row" and dcfg.min_chars <= 0:
        return texts, labels
    keep = keep_mask(texts, dcfg.text_unit, dcfg.min_chars)
    texts = [t.strip() for t, k in zip(texts, keep) if k]
    return texts, (labels[keep] if labels is not None else None)
