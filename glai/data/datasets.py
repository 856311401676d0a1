"""Raw samples (images or texts) of the datasets behind the experiments (SPEC 6-8).

A dataset config (`glai.data.config.DatasetConfig`) names a source: the HF hub through `datasets`
(`hf_path`, `hf_name`), or local files under `path`: a `save_to_disk` folder, an image folder
(`<split>/<class>/*.jpg`), `<split>.csv` / `<split>.parquet`, `<split>.txt` (one text per line),
Omniglot's `images_<split>.npz`, or a `.tar.gz` of an image folder (unpacked once into the cache dir).

`load_splits` maps the family's roles ("train", "val" or "pool") to source splits, applies the
deterministic subsets (`max_per_class`, `max_train`, `max_val`, `max_pool`, or a held-out `val_fraction`),
and returns lazily indexed samples with a content fingerprint for the embedding cache key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tarfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from glai.data.cache import memoised_json, sha256_file
from glai.errors import DataError

__all__ = [
    "DatasetUnavailableError",
    "drop_undecodable",
    "RawSplit",
    "load_splits",
    "resolve_path",
    "roles_for_family",
    "select_subset",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_ROLE_SALT = {"train": 1, "val": 2, "pool": 3}


class DatasetUnavailableError(RuntimeError):
    """A dataset needs a download that cannot happen here (offline), or its local files are missing."""


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
    """Roles a family trains on (SPEC 7): A and B `train` + `val`, C the episode `pool`.

    Raises:
        ValueError: for an unknown family.
    """
    if family in ("A", "B"):
        return ("train", "val")
    if family == "C":
        return ("pool",)
    raise ValueError(f"experiment.family={family!r}: expected A, B or C")


def resolve_path(path: str | os.PathLike, root: str | os.PathLike | None) -> Path:
    """An absolute path: `~` expanded, relative paths taken relative to `root` (e.g. `data_root`)."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and root is not None:
        p = Path(_abs(root)) / p
    return p.resolve()


def _abs(path: str | os.PathLike) -> str:
    """Absolute path relative to the launch directory, also inside a Hydra run that changed the cwd."""
    try:
        from hydra.utils import to_absolute_path

        return to_absolute_path(str(path))
    except Exception:  # noqa: BLE001 - hydra absent or not initialised: the cwd is the launch dir
        return os.path.abspath(str(path))


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Source tables: one split of a source, indexable, with labels and a fingerprint.


class _Table:
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


class _Subset(Sequence):
    """Lazy view `table[indices]`."""

    def __init__(self, table: _Table, indices: np.ndarray):
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


def drop_undecodable(raw: RawSplit) -> tuple[RawSplit, list[str]]:
    """``dataset.on_bad_image=skip``: the split without the samples that fail to decode.

    Every sample is decoded once (only when its embeddings are computed, never for a cache hit); each failure
    is logged with its file or row.

    Returns:
        ``(raw without them, their descriptions)``; ``raw`` itself when every sample decodes.
    """
    samples = raw.samples
    if not isinstance(samples, _Subset):
        return raw, []
    bad, reasons = [], []
    for i in range(len(samples)):
        try:
            samples[i]
        except DataError as err:
            bad.append(i)
            reasons.append(samples.table.describe(int(samples.indices[i])))
            log.warning("dataset.on_bad_image=skip: %s", err)
    if not bad:
        return raw, []
    keep = np.setdiff1d(np.arange(len(samples)), np.asarray(bad))
    labels = raw.labels[keep] if raw.labels is not None else None
    if len(keep) == 0:
        raise DataError(f"every sample of split {raw.split!r} failed to decode (first: {reasons[0]})")
    return replace(raw, samples=_Subset(samples.table, samples.indices[keep]), labels=labels), reasons


def _to_pil(image, mode: str, invert: bool):
    from PIL import Image, ImageOps

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    elif isinstance(image, dict) and ("bytes" in image or "path" in image):
        import io

        image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    if invert:
        image = ImageOps.invert(image.convert("L"))
    return image.convert(mode) if mode else image


def _clean_labels(values) -> np.ndarray | None:
    if values is None:
        return None
    labels = np.asarray(values)
    if labels.dtype.kind not in "iub" or labels.size == 0 or (labels < 0).any():
        # unlabeled sources mark missing labels with -1 (e.g. STL-10 unlabeled)
        return None
    return labels.astype(np.int64)


