"""Raw samples (images or texts) of the datasets behind the experiments (docs/method.md, Families): the public
entry points.

A dataset config (`glai.data.config.DatasetConfig`) names a source: the HF hub through `datasets`
(`hf_path`, `hf_name`), or local files under `path`: a `save_to_disk` folder, an image folder
(`<split>/<class>/*.jpg`), `<split>.csv` / `<split>.parquet`, `<split>.txt` (one text per line),
Omniglot's `images_<split>.npz`, or a `.tar.gz` of an image folder (unpacked once into the cache dir).

`load_splits` maps the family's roles ("train", "val" or "pool") to source splits, applies the
deterministic subsets (`max_per_class`, `max_train`, `max_val`, `max_pool`, or a held-out `val_fraction`),
and returns lazily indexed samples with a content fingerprint for the embedding cache key.

Where the code lives: one reader per source in :mod:`glai.data.readers`, the choice of reader in
:mod:`glai.data.sources`, the roles and subsets in :mod:`glai.data.roles`.
"""

from glai.data.readers.base import DatasetUnavailableError, resolve_path
from glai.data.readers.hub import hub_offline
from glai.data.readers.image_folder import unpack_tar
from glai.data.roles import RawSplit, drop_undecodable, holdout_rows, load_splits, roles_for_family, select_subset

__all__ = [
    "DatasetUnavailableError",
    "RawSplit",
    "drop_undecodable",
    "holdout_rows",
    "hub_offline",
    "load_splits",
    "resolve_path",
    "roles_for_family",
    "select_subset",
    "unpack_tar",
]
