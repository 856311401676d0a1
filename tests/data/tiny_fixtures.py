"""Tiny offline backbones and datasets in the real on-disk formats, and Hydra overrides that use them.

Importable from other test folders (repo root on sys.path, as `python -m pytest` gives):

    from tests.data.tiny_fixtures import build_tiny_assets, tiny_experiment_overrides
    assets = build_tiny_assets(tmp_path)          # a few seconds, a few MB
    overrides = tiny_experiment_overrides("offline/C1", assets) + ["head=glai"]
    subprocess.run([sys.executable, "run.py", *overrides], check=True)

Everything is made here, nothing is downloaded: a timm `test_efficientnet` (pretrained=False) saved as a
safetensors checkpoint, tiny BERT and GPT-2 models with a WordLevel tokenizer saved with `save_pretrained`,
a 6-class image folder, CSV / parquet / `save_to_disk` text sets, an Omniglot-like npz and a tar.gz.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

N_CLASSES = 6
PER_CLASS = 16  # per split: enough for 4-way 5-shot 10-query and 5-way 4-shot 6-query episodes
IMAGE_SIZE = 32
EFFNET_DIM = 256  # test_efficientnet's forward_features width
TEXT_DIM = 32  # hidden size of the tiny BERT / GPT-2
SPLITS = ("train", "val", "pool")
WORDS = [
    ["red", "apple", "cherry", "rose", "fire", "ruby"],
    ["blue", "ocean", "sky", "whale", "river", "ice"],
    ["green", "grass", "leaf", "frog", "forest", "moss"],
    ["yellow", "sun", "lemon", "gold", "banana", "sand"],
    ["black", "night", "coal", "crow", "ink", "shadow"],
    ["white", "snow", "cloud", "milk", "salt", "pearl"],
]


@dataclass
class TinyAssets:
    """Paths of the tiny fixtures (all under `root`, which doubles as `data_root`)."""

    root: Path
    images: Path  # image folder: <split>/<class>/*.png
    images_tar: Path  # the same folder as a .tar.gz
    text_csv: Path  # <split>.csv with label, text
    text_parquet: Path  # <split>.parquet with label, text
    text_disk: Path  # save_to_disk DatasetDict with label, text
    lines: Path  # <split>.txt, WikiText-like paragraphs and headings
    omniglot: Path  # images_background.npz, images_evaluation.npz
    effnet: Path  # timm test_efficientnet safetensors state dict (num_classes=0)
    bert: Path  # save_pretrained folder (BertModel + PreTrainedTokenizerFast)
    gpt2: Path  # save_pretrained folder (GPT2Model + PreTrainedTokenizerFast)
    cache: Path  # embedding cache dir for the tests


def _sentence(rng: np.random.Generator, c: int) -> str:
    own = rng.choice(WORDS[c], size=rng.integers(4, 9))
    noise = rng.choice([w for ws in WORDS for w in ws], size=rng.integers(1, 3))
    words = list(own) + list(noise)
    rng.shuffle(words)
    return " ".join(words)


def _make_images(root: Path, rng: np.random.Generator) -> None:
    from PIL import Image

    palette = rng.integers(0, 256, size=(N_CLASSES, 3))
    for split in SPLITS:
        for c in range(N_CLASSES):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(PER_CLASS):
                noise = rng.integers(-40, 41, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
                pixels = np.clip(palette[c] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def _make_text(assets_root: Path, rng: np.random.Generator) -> tuple[Path, Path, Path, dict]:
    import datasets
    import pandas as pd

    frames = {}
    for split in SPLITS:
        rows = [(c, _sentence(rng, c)) for c in range(N_CLASSES) for _ in range(PER_CLASS)]
        order = rng.permutation(len(rows))
        frames[split] = pd.DataFrame([rows[i] for i in order], columns=["label", "text"])
    csv, parquet, disk = (assets_root / "data" / n for n in ("tiny_text_csv", "tiny_text_parquet", "tiny_text_disk"))
    csv.mkdir(parents=True)
    parquet.mkdir(parents=True)
    for split, frame in frames.items():
        frame.to_csv(csv / f"{split}.csv", index=False)
        frame.to_parquet(parquet / f"{split}.parquet", index=False)
    datasets.DatasetDict(
        {s: datasets.Dataset.from_pandas(f, preserve_index=False) for s, f in frames.items()}
    ).save_to_disk(str(disk))
    return csv, parquet, disk, frames


def _make_lines(folder: Path, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    for split in ("train", "val"):
        lines = []
        for section in range(4):
            lines += [" ", f" = Section {section} = ", " "]
            lines += [" " + ". ".join(_sentence(rng, int(rng.integers(N_CLASSES))) for _ in range(3)) + " ."
                      for _ in range(6)]
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")


def _make_omniglot(folder: Path, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True)
    for split, n_chars in (("background", 4), ("evaluation", N_CLASSES)):
        images = np.ones((n_chars, 20, 28, 28), dtype=bool)  # True = background
        for c in range(n_chars):
            for d in range(20):
                r = (c * 4 + int(rng.integers(0, 3))) % 24
                images[c, d, r:r + 4, 2:26] = False  # a horizontal stroke per character
                images[c, d, 2:26, (c * 3 + d % 2) % 24] = False
        labels = np.repeat(np.arange(n_chars)[:, None], 20, axis=1)
        np.savez_compressed(folder / f"images_{split}.npz", images=images, labels=labels)


def _make_tokenizer(vocab_words: list[str], kind: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<|endoftext|>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(vocab_words)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]"), len(vocab)
    # GPT-2 style: no pad token (the backbone falls back to eos), no special tokens added
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>"), len(vocab)


def _make_text_models(weights: Path) -> tuple[Path, Path]:
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

    words = [w for ws in WORDS for w in ws] + ["Section", "=", "."] + [str(i) for i in range(10)]
    torch.manual_seed(0)
    bert_dir, gpt2_dir = weights / "tiny_bert", weights / "tiny_gpt2"
    tok, n_vocab = _make_tokenizer(words, "bert")
    BertModel(BertConfig(vocab_size=n_vocab, hidden_size=TEXT_DIM, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(bert_dir)
    tok.save_pretrained(bert_dir)
    tok, n_vocab = _make_tokenizer(words, "gpt2")
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    GPT2Model(GPT2Config(vocab_size=n_vocab, n_embd=TEXT_DIM, n_layer=1, n_head=2, n_positions=64,
                         bos_token_id=eos, eos_token_id=eos)).save_pretrained(gpt2_dir)
    tok.save_pretrained(gpt2_dir)
    return bert_dir, gpt2_dir


def build_tiny_assets(root: str | Path) -> TinyAssets:
    """Write every tiny fixture under `root` (a fresh folder) and return their paths. A few seconds."""
    import timm
    import torch
    from safetensors.torch import save_file

    root = Path(root)
    rng = np.random.default_rng(0)
    images = root / "data" / "tiny_images"
    _make_images(images, rng)
    images_tar = root / "data" / "tiny_images.tar.gz"
    with tarfile.open(images_tar, "w:gz") as tar:
        for split in SPLITS:
            tar.add(images / split, arcname=split)
    csv, parquet, disk, _ = _make_text(root, rng)
    lines = root / "data" / "tiny_lines"
    _make_lines(lines, rng)
    omniglot = root / "data" / "tiny_omniglot"
    _make_omniglot(omniglot, rng)
    weights = root / "weights"
    weights.mkdir(parents=True)
    torch.manual_seed(0)
    effnet = weights / "tiny_effnet.safetensors"
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(effnet))
    bert, gpt2 = _make_text_models(weights)
    return TinyAssets(root=root, images=images, images_tar=images_tar, text_csv=csv, text_parquet=parquet,
                      text_disk=disk, lines=lines, omniglot=omniglot, effnet=effnet, bert=bert, gpt2=gpt2,
                      cache=root / "cache")


def tiny_backbone(kind: str, assets: TinyAssets) -> dict:
    """BackboneConfig fields of a tiny backbone: "effnet" (image, 256-d), "bert" (cls, 32-d), "gpt2" (last)."""
    if kind == "effnet":
        return {"name": "tiny_effnet", "library": "timm", "model_id": "test_efficientnet", "path": str(assets.effnet),
                "pooling": "avg", "embed_dim": EFFNET_DIM, "input_size": IMAGE_SIZE, "crop_pct": 1.0,
                "batch_size": 32}
    if kind == "bert":
        return {"name": "tiny_bert", "library": "transformers", "path": str(assets.bert), "pooling": "cls",
                "embed_dim": TEXT_DIM, "max_length": 32, "batch_size": 16}
    if kind == "gpt2":
        return {"name": "tiny_gpt2", "library": "transformers", "path": str(assets.gpt2), "pooling": "last",
                "embed_dim": TEXT_DIM, "max_length": 32, "batch_size": 16}
    raise ValueError(kind)


def tiny_dataset(kind: str, assets: TinyAssets, use_labels: bool = True) -> dict:
    """DatasetConfig fields of a tiny dataset: "images" (image folder) or "text" (CSV), splits train/val/pool."""
    common = {"source": "local", "train_split": "train", "val_split": "val", "pool_split": "pool",
              "label_column": "label", "use_labels": use_labels}
    if kind == "images":
        return {"name": "tiny_images", "modality": "image", "path": str(assets.images), "format": "imagefolder",
                **common}
    if kind == "text":
        return {"name": "tiny_text", "modality": "text", "path": str(assets.text_csv), "format": "csv",
                "text_columns": ["text"], **common}
    raise ValueError(kind)


def _override_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def group_overrides(group: str, values: dict) -> list[str]:
    """`group.field=value` for every field of the group's schema: `values` where given, else the default.

    Setting every field resets whatever the experiment file set (e.g. subset sizes of a stand-in).
    """
    from glai.data.config import BackboneConfig, DatasetConfig

    schema = {"dataset": DatasetConfig, "backbone": BackboneConfig}[group]
    defaults = schema()
    unknown = set(values) - {f.name for f in fields(schema)}
    if unknown:
        raise KeyError(f"{group}: unknown fields {sorted(unknown)}")
    return [f"{group}.{f.name}={_override_value(values.get(f.name, getattr(defaults, f.name)))}"
            for f in fields(schema)]


_MODALITY = {"A1": "image", "B1": "image", "C1": "image", "A2": "text", "B2": "text", "C2": "text"}
_FAMILY = {"A": (6,), "B": (8,), "C": ()}


def tiny_experiment_overrides(experiment: str, assets: TinyAssets, fast: bool = True) -> list[str]:
    """Hydra overrides running `experiment` (e.g. "A1", "offline/C2") on the tiny fixtures.

    The experiment keeps its family and protocol; its dataset and backbone become the tiny ones of the
    same modality (A1/B1/C1: image folder + timm test_efficientnet; A2/C2: CSV text + tiny BERT; B2: CSV
    text + tiny GPT-2), `experiment.arch` is resized to the tiny widths, and data_root / cache_dir point
    into `assets.root`. With `fast`, epochs are capped so a run takes seconds.

    Returns:
        A list of override strings for `compose(overrides=...)` or `run.py` arguments.
    """
    paper = experiment.split("/")[-1]
    family = {"A": "A", "B": "B", "C": "C"}[paper[0]]
    modality = _MODALITY[paper]
    backbone = tiny_backbone("effnet" if modality == "image" else ("gpt2" if paper == "B2" else "bert"), assets)
    dataset = tiny_dataset("images" if modality == "image" else "text", assets, use_labels=family != "B")
    dim = backbone["embed_dim"]
    out = [f"experiment={experiment}"]
    out += group_overrides("dataset", dataset) + group_overrides("backbone", backbone)
    if family == "C":
        n_way = 5 if paper == "C1" else 4
        out += [f"experiment.arch=[{dim},16,{n_way}]"]
    else:
        out += [f"experiment.arch=[{dim},16,{_FAMILY[family][0]}]"]
    out += [f"data_root={_override_value(str(assets.root))}", f"cache_dir={_override_value(str(assets.cache))}"]
    if fast:
        out += ["experiment.max_epochs=3", "experiment.reduced_epochs_mode=fixed",
                "experiment.reduced_epochs=1", "experiment.patience=2"]
    return out
