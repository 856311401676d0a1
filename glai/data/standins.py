"""The offline stand-ins: each local file tree that a shipped config reads under ``data_root``, the public source
it is cut from, and the builder that cuts it.

A dataset or backbone config whose ``path`` is relative (``conf/dataset/dbpedia14_local.yaml``:
``path: data/dbpedia14``) reads local files under ``data_root`` (``GLAI_DATA_ROOT``), so a run needs no network.
Every such path is one :class:`StandIn` of :data:`STANDINS`: where it comes from (a Hugging Face hub repository,
a torchvision dataset or weights), how it is cut (rows per class, splits, seed) and :meth:`StandIn.build`, which
writes exactly the layout the config reads. ``scripts/prefetch.py`` (``make prefetch EXP=...``) calls it, on a
machine with internet, for the stand-ins of one experiment that are missing; docs/running.md lists them.

A builder reads its source through the source's own client (``datasets.load_dataset``, ``huggingface_hub``,
``timm``, ``torchvision``). ``sources`` maps a source id to a local copy in that source's own format (a clone of
the hub repository, a torchvision root, a weights file), read in place of the download: how the tests build every
stand-in offline, and how a user with such a copy does.

A stand-in is written into a temporary sibling and renamed into place, so an interrupted build leaves nothing
that a run could mistake for the stand-in.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tarfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["STANDINS", "SEED", "StandIn", "build_standin", "standin_for"]

#: the seed of every row draw (``numpy.random.default_rng(SEED)``), so a rebuilt stand-in is the same on any machine
SEED = 0

Sources = Mapping[str, "str | os.PathLike"]
#: sources read through a torchvision dataset class, whose root is a folder the class downloads into
TORCHVISION_DATASETS = ("torchvision:Omniglot", "torchvision:CIFAR10")


@dataclass(frozen=True)
class StandIn:
    """One local stand-in: a file or folder under ``data_root`` and how to rebuild it from its public source.

    Attributes:
        path: the path under ``data_root``, spelt as the configs' ``path`` keys spell it.
        source: the public source's id in its client's terms (a hub repository, ``torchvision:<class>``).
        url: where a reader finds the source.
        cut: how the stand-in is cut from the source (splits, rows per class, seed, format).
        configs: the shipped config files that read it (``conf/<group>/<name>.yaml``).
        builder: writes the stand-in into a new folder or file (its first argument), reading the source from
            the local copy its second argument names (None: download it).
    """

    path: str
    source: str
    url: str
    cut: str
    configs: tuple[str, ...]
    builder: Callable[[Path, Path | None], None]

    def build(self, data_root: str | os.PathLike, sources: Sources | None = None) -> Path:
        """Write the stand-in under ``data_root``, replacing nothing: an existing copy is left as it is.

        Args:
            data_root: the folder the configs' relative paths are resolved against (``GLAI_DATA_ROOT``).
            sources: source id -> a local copy in the source's own format, read instead of downloading.

        Returns:
            The stand-in's path, ``data_root / path``.

        Raises:
            Exception: what the source's client raises when it cannot read the source (no network, a wrong
                copy); nothing is left under ``data_root`` then.
        """
        dest = Path(data_root).expanduser().resolve() / self.path
        if dest.exists():
            return dest
        local = (sources or {}).get(self.source)
        if local is None and self.source in TORCHVISION_DATASETS:
            # torchvision downloads into the root that the `source: torchvision` configs read (dataset=omniglot)
            local = Path(data_root).expanduser().resolve() / "torchvision"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.builder(tmp, None if local is None else Path(local).expanduser())
            os.replace(tmp, dest)
        finally:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp.exists():
                tmp.unlink()
        return dest


def _hub_split(repo: str, local: Path | None, split: str, name: str | None = None):
    """One split of a hub dataset, from the hub or from a local clone of its repository (the same reader)."""
    import datasets

    return datasets.load_dataset(str(local) if local is not None else repo, name, split=split)


def _draw_per_class(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [<= per_class * K]: ``per_class`` rows of every class drawn without replacement (all rows of a
    smaller class), in a random order."""
    picked = [rng.choice(np.flatnonzero(labels == c), size=min(per_class, int((labels == c).sum())), replace=False)
              for c in np.unique(labels)]
    return rng.permutation(np.concatenate(picked))


