"""Omniglot's ``images_<split>.npz`` arrays (the local stand-in's format)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glai.data.cache import sha256_file
from glai.data.readers.base import Table, to_pil

__all__ = ["OmniglotTable"]


class OmniglotTable(Table):
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
        return to_pil(pixels, self.mode, self.invert)
