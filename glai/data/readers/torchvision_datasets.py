"""torchvision's dataset classes (``source: torchvision``): STL-10 and Omniglot, memoised where opening is costly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from glai.data.cache import memoised_json
from glai.data.readers.base import DatasetUnavailableError, Table, abs_path, clean_labels, sha256_json, to_pil
from glai.data.readers.hub import hub_offline, looks_offline
from glai.errors import DataError

__all__ = ["TorchvisionTable"]


class TorchvisionTable(Table):
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
            raise DataError(f"split {split!r} is not a split of torchvision's {name} (its splits: {list(splits)}). "
                            "Fix: dataset.train_split / val_split / pool_split")
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
        self.fingerprint = sha256_json({"torchvision": name, "split": split, "md5": files})

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
                if not download or looks_offline(exc):
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
            labels = clean_labels(self.ds.labels)
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
        key = sha256_json({"root": abs_path(self.root), "split": self.split, "files": stats,
                            "torchvision": torchvision.__version__})
        return Path(abs_path(cache_dir)) / "sources" / f"{self.name}-{self.split.replace('+', '_')}-{key[:16]}.json"

    def get(self, i: int):
        return to_pil(self.ds[int(i)][0], self.mode, self.invert)

    def describe(self, i: int) -> str:
        if self.name == "Omniglot":
            image, character = self.ds._flat_character_images[int(i)]
            return f"image {Path(self.ds.target_folder) / self.ds._characters[character] / image}"
        return f"image {i} of torchvision STL10 split {self.split!r}"
