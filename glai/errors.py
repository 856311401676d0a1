"""Errors shared by every package; a leaf module (imports nothing of glai), so any module can raise them."""

from __future__ import annotations

__all__ = ["ConfigError", "DataError", "RecordWriteError"]


class ConfigError(ValueError):
    """A config value is out of range or does not fit the data; the message names the key and how to fix it."""


class DataError(ValueError):
    """The data cannot be trained on (non-finite embeddings, ...); the message names the split and the fix."""


class RecordWriteError(OSError):
    """A run record cannot be written; the message names ``results_dir`` and where the record was saved."""
