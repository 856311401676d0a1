"""Errors shared by every package; a leaf module (imports nothing of glai), so any module can raise them."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config value is out of range or does not fit the data; the message names the key and how to fix it."""
