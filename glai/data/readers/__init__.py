"""One reader per kind of source (in the spirit of timm's ``data/readers/``): each is a :class:`Table`, one
source split that is indexable (``get(i)``: a PIL image or a str), with labels, a content fingerprint and
``describe(i)`` for error messages.

- :mod:`~glai.data.readers.hub`: HF ``datasets`` (the hub, ``save_to_disk`` folders) and the offline checks.
- :mod:`~glai.data.readers.image_folder`: ``<split>/<class>/*.jpg`` folders and ``.tar.gz`` archives of them.
- :mod:`~glai.data.readers.frame`: CSV and parquet files.
- :mod:`~glai.data.readers.text_lines`: text files, one sample per line or paragraph.
- :mod:`~glai.data.readers.omniglot`: Omniglot ``images_<split>.npz``.
- :mod:`~glai.data.readers.torchvision_datasets`: torchvision's STL-10 and Omniglot classes.

:mod:`glai.data.sources` picks the reader of a dataset config; :mod:`glai.data.roles` assembles the roles.
"""

from glai.data.readers.base import DatasetUnavailableError, Subset, Table

__all__ = ["DatasetUnavailableError", "Subset", "Table"]