def _write_csv(file: Path, header: list[str], rows) -> None:
    with open(file, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _write_classes(folder: Path, ds, column: str = "label") -> None:
    """``classes.txt``: the ClassLabel names in label order, one a line."""
    (folder / "classes.txt").write_text("\n".join(ds.features[column].names) + "\n", encoding="utf-8")


def _dbpedia14(dest: Path, local: Path | None) -> None:
    repo = "fancyzhx/dbpedia_14"
    rng = np.random.default_rng(SEED)
    dest.mkdir()
    train = _hub_split(repo, local, "train")
    test = _hub_split(repo, local, "test")
    picked = {"train": train.select(_draw_per_class(np.asarray(train["label"]), 1_000, rng)),
              "test": test.select(rng.permutation(len(test))[:4_900])}
    for split, rows in picked.items():
        _write_csv(dest / f"{split}.csv", ["label", "text"],
                   ((label, text.strip()) for label, text in zip(rows["label"], rows["content"])))
    _write_classes(dest, train)


def _ag_news(dest: Path, local: Path | None) -> None:
    dest.mkdir()
    test = _hub_split("fancyzhx/ag_news", local, "test")
    # the hub's text is the title and the description joined by a space; the local config joins [title, text]
    # with a space too, so an empty title gives the same string
    _write_csv(dest / "test.csv", ["label", "title", "text"], ((row["label"], "", row["text"]) for row in test))
    _write_classes(dest, test)


def _wikitext2(dest: Path, local: Path | None) -> None:
    dest.mkdir()
    for split, file in (("validation", "valid.txt"), ("test", "test.txt")):
        lines = _hub_split("Salesforce/wikitext", local, split, name="wikitext-2-v1")["text"]
        # one hub row per line of the original file (its line break kept in the row, or none for a blank line)
        (dest / file).write_text("".join(line.rstrip("\n") + "\n" for line in lines), encoding="utf-8")


def _omniglot(dest: Path, local: Path | None) -> None:
    import torchvision.datasets as tvd
    from PIL import Image

    root = local  # torchvision's root: it downloads the zips there unless they are there already
    dest.mkdir()
    ranges = []
    for split in ("background", "evaluation"):
        tvd.Omniglot(str(root), background=split == "background", download=True)
        folder = root / "omniglot-py" / f"images_{split}"
        characters = []  # (global character id, alphabet, [20 png files by drawer])
        for alphabet in sorted(p for p in folder.iterdir() if p.is_dir()):
            for char_dir in (p for p in alphabet.iterdir() if p.is_dir()):
                pngs = sorted(char_dir.glob("*.png"), key=lambda p: int(p.stem.split("_")[1]))
                characters.append((int(pngs[0].stem.split("_")[0]), alphabet.name, pngs))
        characters.sort()
        # bool [C, drawers, H, W], True = background (white), the array layout OmniglotTable reads
        images = np.stack([np.stack([np.asarray(Image.open(p).convert("L")) > 127 for p in pngs])
                           for _, _, pngs in characters])
        labels = np.repeat(np.arange(len(characters))[:, None], images.shape[1], axis=1)
        np.savez_compressed(dest / f"images_{split}.npz", images=images, labels=labels)
        for alphabet in dict.fromkeys(a for _, a, _ in characters):
            ids = [i for i, a, _ in characters if a == alphabet]
            ranges.append((split, alphabet, ids[0], ids[-1], len(ids)))
    _write_csv(dest / "alphabet_ranges.csv", ["set", "alphabet", "first_char_id", "last_char_id", "n_chars"], ranges)


def _cifar10(dest: Path, local: Path | None) -> None:
    import torchvision.datasets as tvd
    from PIL import Image

    root = local  # torchvision's root: it downloads the batches there unless they are there already
    with tarfile.open(dest, "w:gz") as tar:
        for split in ("train", "test"):
            ds = tvd.CIFAR10(str(root), train=split == "train", download=True)
            counts = dict.fromkeys(ds.classes, 0)
            for pixels, label in zip(ds.data, ds.targets):  # uint8 [32, 32, 3], int
                name = ds.classes[label]
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)
                info = tarfile.TarInfo(f"{split}/{name}/{counts[name]:04d}.jpg")
                info.size = buffer.tell()
                buffer.seek(0)
                tar.addfile(info, buffer)
                counts[name] += 1


#: the files of the hub repository sentence-transformers/all-MiniLM-L6-v2 that a run reads or that describe it
#: (its other exports, ONNX, OpenVINO, TF, Rust, are left out)
MINILM_FILES = ("config.json", "config_sentence_transformers.json", "data_config.json", "modules.json",
                "sentence_bert_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
                "vocab.txt", "model.safetensors", "README.md", "LICENSE", "1_Pooling/config.json")


def _minilm(dest: Path, local: Path | None) -> None:
    if local is None:
        from huggingface_hub import snapshot_download

        snapshot_download("sentence-transformers/all-MiniLM-L6-v2", allow_patterns=list(MINILM_FILES),
                          local_dir=str(dest))
        shutil.rmtree(dest / ".cache", ignore_errors=True)
        return
    dest.mkdir()
    for name in MINILM_FILES:
        if (local / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local / name, dest / name)


def _timm_weights(model_id: str) -> Callable[[Path, Path | None], None]:
    def build(dest: Path, local: Path | None) -> None:
        import timm
        from safetensors.torch import save_file

        overlay = None if local is None else {"file": str(local)}
        model = timm.create_model(model_id, pretrained=True, pretrained_cfg_overlay=overlay)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(dest))

    return build


