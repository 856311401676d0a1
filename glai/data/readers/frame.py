"""CSV and parquet files: text columns (joined) or an image column, and a label column (indices or class names)."""

from __future__ import annotations

import logging
from pathlib import Path

from glai.data.cache import sha256_file
from glai.data.readers.base import Table, apply_text_filter, clean_labels, join_text, to_pil

log = logging.getLogger(__name__)

__all__ = ["FrameTable"]


class FrameTable(Table):
    """A CSV or parquet file: text columns (joined) or an image column, and a label column."""

    def __init__(self, file: Path, dcfg, modality: str):
        import pandas as pd

        frame = pd.read_csv(file) if file.suffix == ".csv" else pd.read_parquet(file)
        self.modality, self.fingerprint = modality, sha256_file(file)
        label_column = dcfg.label_column
        self.classes = None
        if label_column in frame.columns:
            values = frame[label_column]
            if values.dtype.kind in "OSU":  # class names: codes in sorted order, the names kept
                if values.isna().any():
                    raise ValueError(f"dataset.label_column={label_column!r} of {file} has "
                                     f"{int(values.isna().sum())} empty labels; fill or drop those rows")
                self.classes = sorted(values.astype(str).unique())
                values = values.astype(str).map({c: k for k, c in enumerate(self.classes)})
            self.labels = clean_labels(values.to_numpy())
        else:
            self.labels = None
        if label_column is not None and label_column not in frame.columns:
            if dcfg.use_labels:
                raise ValueError(f"dataset.label_column={label_column!r} is not a column of {file}; its columns "
                                 f"are {list(frame.columns)}: set dataset.label_column=<one of them>")
            log.warning("dataset.label_column=%r not in %s: loading it unlabeled", label_column, file)
        if modality == "text":
            missing = [c for c in dcfg.text_columns if c not in frame.columns]
            if missing:
                raise ValueError(f"dataset.text_columns: {missing} not in {file}'s columns {list(frame.columns)}")
            cols = [frame[c].where(frame[c].notna(), None).tolist() for c in dcfg.text_columns]
            texts = [join_text(parts) for parts in zip(*cols)]
            self._texts, self.labels = apply_text_filter(texts, self.labels, dcfg)
            self.n = len(self._texts)
        else:
            self._images = frame[dcfg.image_column].tolist()
            self.mode, self.invert = dcfg.image_mode, dcfg.invert_images
            self.n = len(frame)

    def get(self, i: int):
        if self.modality == "text":
            return self._texts[i]
        return to_pil(self._images[i], self.mode, self.invert)

    def texts(self) -> list[str]:
        return list(self._texts)
