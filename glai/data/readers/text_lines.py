"""Text files: one sample per line, or per WikiText paragraph."""

from __future__ import annotations

from pathlib import Path

from glai.data.cache import sha256_file
from glai.data.readers.base import Table, filter_texts

__all__ = ["TextLinesTable"]


class TextLinesTable(Table):
    """A text file, one sample per line (`text_unit: row`) or per WikiText paragraph (`paragraph`)."""

    modality = "text"

    def __init__(self, file: Path, dcfg):
        lines = file.read_text(encoding="utf-8").splitlines()
        self._texts = filter_texts(lines, dcfg.text_unit, dcfg.min_chars)
        self.labels, self.n, self.fingerprint = None, len(self._texts), sha256_file(file)

    def get(self, i: int):
        return self._texts[i]

    def texts(self) -> list[str]:
        return list(self._texts)
