"""Local dataset formats, deterministic subsets, and the offline error message."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tiny_fixtures import N_CLASSES, PER_CLASS, tiny_dataset

from glai.data.config import DatasetConfig
from glai.data.datasets import DatasetUnavailableError, load_splits, select_subset, unpack_tar
from glai.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def _cfg(**kw) -> DatasetConfig:
    return DatasetConfig(**kw)


def test_image_folder(tiny_assets):
    d = _cfg(**tiny_dataset("images", tiny_assets))
    splits = load_splits(d, ["train", "val", "pool"], cache_dir=tiny_assets.cache)
    for s in splits.values():
        assert len(s) == N_CLASSES * PER_CLASS
        assert np.bincount(s.labels).tolist() == [PER_CLASS] * N_CLASSES
        assert s.samples[0].mode == "RGB" and s.samples[0].size == (32, 32)
    assert splits["train"].fingerprint != splits["val"].fingerprint


@pytest.mark.parametrize("fmt", ["csv", "parquet", "disk"])
def test_text_formats_agree(tiny_assets, fmt):
    path = {"csv": tiny_assets.text_csv, "parquet": tiny_assets.text_parquet, "disk": tiny_assets.text_disk}[fmt]
    d = _cfg(**{**tiny_dataset("text", tiny_assets), "path": str(path), "format": "auto"})
    s = load_splits(d, ["train"], cache_dir=tiny_assets.cache)["train"]
    ref = load_splits(_cfg(**tiny_dataset("text", tiny_assets)), ["train"], cache_dir=tiny_assets.cache)["train"]
    assert list(s.samples) == list(ref.samples)
    assert s.labels.tolist() == ref.labels.tolist()
    assert isinstance(s.samples[0], str)


def test_relative_path_resolves_against_data_root(tiny_assets):
    d = _cfg(**{**tiny_dataset("text", tiny_assets), "path": "data/tiny_text_csv"})
    s = load_splits(d, ["pool"], data_root=tiny_assets.root, cache_dir=tiny_assets.cache)["pool"]
    assert len(s) == N_CLASSES * PER_CLASS


def test_text_lines_paragraphs(tiny_assets):
    d = _cfg(name="lines", source="local", modality="text", path=str(tiny_assets.lines), train_split="train",
             val_split="val", text_unit="paragraph", label_column=None)
    splits = load_splits(d, ["train", "val"], cache_dir=tiny_assets.cache)
    for s in splits.values():
        assert len(s) == 24 and s.labels is None
        assert not any(t.startswith("=") or not t for t in s.samples)


def test_omniglot_npz(tiny_assets):
    d = _cfg(name="omni", source="local", modality="image", path=str(tiny_assets.omniglot),
             train_split="background", pool_split="evaluation")
    pool = load_splits(d, ["pool"], cache_dir=tiny_assets.cache)["pool"]
    assert len(pool) == N_CLASSES * 20
    assert np.bincount(pool.labels).tolist() == [20] * N_CLASSES
    pixels = np.asarray(pool.samples[0].convert("L"))
    # white background, black strokes (the original PNGs' look)
    assert pixels.max() == 255 and pixels.min() == 0 and (pixels == 255).mean() > 0.5


def test_tar_unpacked_once(tiny_assets, tmp_path):
    first = unpack_tar(tiny_assets.images_tar, tmp_path)
    stamp = (first / ".complete").stat().st_mtime_ns
    assert unpack_tar(tiny_assets.images_tar, tmp_path) == first
    assert (first / ".complete").stat().st_mtime_ns == stamp
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    d = _cfg(**{**tiny_dataset("images", tiny_assets), "path": str(tiny_assets.images_tar),
                "format": "auto"})
    s = load_splits(d, ["train"], cache_dir=tmp_path)["train"]
    assert len(s) == N_CLASSES * PER_CLASS


def test_subsets_deterministic_and_balanced(tiny_assets):
    base = tiny_dataset("images", tiny_assets)
    d = _cfg(**{**base, "max_per_class": 5, "max_val": 10, "max_pool": 7})
    a = load_splits(d, ["train", "val", "pool"], cache_dir=tiny_assets.cache)
    b = load_splits(d, ["train", "val", "pool"], cache_dir=tiny_assets.cache)
    assert np.bincount(a["train"].labels).tolist() == [5] * N_CLASSES
    assert (len(a["val"]), len(a["pool"])) == (10, 7)
    for role in a:
        assert a[role].fingerprint == b[role].fingerprint
        assert a[role].labels.tolist() == b[role].labels.tolist()
    c = load_splits(_cfg(**{**base, "max_per_class": 5, "subset_seed": 1}), ["train"], cache_dir=tiny_assets.cache)
    assert c["train"].fingerprint != a["train"].fingerprint


def test_holdout_val_is_disjoint(tiny_assets):
    d = _cfg(**{**tiny_dataset("text", tiny_assets), "val_split": None, "val_fraction": 0.25})
    s = load_splits(d, ["train", "val"], cache_dir=tiny_assets.cache)
    n = N_CLASSES * PER_CLASS
    assert (len(s["train"]), len(s["val"])) == (n - n // 4, n // 4)
    assert not set(s["train"].samples.indices) & set(s["val"].samples.indices)


def test_select_subset_per_class():
    labels = np.repeat(np.arange(3), 10)
    idx = select_subset(np.arange(30), labels, 4, None, np.random.default_rng(0))
    assert np.bincount(labels[idx]).tolist() == [4, 4, 4] and np.all(np.diff(idx) > 0)


def test_missing_split_names_the_key(tiny_assets):
    d = _cfg(**{**tiny_dataset("text", tiny_assets), "pool_split": "nope"})
    with pytest.raises(DataError, match="pool_split"):
        load_splits(d, ["pool"], cache_dir=tiny_assets.cache)


def test_missing_local_path_names_the_key(tiny_assets):
    d = _cfg(**{**tiny_dataset("text", tiny_assets), "path": "no/such/dir"})
    with pytest.raises(DatasetUnavailableError, match="dataset.path.*GLAI_DATA_ROOT"):
        load_splits(d, ["train"], data_root=tiny_assets.root)


def test_offline_hub_error_names_key_and_download(monkeypatch, tiny_assets):
    import datasets

    def no_network(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'fancyzhx/ag_news' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    d = _cfg(name="ag_news", source="hf", modality="text", hf_path="fancyzhx/ag_news", pool_split="test")
    with pytest.raises(DatasetUnavailableError) as err:
        load_splits(d, ["pool"], cache_dir=tiny_assets.cache)
    msg = str(err.value)
    for needle in ("'ag_news'", "dataset.path=", "GLAI_DATA_ROOT", "save_to_disk", "load_dataset('fancyzhx/ag_news')"):
        assert needle in msg, needle


def test_offline_env_real_libraries(tmp_path):
    """With HF_HUB_OFFLINE=1 and an empty HF cache, the real hub loaders fail with our messages."""
    script = textwrap.dedent("""
        from glai.data.config import BackboneConfig, DatasetConfig
        from glai.data.datasets import DatasetUnavailableError, load_splits
        from glai.data.backbones import BackboneUnavailableError, build_backbone
        try:
            load_splits(DatasetConfig(name="ag_news", source="hf", modality="text", hf_path="fancyzhx/ag_news",
                                      pool_split="test"), ["pool"])
        except DatasetUnavailableError as e:
            print("DATASET", e)
        try:
            build_backbone(BackboneConfig(name="gpt2", library="transformers", model_id="gpt2"))
        except BackboneUnavailableError as e:
            print("BACKBONE", e)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert "DATASET" in out.stdout and "dataset.path=" in out.stdout, out.stdout + out.stderr
    assert "BACKBONE" in out.stdout and "backbone.path=" in out.stdout, out.stdout + out.stderr


