"""CSV and parquet files: text columns (joined) or an image column, and a label column (indices or class names)."""

from __future__ import annotations

import logging
from pathlib import Path

from glai.data.cache import sha256_file
from glai.data.readers.base import Table, apply_text_filter, check_text_columns, clean_labels, join_text, to_pil
from glai.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["FrameTable", "read_frame"]


def _rows(file: Path, bad) -> str:
    """Where the rows of the boolean Series ``bad`` are: CSV line numbers (the header is line 1) or parquet rows."""
    where = [int(i) for i in bad[bad].index[:5]]
    if file.suffix == ".csv":
        return "lines " + ", ".join(str(i + 2) for i in where) + (", ..." if int(bad.sum()) > 5 else "")
    return "rows " + ", ".join(str(i) for i in where) + (", ..." if int(bad.sum()) > 5 else "")


def read_frame(file: Path):
    """``file`` (a CSV or parquet file) as a DataFrame with at least one row.

    Raises:
        DataError: the file is not the format its name says (binary, not UTF-8, malformed), is empty, or has a
            header and no rows; the message names the file and what to give instead.
    """
    import pandas as pd

    fmt = "CSV" if file.suffix == ".csv" else "parquet"
    try:
        frame = pd.read_csv(file) if file.suffix == ".csv" else pd.read_parquet(file)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{file} is empty ({err}). Fix: dataset.path= a {fmt} file with a header row and one row "
                        "per sample") from err
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError, OSError) as err:
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        kind = "UTF-8 text, comma-separated, a header row" if fmt == "CSV" else "Apache Parquet"
        raise DataError(f"{file} cannot be read as {fmt} ({type(err).__name__}: {detail}). Fix: dataset.path= a "
                        f"{fmt} file ({kind}), or dataset.format= the file's format") from err
    if len(frame) == 0:
        raise DataError(f"{file} has a header ({', '.join(map(str, frame.columns))}) and no rows. Fix: dataset.path= "
                        "a file with one row per sample")
    return frame


class FrameTable(Table):
    """A CSV or parquet file: text columns (joined) or an image column, and a label column.

    Raises:
        DataError: naming the key, the file and its CSV lines: empty or negative labels, fractional labels, a
            missing label or text column, or rows whose text columns are all empty (unless ``dataset.min_chars``
            or ``text_unit: paragraph`` leaves them out).
    """

    def __init__(self, file: Path, dcfg, modality: str):
        import pandas as pd

        frame = read_frame(file)
        self.modality, self.fingerprint = modality, sha256_file(file)
        label_column = dcfg.label_column
        self.classes = None
        if label_column in frame.columns:
            values = frame[label_column]
            if values.isna().any() and dcfg.use_labels:
                raise DataError(f"dataset.label_column={label_column!r} of {file} has {int(values.isna().sum())} "
                                f"empty labels ({_rows(file, values.isna())}). Fix: fill or drop those rows")
            if values.dtype.kind == "f" and not values.isna().any() and (values == values.round()).all():
                values = values.astype("int64")  # 1.0, 2.0, ...: integer class ids written as floats
            if values.dtype.kind == "i" and (values < 0).any() and dcfg.use_labels:
                # a negative label marks an unlabelled row in some sources: here it would unlabel the whole file
                ids = sorted(int(v) for v in values.unique())
                raise DataError(f"dataset.label_column={label_column!r} of {file} holds the label {int(values.min())} "
                                f"({_rows(file, values < 0)}); class labels are indices 0..K-1 or class names. Fix: "
                                f"write its labels {ids[:6]} as 0..{len(ids) - 1} in the same order, or as class "
                                "names")
            if values.dtype.kind in "OSU":  # class names: codes in sorted order, the names kept
                self.classes = sorted(values.astype(str).unique())
                values = values.astype(str).map({c: k for k, c in enumerate(self.classes)})
            elif values.dtype.kind == "f" and dcfg.use_labels:
                raise DataError(f"dataset.label_column={label_column!r} of {file} holds fractional numbers (e.g. "
                                f"{values[values != values.round()].iloc[0]!r}), not class labels. Fix: class "
                                "names or integer class ids 0..K-1 in that column, or another dataset.label_column")
            self.labels = clean_labels(values.to_numpy())
        else:
            self.labels = None
        if label_column is not None and label_column not in frame.columns:
            if dcfg.use_labels:
                raise DataError(f"dataset.label_column={label_column!r} is not a column of {file}; its columns "
                                f"are {list(frame.columns)}. Fix: dataset.label_column=<one of them>")
            log.warning("dataset.label_column=%r not in %s: loading it unlabeled", label_column, file)
        if modality == "text":
            check_text_columns(dcfg, list(frame.columns), str(file))
            # empty cells leave the joined text; as objects, since a float column (all cells empty) keeps NaN
            cols = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in dcfg.text_columns]
            texts = [join_text(parts) for parts in zip(*cols)]
            empty = pd.Series([not t for t in texts], index=frame.index)
            if empty.any() and dcfg.text_unit == "row" and dcfg.min_chars <= 0:
                # an empty text embeds as the backbone's empty input: a row that says nothing about its label
                raise DataError(f"dataset.text_columns={list(dcfg.text_columns)} of {file} are empty on "
                                f"{int(empty.sum())} of {len(texts)} rows ({_rows(file, empty)}). Fix: fill or drop "
                                "those rows, or dataset.min_chars=1 to leave them out")
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
