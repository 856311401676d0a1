"""Opening a dataset config's source splits: the format detected from ``dataset.path`` (or the hub), the split's
file found, the reader of ``glai.data.readers`` built and memoised."""

from __future__ import annotations

from pathlib import Path

from glai.data.readers.base import DatasetUnavailableError, Table, resolve_path
from glai.data.readers.frame import FrameTable
from glai.data.readers.hub import HFTable, load_hub_split
from glai.data.readers.image_folder import ImageFolderTable, image_folder_root, unpack_tar
from glai.data.readers.omniglot import OmniglotTable
from glai.data.readers.text_lines import TextLinesTable
from glai.data.readers.torchvision_datasets import TorchvisionTable
from glai.errors import DataError

__all__ = ["SourceOpener", "detect_format", "split_file"]


def detect_format(path: Path) -> str:
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
        raise DataError(f"dataset.path={path}: cannot infer the format from its name. Fix: dataset.format= csv, "
                        "parquet, imagefolder, tar_imagefolder, text_lines or omniglot_npz")
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

def split_file(path: Path, split: str, suffixes: tuple[str, ...]) -> Path:
    if path.is_file():
        return path
    for suffix in suffixes:
        for candidate in (path / f"{split}{suffix}", path / f"images_{split}{suffix}"):
            if candidate.exists():
                return candidate
    available = sorted(p.name for p in path.iterdir())
    raise DataError(
        f"split {split!r}: no {'/'.join(split + s for s in suffixes)} in {path} (found {available}). Fix: "
        f"dataset.train_split / val_split / pool_split, or dataset.path= the one file to read (validation is then "
        f"held out of it: dataset.val_split=null)"
    )

class SourceOpener:
    """Opens and memoises the source splits of one dataset config."""

    def __init__(self, dcfg, data_root, cache_dir):
        self.dcfg, self.data_root, self.cache_dir = dcfg, data_root, cache_dir
        self._tables: dict[str, Table] = {}
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
                "not exist. Fix: dataset.path= a local copy, or GLAI_DATA_ROOT / data_root= the folder that "
                "relative paths are taken from."
            )
        return self.dcfg.format if self.dcfg.format != "auto" else detect_format(path)

    def torchvision_root(self) -> Path:
        """The torchvision root of a ``source: torchvision`` dataset: ``dataset.path`` (relative to data_root),
        default ``<data_root>/torchvision``."""
        return resolve_path(self.dcfg.path or "torchvision", self.data_root)

    def open(self, split: str) -> Table:
        if split not in self._tables:
            self._tables[split] = self._open(split)
        return self._tables[split]

    def _open(self, split: str) -> Table:
        d = self.dcfg
        modality = d.modality
        if d.source == "torchvision":
            return TorchvisionTable(d, self.torchvision_root(), split, self.cache_dir)
        if d.path is None:
            if d.source == "local" or not d.hf_path:
                raise DatasetUnavailableError(
                    f"dataset {d.name!r} has neither dataset.path (local files) nor dataset.hf_path (HF hub id); "
                    "set dataset.path=/local/dir"
                )
            ds = load_hub_split(d, split)
            return HFTable(ds, d, modality)
        path = resolve_path(d.path, self.data_root)
        fmt = self.format
        if fmt == "disk":
            return HFTable(self._load_disk(path, split), d, modality)
        # class folders without a split level stand for the train split when val is held out of it
        no_split_level = d.val_split is None and split == d.train_split
        if fmt == "imagefolder":
            return ImageFolderTable(image_folder_root(path, split, split_level=not no_split_level), d)
        if fmt == "tar_imagefolder":
            archive = path if path.is_file() else split_file(path, "", (".tar.gz", ".tgz"))
            root = image_folder_root(unpack_tar(archive, self.cache_dir), split, split_level=not no_split_level)
            return ImageFolderTable(root, d)
        if fmt in ("csv", "parquet"):
            return FrameTable(split_file(path, split, (f".{fmt}",)), d, modality)
        if fmt == "text_lines":
            return TextLinesTable(split_file(path, split, (".txt", "")), d)
        if fmt == "omniglot_npz":
            return OmniglotTable(split_file(path, split, (".npz",)), d)
        raise ValueError(f"dataset.format={fmt!r}: unsupported")

    def _load_disk(self, path: Path, split: str):
        import datasets

        if self._disk is None:
            self._disk = datasets.load_from_disk(str(path))
        if isinstance(self._disk, datasets.DatasetDict):
            if split not in self._disk:
                raise DataError(
                    f"split {split!r} not in the save_to_disk folder {path} (splits {list(self._disk)}). Fix: "
                    "dataset.train_split / val_split / pool_split"
                )
            return self._disk[split]
        # a single saved Dataset serves every split name (use val_split: null to hold out val from it)
        return self._disk