def _torchvision_mobilenet_v2(dest: Path, local: Path | None) -> None:
    import torch
    import torchvision
    from safetensors.torch import save_file

    if local is None:
        model = torchvision.models.mobilenet_v2(weights="IMAGENET1K_V1")
    else:
        model = torchvision.models.mobilenet_v2()
        model.load_state_dict(torch.load(local, map_location="cpu", weights_only=True), strict=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(dest))


STANDINS: tuple[StandIn, ...] = (
    StandIn("data/dbpedia14", "fancyzhx/dbpedia_14", "https://huggingface.co/datasets/fancyzhx/dbpedia_14",
            "train.csv: 1,000 rows of every class of the train split (14,000); test.csv: 4,900 rows of the test "
            "split drawn uniformly; columns label, text (the hub's content); classes.txt; seed 0",
            ("conf/dataset/dbpedia14_local.yaml",), _dbpedia14),
    StandIn("data/ag_news", "fancyzhx/ag_news", "https://huggingface.co/datasets/fancyzhx/ag_news",
            "test.csv: the whole test split (7,600 rows, 1,900 per class); columns label, title (empty), text "
            "(the hub's title and description); classes.txt",
            ("conf/dataset/ag_news_local.yaml",), _ag_news),
    StandIn("data/wikitext2", "Salesforce/wikitext", "https://huggingface.co/datasets/Salesforce/wikitext",
            "config wikitext-2-v1 (the tokens version): valid.txt = the validation split, test.txt = the test "
            "split, one hub row a line",
            ("conf/dataset/wikitext2_local.yaml",), _wikitext2),
    StandIn("data/omniglot", "torchvision:Omniglot", "https://github.com/brendenlake/omniglot",
            "torchvision's Omniglot, both sets complete: images_background.npz (964 characters x 20 drawers) and "
            "images_evaluation.npz (659 x 20), bool [C, 20, 105, 105] with True = background, characters in "
            "the order of their ids; alphabet_ranges.csv",
            ("conf/dataset/omniglot_local.yaml",), _omniglot),
    StandIn("data/cifar10/cifar10_jpg.tar.gz", "torchvision:CIFAR10", "https://www.cs.toronto.edu/~kriz/cifar.html",
            "torchvision's CIFAR-10, all 60,000 images as JPEG (quality 75): train/<class>/NNNN.jpg (50,000) and "
            "test/<class>/NNNN.jpg (10,000), numbered per class in the batches' order, one .tar.gz",
            ("conf/dataset/cifar10.yaml",), _cifar10),
    StandIn("weights/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2",
            "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
            "the hub repository's PyTorch files (safetensors weights, tokenizer, sentence-transformers configs)",
            ("conf/backbone/minilm.yaml",), _minilm),
    StandIn("weights/tf_efficientnet_lite0.safetensors", "timm/tf_efficientnet_lite0.in1k",
            "https://huggingface.co/timm/tf_efficientnet_lite0.in1k",
            "timm.create_model('tf_efficientnet_lite0', pretrained=True).state_dict() as safetensors",
            ("conf/backbone/efficientnet_lite0.yaml",), _timm_weights("tf_efficientnet_lite0")),
    StandIn("weights/tf_mobilenetv3_small_075.safetensors", "timm/tf_mobilenetv3_small_075.in1k",
            "https://huggingface.co/timm/tf_mobilenetv3_small_075.in1k",
            "timm.create_model('tf_mobilenetv3_small_075', pretrained=True).state_dict() as safetensors",
            ("conf/backbone/mobilenetv3_small_075.yaml",), _timm_weights("tf_mobilenetv3_small_075")),
    StandIn("weights/mobilenet_v2_torchvision.safetensors", "torchvision:MobileNet_V2_Weights.IMAGENET1K_V1",
            "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
            "torchvision.models.mobilenet_v2(weights='IMAGENET1K_V1').state_dict() as safetensors",
            ("conf/backbone/mobilenet_v2.yaml",), _torchvision_mobilenet_v2),
)


def standin_for(path: str | None) -> StandIn | None:
    """The stand-in a config's relative ``path`` names, or None (an absolute path, or one of the user's own)."""
    if path is None or Path(os.path.expanduser(str(path))).is_absolute():
        return None
    wanted = Path(str(path)).as_posix().strip("/")
    return next((s for s in STANDINS if s.path == wanted), None)


def build_standin(path: str, data_root: str | os.PathLike, sources: Sources | None = None) -> Path:
    """Build the stand-in that ``path`` (relative to ``data_root``) names; see :meth:`StandIn.build`.

    Raises:
        KeyError: ``path`` names no stand-in (the message lists them).
    """
    standin = standin_for(path)
    if standin is None:
        raise KeyError(f"{path!r} is not a stand-in; the stand-ins: {[s.path for s in STANDINS]}")
    return standin.build(data_root, sources)
