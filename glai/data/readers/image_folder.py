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

from glai.data.cache import cache_folder, sha256_file
from glai.data.readers.base import IMAGE_EXTENSIONS, Table, abs_path, sha256_json, to_pil
from glai.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["ImageFolderTable", "holds_images", "image_folder_root", "unpack_tar"]


class ImageFolderTable(Table):
    """`<root>/<class>/*.<ext>`: classes sorted by name, files sorted within a class."""

    modality = "image"

    def __init__(self, root: Path, dcfg):
        if not root.is_dir():
            raise DataError(f"dataset.path={root} is a file, not a folder of class folders (<dir>/<class>/*.jpg). "
                            "Fix: dataset.path= the folder, or dataset.format= the file's format (csv, parquet, "
                            "tar_imagefolder)")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            loose = sum(1 for f in root.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            raise DataError(f"no class folders in image folder {root}" + (
                f" ({loose} images lie in it directly)" if loose else "") + ". Fix: one sub-folder per class, "
                "<dir>/<class>/*.jpg (a train/ level is optional)")
        files, labels, empty, nested = [], [], [], []
        for c, name in enumerate(classes):
            found = 0
            for f in sorted((root / name).iterdir()):
                if f.is_dir():
                    nested += [p for p in f.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS]
                elif f.suffix.lower() in IMAGE_EXTENSIONS:
                    if not f.exists():  # a symbolic link whose target is gone
                        raise DataError(f"{f} is a broken link (its target {os.path.realpath(f)} does not exist). "
                                        "Fix: remove it or restore its target")
                    files.append(f)
                    labels.append(c)
                    found += 1
            if not found:
                empty.append(name)
        if empty:
            raise DataError(f"class folders {empty} of {root} hold no images ({', '.join(IMAGE_EXTENSIONS)}): a class "
                            "without a sample. Fix: add images or remove those folders")
        if nested:
            # the reader takes <class>/*.jpg only: say what it leaves out and where, never drop it silently
            log.warning("image folder %s: %d images in sub-folders of class folders are left out (e.g. %s); "
                        "move them up to <class>/ to use them", root, len(nested), nested[0])
        self.skipped_nested = len(nested)
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
    cache_folder(dest.parent)
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
    if not base.is_dir():
        raise DataError(f"dataset.path={base} is a file, not a folder of class folders (<dir>/<class>/*.jpg). "
                        "Fix: dataset.path= the folder, or dataset.format= the file's format (csv, parquet, "
                        "tar_imagefolder)")
    if (base / split).is_dir():
        return base / split
    subdirs = [d for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(subdirs) == 1 and (subdirs[0] / split).is_dir():
        return subdirs[0] / split
    if not split_level and subdirs and any(holds_images(d) for d in subdirs):
        return base
    if not subdirs:
        loose = sum(1 for f in base.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        raise DataError(f"no class folders in image folder {base}" + (
            f" ({loose} images lie in it directly)" if loose else "") + ". Fix: one sub-folder per class, "
            "<dir>/<class>/*.jpg (a train/ level is optional)")
    raise DataError(
        f"split {split!r}: no folder {base / split} (found {sorted(d.name for d in subdirs)}). Fix: "
        "dataset.train_split / val_split / pool_split, or, for class folders without a split level, "
        "dataset.val_split=null (validation is then held out of them)"
    )
