"""Tiny copies of the paper's six data sources in each source's exact on-disk format (issue 11).

- Hub datasets (A1 Pets, A2 DBPedia-14, B2 WikiText-2, C2 AG News): a local folder laid out like the hub
  repository -- ``README.md`` with the card's ``dataset_info`` (features, ClassLabel names, splits) and
  ``configs`` (data files per split), and parquet shards at the card's paths with the card's feature schema.
  ``datasets.load_dataset(<folder>, <config>, split=...)`` reads it exactly as it reads the hub repository, so
  the experiment's own dataset config runs on it with ``dataset.hf_path=<folder>`` as the only change.
- torchvision datasets (B1 STL-10 unlabeled, C1 Omniglot evaluation): torchvision's folder layout
  (``stl10_binary/*.bin`` in the original column-major byte order; ``omniglot-py/images_<set>/<alphabet>/
  <character>/*.png`` beside ``images_<set>.zip``). torchvision checks the published MD5 sums of those files,
  which tiny copies cannot match: :func:`accept_tiny_torchvision_files` skips only that check.

The schemas are the ones on the hub cards as of 2026-11 (each named in ``CARDS``); a drift in the code's
expectations (a column, a split name, a label encoding) fails ``tests/data/test_sources.py``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

PETS_BREEDS = [
    "abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "bengal", "birman",
    "bombay", "boxer", "british_shorthair", "chihuahua", "egyptian_mau", "english_cocker_spaniel",
    "english_setter", "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond",
    "leonberger", "maine_coon", "miniature_pinscher", "newfoundland", "persian", "pomeranian", "pug", "ragdoll",
    "russian_blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu", "siamese", "sphynx",
    "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier",
]
DBPEDIA_CLASSES = ["Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder", "MeanOfTransportation",
                   "Building", "NaturalPlace", "Village", "Animal", "Plant", "Album", "Film", "WrittenWork"]
AG_NEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]

#: hub id -> (config name, data-file pattern per split, the real split sizes on the card)
CARDS = {
    "timm/oxford-iiit-pet": ("default", "data/{split}-00000-of-00001.parquet", {"train": 3680, "test": 3669}),
    "fancyzhx/dbpedia_14": ("dbpedia_14", "dbpedia_14/{split}-00000-of-00001.parquet",
                            {"train": 560_000, "test": 70_000}),
    "Salesforce/wikitext": ("wikitext-2-raw-v1", "wikitext-2-raw-v1/{split}-00000-of-00001.parquet",
                            {"train": 36_718, "validation": 3_760, "test": 4_358}),
    "fancyzhx/ag_news": ("default", "data/{split}-00000-of-00001.parquet", {"train": 120_000, "test": 7_600}),
}
WORDS = ["alpha", "beta", "gamma", "delta", "omega", "river", "stone", "light", "music", "paper", "green", "north"]


def _sentence(rng: np.random.Generator, label: int) -> str:
    words = [WORDS[label % len(WORDS)]] * 3 + list(rng.choice(WORDS, size=4))
    return " ".join(rng.permutation(words))


def _features(hub_id: str):
    import datasets as ds

    if hub_id == "timm/oxford-iiit-pet":
        return ds.Features({"image": ds.Image(), "label": ds.ClassLabel(names=PETS_BREEDS),
                            "image_id": ds.Value("string"), "label_cat_dog": ds.ClassLabel(names=["cat", "dog"])})
    if hub_id == "fancyzhx/dbpedia_14":
        return ds.Features({"label": ds.ClassLabel(names=DBPEDIA_CLASSES), "title": ds.Value("string"),
                            "content": ds.Value("string")})
    if hub_id == "Salesforce/wikitext":
        return ds.Features({"text": ds.Value("string")})
    return ds.Features({"text": ds.Value("string"), "label": ds.ClassLabel(names=AG_NEWS_CLASSES)})


def _rows(hub_id: str, split: str, rng: np.random.Generator) -> dict[str, list]:
    """A few rows per split in the card's schema (every class present where there are classes)."""
    if hub_id == "timm/oxford-iiit-pet":
        from PIL import Image

        labels = [c for c in range(37) for _ in range(2)]
        images = [Image.fromarray(rng.integers(0, 256, size=(24, 20, 3), dtype=np.uint8)) for _ in labels]
        return {"image": images, "label": labels,
                "image_id": [f"{PETS_BREEDS[c]}_{i}" for i, c in enumerate(labels)],
                "label_cat_dog": [0 if PETS_BREEDS[c][0] in "abmprs" else 1 for c in labels]}
    if hub_id == "fancyzhx/dbpedia_14":
        labels = [c for c in range(14) for _ in range(3)]
        return {"label": labels, "title": [f"Title {i}" for i in range(len(labels))],
                "content": [_sentence(rng, c) for c in labels]}
    if hub_id == "Salesforce/wikitext":
        # the raw file's lines: blank lines, " = Heading = " lines and paragraphs, each line one row
        lines = []
        for section in range(5):
            lines += ["", f" = Section {section} = ", ""]
            lines += [" " + _sentence(rng, int(rng.integers(12))) + " ." for _ in range(5)]
        return {"text": lines}
    per_class = 16 if split == "test" else 3  # the test split is C2's episode pool (4-way 5-shot 10-query)
    labels = [c for c in range(4) for _ in range(per_class)]
    return {"text": [_sentence(rng, c) for c in labels], "label": labels}


