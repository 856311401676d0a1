"""HF ``datasets`` sources: the hub (``dataset.hf_path``) and ``save_to_disk`` folders, and the offline checks."""

from __future__ import annotations

import os

from glai.data.readers.base import (
    DatasetUnavailableError,
    Table,
    apply_text_filter,
    check_text_columns,
    clean_labels,
    join_text,
    sha256_json,
    to_pil,
)

__all__ = ["HFTable", "exc_chain", "hub_offline", "load_hub_split", "looks_offline", "offline_hint"]


class HFTable(Table):
    """A `datasets.Dataset` (hub or `save_to_disk`)."""

    def __init__(self, ds, dcfg, modality: str):
        self.ds, self.modality = ds, modality
        self.image_column, self.mode, self.invert = dcfg.image_column, dcfg.image_mode, dcfg.invert_images
        label_column = dcfg.label_column
        self.labels = None
        if label_column is not None and label_column in ds.column_names:
            self.labels = clean_labels(ds[label_column])
        elif label_column is not None and dcfg.use_labels:
            raise ValueError(f"dataset.label_column={label_column!r} is not a column of dataset {dcfg.name!r}; its "
                             f"columns are {ds.column_names}: set dataset.label_column=<one of them>")
        self.fingerprint = getattr(ds, "_fingerprint", None) or sha256_json([ds.info.__dict__, len(ds)])
        if modality == "text":
            check_text_columns(dcfg, list(ds.column_names), f"dataset {dcfg.name!r}")
            columns = [ds[c] for c in dcfg.text_columns]
            texts = [join_text(parts) for parts in zip(*columns)]
            self._texts, self.labels = apply_text_filter(texts, self.labels, dcfg)
            self.n = len(self._texts)
        else:
            if self.image_column not in ds.column_names:
                raise ValueError(
                    f"dataset.image_column={self.image_column!r} not in the dataset's columns {ds.column_names}"
                )
            self.n = len(ds)

    def get(self, i: int):
        if self.modality == "text":
            return self._texts[i]
        return to_pil(self.ds[int(i)][self.image_column], self.mode, self.invert)

    def describe(self, i: int) -> str:
        return f"row {i} of {self.ds.info.dataset_name or 'the dataset'} split {str(self.ds.split)!r}"

    def texts(self) -> list[str]:
        return list(self._texts)

def offline_hint(what: str, key: str, download: str) -> str:
    return (
        f"{what} is not available offline and not in the local HF cache. Fix: on a machine with internet run "
        f"`make prefetch EXP=<experiment>` (it fills the HF cache that HF_HOME names; share it with this "
        f"machine), or point `{key}=/local/dir` at a local copy (relative paths are resolved against "
        f"data_root, i.e. GLAI_DATA_ROOT), e.g. made there with {download}."
    )

def looks_offline(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in exc_chain(exc)}
    text = " ".join(str(e) for e in exc_chain(exc)).lower()
    return bool(
        names
        & {"ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectTimeout", "ReadTimeout",
           "ConnectError", "MaxRetryError", "NewConnectionError", "TimeoutError", "gaierror"}
        or any(s in text for s in ("offline", "couldn't reach", "connection", "network", "resolve host",
                                   "name or service not known", "temporary failure in name resolution"))
    )

def exc_chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__

def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set to a true value in the environment."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))

def load_hub_split(dcfg, split: str):
    import datasets

    download = (f"`datasets.load_dataset({dcfg.hf_path!r}{', ' + repr(dcfg.hf_name) if dcfg.hf_name else ''})"
                f".save_to_disk('{dcfg.name}')`")
    hint = offline_hint(f"Dataset {dcfg.name!r} (HF hub {dcfg.hf_path!r}, split {split!r})", "dataset.path",
                         download)
    try:
        return datasets.load_dataset(dcfg.hf_path, dcfg.hf_name, split=split)
    except ValueError as exc:
        # the source is there but has no such split: datasets' message lists the ones it has
        if "unknown split" in str(exc).lower():
            raise ValueError(f"split {split!r} is not a split of dataset {dcfg.hf_path!r}"
                             f"{' (config ' + repr(dcfg.hf_name) + ')' if dcfg.hf_name else ''}: {exc} Set "
                             "dataset.train_split / val_split / pool_split to one of them") from exc
        if hub_offline() or looks_offline(exc):
            raise DatasetUnavailableError(f"{hint} (cause: {type(exc).__name__}: {exc})") from exc
        raise
    except Exception as exc:  # noqa: BLE001 - any hub failure that looks like missing network
        if hub_offline() or looks_offline(exc):
            raise DatasetUnavailableError(f"{hint} (cause: {type(exc).__name__}: {exc})") from exc
        raise