class _HFTable(_Table):
    """A `datasets.Dataset` (hub or `save_to_disk`)."""

    def __init__(self, ds, dcfg, modality: str):
        self.ds, self.modality = ds, modality
        self.image_column, self.mode, self.invert = dcfg.image_column, dcfg.image_mode, dcfg.invert_images
        label_column = dcfg.label_column
        self.labels = None
        if label_column is not None and label_column in ds.column_names:
            self.labels = _clean_labels(ds[label_column])
        elif label_column is not None and dcfg.use_labels:
            raise ValueError(f"dataset.label_column={label_column!r} is not a column of dataset {dcfg.name!r}; its "
                             f"columns are {ds.column_names}: set dataset.label_column=<one of them>")
        self.fingerprint = getattr(ds, "_fingerprint", None) or _sha256_json([ds.info.__dict__, len(ds)])
        if modality == "text":
            missing = [c for c in dcfg.text_columns if c not in ds.column_names]
            if missing:
                raise ValueError(f"dataset.text_columns: {missing} not in the dataset's columns {ds.column_names}")
            columns = [ds[c] for c in dcfg.text_columns]
            texts = [_join_text(parts) for parts in zip(*columns)]
            self._texts, self.labels = _apply_text_filter(texts, self.labels, dcfg)
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
        return _to_pil(self.ds[int(i)][self.image_column], self.mode, self.invert)

    def describe(self, i: int) -> str:
        return f"row {i} of {self.ds.info.dataset_name or 'the dataset'} split {str(self.ds.split)!r}"

    def texts(self) -> list[str]:
        return list(self._texts)


def _join_text(parts) -> str:
    return " ".join(str(p).strip() for p in parts if p is not None and str(p).strip())


class _ImageFolderTable(_Table):
    """`<root>/<class>/*.<ext>`: classes sorted by name, files sorted within a class."""

    modality = "image"

    def __init__(self, root: Path, dcfg):
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"no class folders in image folder {root} (expected <split>/<class>/*.jpg)")
        files, labels = [], []
        for c, name in enumerate(classes):
            for f in sorted((root / name).iterdir()):
                if f.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(f)
                    labels.append(c)
        self.root, self.files, self.classes = root, files, classes
        self.labels = np.asarray(labels, dtype=np.int64) if dcfg.label_column is not None else None
        self.n = len(files)
        self.mode, self.invert = dcfg.image_mode, dcfg.invert_images
        listing = [(str(f.relative_to(root)), f.stat().st_size) for f in files]
        self.fingerprint = _sha256_json(listing)

    def get(self, i: int):
        from PIL import Image

        # a file that fails to decode becomes a DataError naming it in _Subset (describe)
        with Image.open(self.files[i]) as im:
            return _to_pil(im, self.mode, self.invert)

    def describe(self, i: int) -> str:
        return f"image {self.files[i]}"


class _FrameTable(_Table):
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
            self.labels = _clean_labels(values.to_numpy())
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
            texts = [_join_text(parts) for parts in zip(*cols)]
            self._texts, self.labels = _apply_text_filter(texts, self.labels, dcfg)
            self.n = len(self._texts)
        else:
            self._images = frame[dcfg.image_column].tolist()
            self.mode, self.invert = dcfg.image_mode, dcfg.invert_images
            self.n = len(frame)

    def get(self, i: int):
        if self.modality == "text":
            return self._texts[i]
        return _to_pil(self._images[i], self.mode, self.invert)

    def texts(self) -> list[str]:
        return list(self._texts)


class _TextLinesTable(_Table):
    """A text file, one sample per line (`text_unit: row`) or per WikiText paragraph (`paragraph`)."""

    modality = "text"

    def __init__(self, file: Path, dcfg):
        lines = file.read_text(encoding="utf-8").splitlines()
        self._texts = _filter_texts(lines, dcfg.text_unit, dcfg.min_chars)
        self.labels, self.n, self.fingerprint = None, len(self._texts), sha256_file(file)

    def get(self, i: int):
        return self._texts[i]

    def texts(self) -> list[str]:
        return list(self._texts)


