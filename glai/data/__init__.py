"""Data plumbing: datasets, frozen backbones, the embedding cache, and their config schemas.

:func:`glai.data.loading.load_data` is the entry point: the splits a family needs, as
:class:`glai.data.splits.EmbeddingSplit` (embedded once per backbone and dataset, then cached).
"""

from glai.data.loading import load_data, load_digits
from glai.data.splits import EmbeddingSplit, check_splits

__all__ = ["EmbeddingSplit", "check_splits", "load_data", "load_digits"]