def test_save_to_disk_images(tmp_path):
    """An HF image dataset saved with save_to_disk (the format a hub dataset is pre-downloaded into)."""
    import datasets
    from PIL import Image

    images = [Image.new("RGB", (24, 24), (40 * i, 0, 0)) for i in range(6)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=3)})
    ds = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 2, 0, 1, 2]}, features=features)
    datasets.DatasetDict({"trainval": ds, "test": ds}).save_to_disk(str(tmp_path / "pets"))
    d = _cfg(name="pets", source="hf", modality="image", hf_path="timm/oxford-iiit-pet", path=str(tmp_path / "pets"),
             train_split="trainval", val_split="test")
    s = load_splits(d, ["train", "val"], cache_dir=tmp_path)
    assert len(s["train"]) == 6 and s["train"].labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert s["val"].samples[1].getpixel((0, 0)) == (40, 0, 0)


def test_the_holdout_is_stratified_and_seeded():
    import numpy as np

    from glai.data.datasets import holdout_rows

    labels = np.array([0] * 50 + [1] * 10 + [2] * 3 + [3] * 1)
    rows = holdout_rows(len(labels), labels, 0.2, seed=0)
    assert [int((labels[rows] == c).sum()) for c in range(4)] == [10, 2, 1, 0]  # a lone row stays in train
    assert np.array_equal(rows, holdout_rows(len(labels), labels, 0.2, seed=0))
    assert not np.array_equal(rows, holdout_rows(len(labels), labels, 0.2, seed=1))
    unlabelled = holdout_rows(100, None, 0.05, seed=0)
    assert np.array_equal(unlabelled, np.random.default_rng(0).permutation(100)[:5])  # as before: no re-runs