def _keep_mask(texts: list[str], unit: str, min_chars: int) -> np.ndarray:
    """bool [N]: texts kept by `text_unit` ("paragraph" drops empty and `= Heading =` lines) and `min_chars`."""
    keep = np.ones(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        t = t.strip()
        if unit == "paragraph" and (not t or (t.startswith("=") and t.endswith("="))):
            keep[i] = False
        elif len(t) < max(min_chars, 1 if unit == "paragraph" else 0):
            keep[i] = False
    return keep


def _filter_texts(texts: list[str], unit: str, min_chars: int) -> list[str]:
    keep = _keep_mask(texts, unit, min_chars)
    return [t.strip() for t, k in zip(texts, keep) if k]


def _apply_text_filter(texts: list[str], labels: np.ndarray | None, dcfg):
    if dcfg.text_unit == "row" and dcfg.min_chars <= 0:
        return texts, labels
    keep = _keep_mask(texts, dcfg.text_unit, dcfg.min_chars)
    texts = [t.strip() for t, k in zip(texts, keep) if k]
    return texts, (labels[keep] if labels is not None else None)


class _OmniglotTable(_Table):
    """Omniglot `images_<split>.npz`: `images` bool [C, 20, H, W] (True = background), `labels` [C, 20].

    Samples are grey images with white background and black strokes (the original PNGs' look); the array
    is decompressed once.
    """

    modality = "image"

    def __init__(self, file: Path, dcfg):
        with np.load(file) as z:
            images = z["images"]  # [C, 20, H, W] bool
            labels = z["labels"] if "labels" in z.files else np.repeat(np.arange(images.shape[0]), images.shape[1])
        self.images = images.reshape(-1, *images.shape[-2:])  # [N, H, W]
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if dcfg.label_column is None:
            self.labels = None
        self.n = self.images.shape[0]
        self.mode, self.invert = dcfg.image_mode, dcfg.invert_images
        self.fingerprint = sha256_file(file)

    def get(self, i: int):
        pixels = self.images[i].astype(np.uint8) * 255  # [H, W], background 255
        return _to_pil(pixels, self.mode, self.invert)


class _TorchvisionTable(_Table):
    """A split of a torchvision dataset class (``source: torchvision``): STL-10's binaries
    (``<root>/stl10_binary/``) or Omniglot's alphabets (``<root>/omniglot-py/images_<split>/``).

    torchvision checks the files' MD5 sums when it opens them, so the fingerprint is the class, the split and
    those sums (the published ones), not a hash of gigabytes.

    Opening STL-10 reads the whole split into memory (2.7 GB for ``unlabeled``) and, online, MD5-checks it. So
    what opening yields (the sample count and the labels) is memoised under ``<cache_dir>/sources/``, keyed by
    the root, the split and every STL-10 file's size and mtime (and the torchvision version); with a memo the
    dataset is opened only when a sample is read, i.e. when the embeddings are not cached yet. Omniglot opens
    by listing folders and needs no memo.
    """

    modality = "image"
    #: class -> its split names (Omniglot's stand for background=True / False)
    SPLITS = {
        "STL10": ("train", "test", "unlabeled", "train+unlabeled"),
        "Omniglot": ("background", "evaluation"),
    }

    def __init__(self, dcfg, root: Path, split: str, cache_dir: str | os.PathLike | None = None):
        import torchvision.datasets as tvd

        name = dcfg.torchvision_class
        splits = self.SPLITS[name]
        if split not in splits:
            raise FileNotFoundError(f"split {split!r} is not a split of torchvision's {name} (its splits: "
                                    f"{list(splits)}); set dataset.train_split / val_split / pool_split")
        self.cls = getattr(tvd, name)
        self.root, self.name, self.split = root, name, split
        self._ds = None
        opened = memoised_json(self._memo_path(cache_dir), self._open_source)
        self.n = int(opened["n"])
        self.labels = None if opened["labels"] is None else np.asarray(opened["labels"], dtype=np.int64)
        if dcfg.label_column is None:
            self.labels = None
        self.mode, self.invert = dcfg.image_mode, dcfg.invert_images
        if name == "STL10":
            files = self.cls.train_list + self.cls.test_list
        else:
            files = [[k, v] for k, v in self.cls.zips_md5.items()]
        self.fingerprint = _sha256_json({"torchvision": name, "split": split, "md5": files})

    @property
    def ds(self):
        """The torchvision dataset, opened on first use (downloaded into ``root`` when online and missing).

        Raises:
            DatasetUnavailableError: not under ``root`` and no download possible; names `make prefetch`.
        """
        if self._ds is None:
            kwargs = {"split": self.split} if self.name == "STL10" else {"background": self.split == "background"}
            download = not hub_offline()
            try:
                self._ds = self.cls(str(self.root), download=download, **kwargs)
            except Exception as exc:  # noqa: BLE001 - not there (RuntimeError) or no network (URLError, OSError)
                if not download or _looks_offline(exc):
                    raise DatasetUnavailableError(
                        f"torchvision's {self.name} (split {self.split!r}) is not under dataset.path="
                        f"{str(self.root)!r} and cannot be downloaded here (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE "
                        f"set, or no network). Fix: run `make prefetch EXP=<experiment>` on a machine with internet "
                        f"(it downloads into that folder), or set dataset.path to a folder holding torchvision's "
                        f"layout (cause: {type(exc).__name__}: {exc})") from exc
                raise
        return self._ds

    def _open_source(self) -> dict:
        """``{"n": samples, "labels": int class ids or None}`` of the opened dataset."""
        if self.name == "STL10":
            labels = _clean_labels(self.ds.labels)
        else:
            # (file, character) pairs in torchvision's order: the labels without opening 13,180 PNGs
            labels = np.asarray([c for _, c in self.ds._flat_character_images], dtype=np.int64)
        return {"n": len(self.ds), "labels": None if labels is None else labels.tolist()}

    def _memo_path(self, cache_dir) -> Path | None:
        """Where the STL-10 memo of this root and split lives; None for Omniglot, without a cache dir, or when a
        file is missing (then opening downloads it, or names the fix)."""
        if self.name != "STL10" or cache_dir is None:
            return None
        import torchvision

        folder = Path(self.root) / self.cls.base_folder
        stats = []
        for file, _ in self.cls.train_list + self.cls.test_list:
            try:
                st = (folder / file).stat()
            except OSError:
                return None
            stats.append([file, st.st_size, st.st_mtime_ns])
        key = _sha256_json({"root": _abs(self.root), "split": self.split, "files": stats,
                            "torchvision": torchvision.__version__})
        return Path(_abs(cache_dir)) / "sources" / f"{self.name}-{self.split.replace('+', '_')}-{key[:16]}.json"

    def get(self, i: int):
        return _to_pil(self.ds[int(i)][0], self.mode, self.invert)

    def describe(self, i: int) -> str:
        if self.name == "Omniglot":
            image, character = self.ds._flat_character_images[int(i)]
            return f"image {Path(self.ds.target_folder) / self.ds._characters[character] / image}"
        return f"image {i} of torchvision STL10 split {self.split!r}"


# ---------------------------------------------------------------------------------------------------
# Opening a source split.


def _offline_hint(what: str, key: str, download: str) -> str:
    return (
        f"{what} is not available offline and not in the local HF cache. Fix: on a machine with internet run "
        f"`make prefetch EXP=<experiment>` (it fills the HF cache that HF_HOME names; share it with this "
        f"machine), or point `{key}=/local/dir` at a local copy (relative paths are resolved against "
        f"data_root, i.e. GLAI_DATA_ROOT, default ../shared), e.g. made there with {download}."
    )


def _looks_offline(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _exc_chain(exc)}
    text = " ".join(str(e) for e in _exc_chain(exc)).lower()
    return bool(
        names
        & {"ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "ConnectTimeout", "ReadTimeout",
           "ConnectError", "MaxRetryError", "NewConnectionError", "TimeoutError", "gaierror"}
        or any(s in text for s in ("offline", "couldn't reach", "connection", "network", "resolve host",
                                   "name or service not known", "temporary failure in name resolution"))
    )


def _exc_chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set to a true value in the environment."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _load_hub_split(dcfg, split: str):
    import datasets

    download = (f"`datasets.load_dataset({dcfg.hf_path!r}{', ' + repr(dcfg.hf_name) if dcfg.hf_name else ''})"
                f".save_to_disk('{dcfg.name}')`")
    hint = _offline_hint(f"Dataset {dcfg.name!r} (HF hub {dcfg.hf_path!r}, split {split!r})", "dataset.path",
                         download)
    try:
        return datasets.load_dataset(dcfg.hf_path, dcfg.hf_name, split=split)
    except ValueError as exc:
        # the source is there but has no such split: datasets' message lists the ones it has
        if "unknown split" in str(exc).lower():
            raise ValueError(f"split {split!r} is not a split of dataset {dcfg.hf_path!r}"
                             f"{' (config ' + repr(dcfg.hf_name) + ')' if dcfg.hf_name else ''}: {exc} Set "
                             "dataset.train_split / val_split / pool_split to one of them") from exc
        if hub_offline() or _looks_offline(exc):
            raise DatasetUnavailableError(f"{hint} (cause: {type(exc).__name__}: {exc})") from exc
        raise
    except Exception as exc:  # noqa: BLE001 - any hub failure that looks like missing network
        if hub_offline() or _looks_offline(exc):
            raise DatasetUnavailableError(f"{hint} (cause: {type(exc).__name__}: {exc})") from exc
        raise


def _detect_format(path: Path) -> str:
    name = path.name.lower()
    if path.is_file():
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            return "tar_imagefolder"
        if name.endswith(".npz"):
            return "omniglot_npz"
        if name.endswith(".csv"):
            return "csv"
        if name.endswith(".parquet"):
            return "parquet"
        if name.endswith(".txt"):
            return "text_lines"
        raise ValueError(f"dataset.path={path}: cannot infer the format; set dataset.format")
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        return "disk"
    files = [p.name for p in path.iterdir()]
    if any(f.startswith("images_") and f.endswith(".npz") for f in files):
        return "omniglot_npz"
    for ext, fmt in ((".csv", "csv"), (".parquet", "parquet"), (".txt", "text_lines")):
        if any(f.endswith(ext) for f in files):
            return fmt
    if any(f.endswith((".tar.gz", ".tgz")) for f in files):
        return "tar_imagefolder"
    return "imagefolder"


def _split_file(path: Path, split: str, suffixes: tuple[str, ...]) -> Path:
    if path.is_file():
        return path
    for suffix in suffixes:
        for candidate in (path / f"{split}{suffix}", path / f"images_{split}{suffix}"):
            if candidate.exists():
                return candidate
    available = sorted(p.name for p in path.iterdir())
    raise FileNotFoundError(
        f"split {split!r}: no {'/'.join(split + s for s in suffixes)} in {path} (found {available}); "
        f"set dataset.train_split / val_split / pool_split"
    )


def unpack_tar(archive: Path, cache_dir: str | os.PathLike) -> Path:
    """Unpack `archive` once into `<cache_dir>/extracted/<stem>-<sha16>/`, atomically.

    The archive is extracted into a temporary sibling folder that is renamed into place, so an
    interrupted unpack never leaves a half-filled folder behind.

    Returns:
        The folder holding the archive's contents.
    """
    digest = sha256_file(archive)[:16]
    stem = archive.name.split(".")[0]
    dest = Path(_abs(cache_dir)) / "extracted" / f"{stem}-{digest}"
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    log.info("unpacking %s into %s (once)", archive, dest)
    try:
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(tmp, filter="data")
            except TypeError:  # Python without extraction filters
                tar.extractall(tmp)  # noqa: S202 - archive from the project's own data root
        (tmp / ".complete").write_text(archive.name)
        try:
            os.replace(tmp, dest)
        except OSError:
            # another process won the race (dest exists and is complete) or a stale dest without marker
            if not (dest / ".complete").exists():
                shutil.rmtree(dest, ignore_errors=True)
                os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _holds_images(folder: Path) -> bool:
    return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir() if f.is_file())