def _card(hub_id: str, config: str, pattern: str, features, sizes: dict[str, int]) -> str:
    """README.md front matter as the hub card has it: configs with data files, dataset_info with features."""
    import yaml

    # no `splits` sizes: datasets checks them against the data, and the real ones are in the body
    info = {"features": features._to_yaml_list()}
    if config != "default":
        info = {"config_name": config, **info}
    meta = {"dataset_info": info,
            "configs": [{"config_name": config, "data_files": [{"split": s, "path": pattern.format(split=s)}
                                                               for s in sizes], "default": True}]}
    real = ", ".join(f"{s} {n:,}" for s, n in sizes.items())
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + f"---\n\n# Tiny copy of {hub_id} (tests; real: {real})\n"


def hub_mirror(root: str | Path, hub_id: str, seed: int = 0) -> Path:
    """A local folder in the hub repository's layout for ``hub_id`` (one of :data:`CARDS`); returns it.

    The parquet shards hold a few rows each (the real split sizes are in the README's text).
    """
    import datasets as ds

    config, pattern, sizes = CARDS[hub_id]
    folder = Path(root) / hub_id.replace("/", "__")
    features = _features(hub_id)
    rng = np.random.default_rng(seed)
    for split in sizes:
        path = folder / pattern.format(split=split)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.Dataset.from_dict(_rows(hub_id, split, rng), features=features).to_parquet(str(path))
    (folder / "README.md").write_text(_card(hub_id, config, pattern, features, sizes))
    return folder


def stl10_binary(root: str | Path, n_unlabeled: int = 60, seed: int = 0) -> Path:
    """torchvision's STL-10 layout under ``root`` (returned): ``stl10_binary/`` with ``unlabeled_X.bin`` (uint8
    [N, 3, 96, 96] stored column-major, as the original distribution), ``train_X.bin`` / ``train_y.bin`` /
    ``test_X.bin`` / ``test_y.bin`` (labels 1-10), ``class_names.txt`` and ``fold_indices.txt``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)

    def images(n: int) -> bytes:
        # [N, 3, 96, 96] row-major images written with x and y swapped: what torchvision transposes back
        pixels = rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
        return np.ascontiguousarray(pixels.transpose(0, 1, 3, 2)).tobytes()

    (folder / "unlabeled_X.bin").write_bytes(images(n_unlabeled))
    for split, n in (("train", 20), ("test", 20)):
        (folder / f"{split}_X.bin").write_bytes(images(n))
        (folder / f"{split}_y.bin").write_bytes((np.arange(n) % 10 + 1).astype(np.uint8).tobytes())
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    (folder / "fold_indices.txt").write_text("\n".join(" ".join(str(i) for i in range(2)) for _ in range(10)) + "\n")
    return Path(root)


def omniglot_folders(root: str | Path, alphabets: int = 2, characters: int = 3, seed: int = 0) -> Path:
    """torchvision's Omniglot layout under ``root`` (returned): ``omniglot-py/images_evaluation/<alphabet>/
    character<NN>/<id>_<drawer>.png`` (105x105, 1-bit, white background, black strokes; 20 drawers) and the
    ``images_evaluation.zip`` it was extracted from, and the same for ``images_background``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = Path(root) / "omniglot-py"
    for target in ("images_background", "images_evaluation"):
        folder = base / target
        for a in range(alphabets):
            for c in range(characters):
                char_dir = folder / f"Alphabet_{a}" / f"character{c + 1:02d}"
                char_dir.mkdir(parents=True, exist_ok=True)
                for d in range(20):
                    pixels = np.ones((105, 105), dtype=bool)
                    row = 10 + 15 * c + int(rng.integers(0, 5))
                    pixels[row:row + 6, 10 + 20 * a:90] = False  # a stroke per character
                    Image.fromarray(pixels).save(char_dir / f"{a * 100 + c:04d}_{d + 1:02d}.png")
        with zipfile.ZipFile(base / f"{target}.zip", "w") as zf:
            for png in sorted(folder.rglob("*.png")):
                zf.write(png, png.relative_to(base))
    return Path(root)


def accept_tiny_torchvision_files(monkeypatch) -> None:
    """Skip torchvision's MD5 check of the published STL-10 / Omniglot files (tiny copies cannot match it);
    everything else -- paths, file formats, split handling, labels -- runs as on the real files."""
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.STL10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.Omniglot, "_check_integrity", lambda self: True)
