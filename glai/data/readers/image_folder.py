"""Image folders ``<split>/<class>/*.jpg`` (or class folders without a split level), and ``.tar.gz`` archives
of them."""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import numpy as np

from glai.data.cache import sha256_file
from glai.data.readers.base import IMAGE_EXTENSIONS, Table, abs_path, sha256_json, to_pil

log = logging.getLogger(__name__)

__all__ = ["ImageFolderTable", "holds_images", "image_folder_root", "unpack_tar"]


class ImageFolderTable(Table):
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
        self.fingerprint = sha256_json(listing)

    def get(self, i: int):
        from PIL import Image

        # a file that fails to decode becomes a DataError naming it in Subset (describe)
        with Image.open(self.files[i]) as im:
            return to_pil(im, self.mode, self.invert)

    def describe(self, i: int) -> str:
        return f"image {self.files[i]}"

def unpack_tar(archive: Path, cache_dir: str | os.PathLike) -> Path:
    """Unpack `archive` once into `<cache_dir>/extracted/<stem>-<sha16>/`, atomically.

    The archive is extracted into a temporary sibling folder that is renamed into place, so an
    interrupted unpack never leaves a half-filled folder behind.

    Returns:
        The folder holding the archive's contents.
    """
    digest = sha256_file(archive)[:16]
    stem = archive.name.split(".")[0]
    dest = Path(abs_path(cache_dir)) / "extracted" / f"{stem}-{digest}"
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

def holds_images(folder: Path) -> bool:
    return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir() if f.is_file())

def image_folder_root(base: Path, split: str, split_level: bool = True) -> Path:
    """`base/<split>` or, for a single top-level folder in an archive, `base/<top>/<split>`; or `base` itself
    when it holds class folders of images and no split folder (the common layout of one's own data: a
    held-out validation part then comes from `val_fraction`)."""
    if (base / split).is_dir():
        return base / split
    subdirs = [d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(subdirs) == 1 and (subdirs[0] / split).is_dir():
        return subdirs[0] / split
    if not split_level and subdirs and any(holds_images(d) for d in subdirs):
        return base
    raise FileNotFoundError(
        f"split {split!r}: no folder {base / split} (found {sorted(d.name for d in subdirs)}); "
        "set dataset.train_split / val_split / pool_split"
    )
