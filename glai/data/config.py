"""Structured schemas of the `dataset` and `backbone` config groups (docs/method.md, Families;
docs/configuration.md).

Every field has a default so that the minimal group files validate:
`conf/dataset/digits.yaml` = `{name: digits, source: sklearn_digits, val_fraction: 0.2}` and
`conf/backbone/none.yaml` = `{name: none}`.

Splits are named by *role*: `train` and `val` for families A and B, `pool` for family C (the held-out
classes episodes are drawn from). Each role maps to a split of the source (`train_split`, `val_split`,
`pool_split`): a hub split name, or, for local files under `path`, the stem of a file or folder
(`<path>/<split>.csv`, `<path>/<split>/<class>/*.jpg`, `<path>/images_<split>.npz`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from glai.errors import ConfigError

DATASET_SOURCES = ("sklearn_digits", "hf", "local", "torchvision")
#: torchvision dataset classes a `source: torchvision` dataset can name (where the hub has no canonical copy)
TORCHVISION_DATASETS = ("STL10", "Omniglot")
ON_BAD_IMAGE = ("stop", "skip")
LOCAL_FORMATS = ("auto", "disk", "imagefolder", "csv", "parquet", "text_lines", "omniglot_npz", "tar_imagefolder")
MODALITIES = ("vector", "image", "text")
TEXT_UNITS = ("row", "paragraph")
BACKBONE_LIBRARIES = ("none", "timm", "transformers", "torchvision")
POOLINGS = ("default", "cls", "mean", "last", "avg", "pre_logits")
DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass
class DatasetConfig:
    """Where a dataset's samples come from and which subset of them is used.

    Attributes:
        name: short id, used in cache keys and run records.
        source: "sklearn_digits" (built-in vectors, no backbone), "hf" (HF `datasets`; the hub id
            `hf_path` unless `path` is set, then local files), "local" (local files only), "torchvision"
            (the class `torchvision_class` with its root at `path`, downloaded there when online).
        modality: "vector" | "image" | "text": what the backbone receives.
        hf_path: HF hub dataset id, e.g. "fancyzhx/dbpedia_14".
        hf_name: HF dataset config name, e.g. "wikitext-2-raw-v1".
        path: local root (folder or file), overriding the hub: a `save_to_disk` folder, an image folder,
            a folder of `<split>.csv|.parquet|.txt`, an Omniglot `images_<split>.npz` folder, or a
            `.tar.gz` of an image folder (unpacked once into the cache dir). Relative paths are taken
            relative to `data_root`.
        format: local format, "auto" infers it from `path` (see `LOCAL_FORMATS`).
        torchvision_class: `source: torchvision` only: "STL10" (splits train, test, unlabeled) or "Omniglot"
            (splits background, evaluation: `Omniglot(background=False)` is the evaluation alphabets).
        train_split: source split for the `train` role (None: the role is not used).
        val_split: source split for the `val` role; None holds out `val_fraction` of train instead.
        pool_split: source split for the `pool` role (family C).
        val_fraction: fraction of train held out as val when `val_split` is None (0 < f < 1).
        image_column: image column of HF / save_to_disk / parquet datasets.
        text_columns: text columns, joined with ". " (e.g. AG News title + description).
        label_column: label column; None for unlabeled data.
        use_labels: False drops labels (family B, self-supervised).
        text_unit: "row" keeps every text row as one sample; "paragraph" keeps non-empty lines that are not
            WikiText `= Heading =` lines (for `text_lines` files and line-per-row hub sets like WikiText).
        min_chars: drop texts shorter than this many characters (paragraph filtering; 0 keeps all).
        max_train: keep at most this many train samples (deterministic, seeded by `subset_seed`).
        max_val: same for val.
        max_pool: same for pool.
        max_per_class: keep at most this many samples per class in every role (labelled data only).
        num_classes: number of classes (informational; checked against labels when set).
        subset_seed: seed of every subset / holdout choice (independent of the run seed, so all heads,
            seeds and rho values share one cache entry).
        on_bad_image: an image that fails to decode: "stop" (the error names the file) or "skip" (the
            sample is left out, each one logged with its file, and the count stored with the embeddings).
        image_mode: PIL mode images are converted to before the transform ("RGB").
        invert_images: invert binary images (Omniglot strokes are stored True = background).
    """

    name: str = "digits"
    source: str = "sklearn_digits"
    modality: str = "vector"
    hf_path: Optional[str] = None
    hf_name: Optional[str] = None
    path: Optional[str] = None
    format: str = "auto"
    train_split: Optional[str] = "train"
    val_split: Optional[str] = None
    pool_split: Optional[str] = None
    val_fraction: float = 0.2
    image_column: str = "image"
    text_columns: list[str] = field(default_factory=lambda: ["text"])
    label_column: Optional[str] = "label"
    use_labels: bool = True
    text_unit: str = "row"
    # characters
    min_chars: int = 0
    # samples
    max_train: Optional[int] = None
    # samples
    max_val: Optional[int] = None
    # samples
    max_pool: Optional[int] = None
    # samples per class
    max_per_class: Optional[int] = None
    num_classes: Optional[int] = None
    subset_seed: int = 0
    # digits: seed its train/val split with subset_seed (true: one split for every run seed, so a tuning split
    # carved from train never meets another seed's validation rows) or with the run seed (false, the first rule)
    fixed_split: bool = False
    image_mode: str = "RGB"
    invert_images: bool = False
    torchvision_class: Optional[str] = None
    on_bad_image: str = "stop"

    def __post_init__(self) -> None:
        check_dataset_config(self)


@dataclass
class BackboneConfig:
    """A frozen feature extractor (docs/method.md, Families: the backbones).

    Attributes:
        name: short id, used in cache keys and run records ("none": inputs are already vectors).
        library: "none" | "timm" | "transformers" | "torchvision".
        model_id: timm model name, HF hub model id, or torchvision builder name ("mobilenet_v2").
        path: local weights, overriding the hub: a `save_pretrained` folder (transformers; for timm a
            folder with `model.safetensors` / `pytorch_model.bin`) or a checkpoint file (safetensors
            state dict). Relative paths are taken relative to `data_root`.
        pooling: "default" (per model: cls for RoBERTa / DeiT, last for GPT-2 / XLNet, avg for CNNs) |
            "cls" | "mean" (over the attention mask / tokens) | "last" (last non-pad token) |
            "avg" (global average of `forward_features`) | "pre_logits" (timm `forward_head(pre_logits)`).
        embed_dim: expected embedding width (checked after the first batch when set).
        max_length: text truncation, in tokens.
        batch_size: extraction batch size, in samples.
        input_size: image side in pixels, overriding the model's eval transform (None keeps it).
        mean: per-channel normalisation mean, overriding the model's (None keeps it).
        std: per-channel normalisation std, overriding the model's (None keeps it).
        crop_pct: centre-crop fraction, overriding the model's (None keeps it).
        dtype: "auto" (bf16 autocast on a GPU that supports it, else fp16 on GPU, fp32 on CPU) | "fp32"
            | "bf16" | "fp16". Embeddings are always stored as float32.
        device: "auto" (cuda when available) | "cpu" | "cuda" | "cuda:N".
        num_workers: DataLoader workers for preprocessing (0: in-process).
        num_threads: CPU threads of the extraction (`torch.set_num_threads`, restored afterwards); None
            keeps torch's default. On a shared, busy machine 1 thread can be several times faster than
            2 oversubscribed ones.
    """

    name: str = "none"
    library: str = "none"
    model_id: Optional[str] = None
    path: Optional[str] = None
    pooling: str = "default"
    embed_dim: Optional[int] = None
    # tokens
    max_length: int = 128
    # samples
    batch_size: int = 64
    # pixels
    input_size: Optional[int] = None
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    crop_pct: Optional[float] = None
    dtype: str = "auto"
    device: str = "auto"
    num_workers: int = 0
    num_threads: Optional[int] = None

    def __post_init__(self) -> None:
        check_backbone_config(self)


def _check_choice(group: str, key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{group}.{key}={value!r}: expected one of {tuple(choices)}. "
                          f"Fix: {group}.{key}={next(iter(choices))}")


def check_dataset_config(d) -> None:
    """Range checks of a `DatasetConfig` or a composed `dataset` DictConfig node.

    Hydra does not run `__post_init__` when it merges yaml values into the schema, so the loaders call
    this before any work starts.

    Raises:
        ConfigError: naming the key, the accepted values and a fix.
    """
    _check_choice("dataset", "source", d.source, DATASET_SOURCES)
    _check_choice("dataset", "format", d.format, LOCAL_FORMATS)
    _check_choice("dataset", "modality", d.modality, MODALITIES)
    _check_choice("dataset", "text_unit", d.text_unit, TEXT_UNITS)
    _check_choice("dataset", "on_bad_image", d.on_bad_image, ON_BAD_IMAGE)
    if d.source == "torchvision":
        _check_choice("dataset", "torchvision_class", d.torchvision_class, TORCHVISION_DATASETS)
    if not 0.0 < d.val_fraction < 1.0:
        raise ConfigError(f"dataset.val_fraction={d.val_fraction}: expected 0 < val_fraction < 1. "
                          "Fix: dataset.val_fraction=0.2")
    for key in ("max_train", "max_val", "max_pool", "max_per_class"):
        value = getattr(d, key)
        if value is not None and value < 1:
            raise ConfigError(f"dataset.{key}={value}: expected a positive sample count or null (all samples). "
                              f"Fix: dataset.{key}=null")


def check_backbone_config(b) -> None:
    """Range checks of a `BackboneConfig` or a composed `backbone` DictConfig node.

    Raises:
        ConfigError: naming the key, the accepted values and a fix.
    """
    _check_choice("backbone", "library", b.library, BACKBONE_LIBRARIES)
    _check_choice("backbone", "pooling", b.pooling, POOLINGS)
    _check_choice("backbone", "dtype", b.dtype, DTYPES)
    for key, valid in (("max_length", 512), ("batch_size", 32)):
        if getattr(b, key) < 1:
            raise ConfigError(f"backbone.{key}={getattr(b, key)}: expected >= 1. Fix: backbone.{key}={valid}")
    for key in ("mean", "std"):
        value = getattr(b, key)
        if value is not None and len(value) not in (1, 3):
            raise ConfigError(f"backbone.{key}={list(value)}: expected 1 or 3 per-channel values. "
                              f"Fix: backbone.{key}=null (the model's own)")