def _image_folder_root(base: Path, split: str, split_level: bool = True) -> Path:
    """`base/<split>` or, for a single top-level folder in an archive, `base/<top>/<split>`; or `base` itself
    when it holds class folders of images and no split folder (the common layout of one's own data: a
    held-out validation part then comes from `val_fraction`)."""
    if (base / split).is_dir():
        return base / split
    subdirs = [d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(subdirs) == 1 and (subdirs[0] / split).is_dir():
        return subdirs[0] / split
    if not split_level and subdirs and any(_holds_images(d) for d in subdirs):
        return base
    raise FileNotFoundError(
        f"split {split!r}: no folder {base / split} (found {sorted(d.name for d in subdirs)}); "
        "set dataset.train_split / val_split / pool_split"
    )


class _SourceOpener:
    """Opens and memoises the source splits of one dataset config."""

    def __init__(self, dcfg, data_root, cache_dir):
        self.dcfg, self.data_root, self.cache_dir = dcfg, data_root, cache_dir
        self._tables: dict[str, _Table] = {}
        self._disk = None

    def describe(self) -> dict:
        d = self.dcfg
        if d.source == "torchvision":
            return {"torchvision": d.torchvision_class, "root": str(self.torchvision_root())}
        if d.path is not None:
            return {"path": str(resolve_path(d.path, self.data_root)), "format": self.format}
        return {"hf_path": d.hf_path, "hf_name": d.hf_name}

    @property
    def format(self) -> str:
        if self.dcfg.path is None:
            return "hub"
        path = resolve_path(self.dcfg.path, self.data_root)
        if not path.exists():
            raise DatasetUnavailableError(
                f"dataset.path={self.dcfg.path!r} of dataset {self.dcfg.name!r} resolves to {path}, which does "
                "not exist. Set dataset.path to a local copy, or GLAI_DATA_ROOT / data_root to the folder that "
                "relative paths are taken from."
            )
        return self.dcfg.format if self.dcfg.format != "auto" else _detect_format(path)

    def torchvision_root(self) -> Path:
        """The torchvision root of a ``source: torchvision`` dataset: ``dataset.path`` (relative to data_root),
        default ``<data_root>/torchvision``."""
        return resolve_path(self.dcfg.path or "torchvision", self.data_root)

    def open(self, split: str) -> _Table:
        if split not in self._tables:
            self._tables[split] = self._open(split)
        return self._tables[split]

    def _open(self, split: str) -> _Table:
        d = self.dcfg
        modality = d.modality
        if d.source == "torchvision":
            return _TorchvisionTable(d, self.torchvision_root(), split, self.cache_dir)
        if d.path is None:
            if d.source == "local" or not d.hf_path:
                raise DatasetUnavailableError(
                    f"dataset {d.name!r} has neither dataset.path (local files) nor dataset.hf_path (HF hub id); "
                    "set dataset.path=/local/dir"
                )
            ds = _load_hub_split(d, split)
            return _HFTable(ds, d, modality)
        path = resolve_path(d.path, self.data_root)
        fmt = self.format
        if fmt == "disk":
            return _HFTable(self._load_disk(path, split), d, modality)
        # class folders without a split level stand for the train split when val is held out of it
        no_split_level = d.val_split is None and split == d.train_split
        if fmt == "imagefolder":
            return _ImageFolderTable(_image_folder_root(path, split, split_level=not no_split_level), d)
        if fmt == "tar_imagefolder":
            archive = path if path.is_file() else _split_file(path, "", (".tar.gz", ".tgz"))
            root = _image_folder_root(unpack_tar(archive, self.cache_dir), split, split_level=not no_split_level)
            return _ImageFolderTable(root, d)
        if fmt in ("csv", "parquet"):
            return _FrameTable(_split_file(path, split, (f".{fmt}",)), d, modality)
        if fmt == "text_lines":
            return _TextLinesTable(_split_file(path, split, (".txt", "")), d)
        if fmt == "omniglot_npz":
            return _OmniglotTable(_split_file(path, split, (".npz",)), d)
        raise ValueError(f"dataset.format={fmt!r}: unsupported")

    def _load_disk(self, path: Path, split: str):
        import datasets

        if self._disk is None:
            self._disk = datasets.load_from_disk(str(path))
        if isinstance(self._disk, datasets.DatasetDict):
            if split not in self._disk:
                raise FileNotFoundError(
                    f"split {split!r} not in the save_to_disk folder {path} (splits {list(self._disk)}); "
                    "set dataset.train_split / val_split / pool_split"
                )
            return self._disk[split]
        # a single saved Dataset serves every split name (use val_split: null to hold out val from it)
        return self._disk


# ---------------------------------------------------------------------------------------------------
# Deterministic subsets.


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
    opener = _SourceOpener(dcfg, data_root, cache_dir)
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
            raise ValueError(f"dataset {dcfg.name!r} role {role!r} (split {split!r}) is empty after subsetting")
        labels = table.labels[indices] if table.labels is not None else None
        if labels is not None and dcfg.num_classes is not None and labels.max() >= dcfg.num_classes:
            raise ValueError(
                f"dataset.num_classes={dcfg.num_classes} but split {split!r} has label {int(labels.max())}"
            )
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
            samples=_Subset(table, indices),
            labels=labels,
            modality=table.modality,
            fingerprint=_sha256_json(content),
            info={**content, "subset": subset, "name": dcfg.name},
        )
        log.info("dataset %s role %s: split %s, %d of %d samples", dcfg.name, role, split, len(indices), table.n)
    return out