def test_own_data_class_folders_without_a_split_level_and_a_csv_with_class_names(tmp_path):
    """Your own data (README): <path>/<class>/*.png and a CSV whose labels are class names."""
    import numpy as np
    from PIL import Image

    from glai.config import compose_config
    from glai.data.datasets import load_splits

    for c, name in enumerate(["cats", "dogs", "owls"]):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (8, 8), (20 * c, 10 * i, 0)).save(tmp_path / "imgs" / name / f"{i}.png")
    cfg = compose_config(["dataset=folder", f"dataset.path={tmp_path / 'imgs'}"]).dataset
    splits = load_splits(cfg, ("train", "val"), data_root=None, cache_dir=tmp_path / "cache")
    assert np.bincount(splits["val"].labels).tolist() == [2, 2, 2]
    assert np.bincount(splits["train"].labels).tolist() == [8, 8, 8]

    import pandas as pd

    pd.DataFrame({"review": [f"text {i}" for i in range(20)], "stars": ["good", "bad"] * 10}).to_csv(
        tmp_path / "reviews.csv", index=False)
    cfg = compose_config(["dataset=csv", f"dataset.path={tmp_path / 'reviews.csv'}", "dataset.text_columns=[review]",
                          "dataset.label_column=stars"]).dataset
    splits = load_splits(cfg, ("train", "val"), data_root=None, cache_dir=tmp_path / "cache")
    assert sorted(splits["val"].labels.tolist()) == [0, 0, 1, 1]  # bad = 0, good = 1
    bad = compose_config(["dataset=csv", f"dataset.path={tmp_path / 'reviews.csv'}", "dataset.text_columns=[review]"])
    with pytest.raises(ValueError, match=r"'label' is not a column .* \['review', 'stars'\]"):
        load_splits(bad.dataset, ("train",), data_root=None, cache_dir=tmp_path / "cache")


def test_an_undecodable_image_names_its_file_and_a_missing_label_column_lists_the_columns(tmp_path):
    import datasets
    from PIL import Image

    from glai.config import compose_config
    from glai.data.datasets import load_splits
    from glai.errors import DataError

    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / name / f"{i}.png")
    (tmp_path / "imgs" / "b" / "9.png").write_bytes(b"not a png")
    cfg = compose_config(["dataset=folder", f"dataset.path={tmp_path / 'imgs'}", "dataset.val_fraction=0.25"])
    train = load_splits(cfg.dataset, ("train",), data_root=None, cache_dir=tmp_path / "cache")["train"]
    with pytest.raises(DataError, match=r"cannot decode image .*9\.png"):
        [train.samples[i] for i in range(len(train.samples))]

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["x", "y"], "topic": [0, 1]})}).save_to_disk(
        str(tmp_path / "hf"))
    cfg = compose_config(["dataset=csv", f"dataset.path={tmp_path / 'hf'}", "dataset.format=disk"])
    with pytest.raises(ValueError, match=r"'label' is not a column .*\['text', 'topic'\]"):
        load_splits(cfg.dataset, ("train",), data_root=None, cache_dir=tmp_path / "cache")
