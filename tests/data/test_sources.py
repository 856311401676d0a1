"""The paper's six experiments on tiny copies of their real sources, in each source's exact format (issue 11).

Each experiment runs with its own dataset config (hub id, config name, splits, columns, label encoding); the
only change is where the source lives (``dataset.hf_path`` -> a folder in the hub repository's layout,
``dataset.path`` -> a torchvision root) and a tiny backbone of the same modality. Downloads are disabled
(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, which also keeps torchvision from downloading).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from glai.config import compose_config
from glai.data.datasets import DatasetUnavailableError, load_splits
from glai.data.embeddings import load_embeddings
from glai.errors import DataError
from glai.results.identity import differences
from glai.runner import run
from tests.data.source_fixtures import (
    AG_NEWS_CLASSES,
    DBPEDIA_CLASSES,
    accept_tiny_torchvision_files,
    hub_mirror,
    omniglot_folders,
    stl10_binary,
)
from tests.data.tiny_fixtures import build_tiny_assets, group_overrides, tiny_backbone

#: experiment -> (hub id, or the torchvision source, and the tiny backbone of its modality)
SOURCES = {
    "A1": ("timm/oxford-iiit-pet", "effnet"),
    "A2": ("fancyzhx/dbpedia_14", "bert"),
    "B1": ("torchvision:STL10", "effnet"),
    "B2": ("Salesforce/wikitext", "gpt2"),
    "C1": ("torchvision:Omniglot", "effnet"),
    "C2": ("fancyzhx/ag_news", "bert"),
}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return build_tiny_assets(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    accept_tiny_torchvision_files(monkeypatch)


def _source_override(experiment: str, root) -> list[str]:
    source = SOURCES[experiment][0]
    if source == "torchvision:STL10":
        return [f"dataset.path={stl10_binary(root / 'tv')}"]
    if source == "torchvision:Omniglot":
        return [f"dataset.path={omniglot_folders(root / 'tv')}"]
    return [f"dataset.hf_path={hub_mirror(root / 'hub', source)}"]


def _overrides(experiment: str, assets, tmp_path) -> list[str]:
    reference = compose_config([f"experiment={experiment}"])
    n_out = reference.experiment.arch[-1]
    backbone = tiny_backbone(SOURCES[experiment][1], assets)
    hidden = max(16, 2 * n_out + 2)  # round(rho * hidden) >= n_out (paper 4.2)
    return [f"experiment={experiment}", *_source_override(experiment, tmp_path),
            *group_overrides("backbone", backbone), f"experiment.arch=[{backbone['embed_dim']},{hidden},{n_out}]",
            "experiment.max_epochs=2", "experiment.reduced_epochs=1", "experiment.patience=2",
            f"data_root={assets.root}", f"cache_dir={tmp_path}/cache", f"results_dir={tmp_path}/runs",
            "structure_samples=0", "verbose=false"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", list(SOURCES))
def test_paper_experiment_runs_on_its_source_format(experiment, assets, tmp_path, offline):
    overrides = _overrides(experiment, assets, tmp_path)
    cfg = compose_config([*overrides, "head=glai"])
    rec = run(cfg)
    assert rec["status"] == "done", rec["error"]
    # the experiment's own dataset config ran: only where the source lives differs
    reference = OmegaConf.to_container(compose_config([f"experiment={experiment}", "head=glai"]), resolve=True)
    changed = {k for k in differences(rec["config"], reference) if k.startswith("dataset.")}
    assert changed == ({"dataset.path"} if SOURCES[experiment][0].startswith("torchvision") else {"dataset.hf_path"})


@pytest.mark.parametrize("experiment, roles, expected", [
    # splits, sizes and labels the code expects of each source (here of its tiny copy)
    ("A1", ("train", "val"), {"train": 74, "val": 74, "classes": 37}),
    ("A2", ("train", "val"), {"train": 42, "val": 42, "classes": 14}),
    ("B1", ("train", "val"), {"train": 57, "val": 3, "classes": None}),  # val = 5 % of unlabeled
    ("B2", ("train", "val"), {"train": 25, "val": 25, "classes": None}),  # paragraphs, headings dropped
    ("C1", ("pool",), {"pool": 120, "classes": 6}),  # Omniglot(background=False): 2 alphabets x 3 characters
    ("C2", ("pool",), {"pool": 64, "classes": 4}),  # the test split
])
def test_each_source_yields_the_splits_and_labels_the_protocol_needs(experiment, roles, expected, tmp_path,
                                                                     offline):
    cfg = compose_config([f"experiment={experiment}", *_source_override(experiment, tmp_path)])
    raws = load_splits(cfg.dataset, roles, data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    for role in roles:
        assert len(raws[role]) == expected[role], role
        labels = raws[role].labels
        if expected["classes"] is None:
            assert labels is None
        else:
            assert labels is not None and labels.min() >= 0 and len(set(labels.tolist())) == expected["classes"]
        sample = raws[role].samples[0]
        assert isinstance(sample, str) if cfg.dataset.modality == "text" else sample.mode == "RGB"
    if experiment == "A2":
        assert cfg.dataset.text_columns == ["content"] and len(DBPEDIA_CLASSES) == 14
    if experiment == "C2":
        assert cfg.dataset.pool_split == "test" and len(AG_NEWS_CLASSES) == 4


def test_a_renamed_column_or_split_names_what_exists(tmp_path, offline):
    folder = hub_mirror(tmp_path, "fancyzhx/dbpedia_14")
    cfg = compose_config(["experiment=A2", f"dataset.hf_path={folder}", "dataset.text_columns=[abstract]"])
    with pytest.raises(ValueError, match=r"\['label', 'title', 'content'\]"):
        load_splits(cfg.dataset, ("train",), data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    cfg = compose_config(["experiment=A2", f"dataset.hf_path={folder}", "dataset.val_split=validation"])
    with pytest.raises(ValueError, match=r"validation.*\btrain\b.*\btest\b|\btrain\b.*\btest\b.*validation"):
        load_splits(cfg.dataset, ("val",), data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    cfg = compose_config(["experiment=C1", f"dataset.path={omniglot_folders(tmp_path / 'tv')}",
                          "dataset.pool_split=test"])
    with pytest.raises(DataError, match=r"\['background', 'evaluation'\]"):
        load_splits(cfg.dataset, ("pool",), data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("experiment", ["A2", "B1"])
def test_offline_without_a_copy_names_the_prefetch_command(experiment, assets, tmp_path, offline):
    missing = (["dataset.hf_path=nobody/no_such_dataset"] if experiment == "A2"
               else [f"dataset.path={tmp_path / 'empty'}"])
    overrides = [o for o in _overrides(experiment, assets, tmp_path) if not o.startswith("dataset.")] + missing
    cfg = compose_config([*overrides, "head=mlp"])
    with pytest.raises(DatasetUnavailableError, match=f"make prefetch EXP={experiment}"):
        run(cfg)


def test_undecodable_images_stop_or_are_skipped_as_configured(assets, tmp_path, caplog):
    own = tmp_path / "photos"
    shutil.copytree(assets.images / "train", own)
    bad = sorted((own / "class_0").iterdir())[0]
    bad.write_bytes(b"not an image")
    backbone = tiny_backbone("effnet", assets)
    n_classes = len([d for d in own.iterdir() if d.is_dir()])
    base = ["dataset=folder", f"dataset.path={own}", "dataset.name=my_photos", *group_overrides("backbone", backbone),
            f"experiment.arch=[{backbone['embed_dim']},16,{n_classes}]", "experiment.max_epochs=2",
            f"cache_dir={tmp_path}/cache", "structure_samples=0", "head=mlp", "verbose=false"]
    with pytest.raises(DataError, match=str(bad.name)):
        run(compose_config([*base, f"results_dir={tmp_path}/stop"]))
    with caplog.at_level("WARNING"):
        rec = run(compose_config([*base, "dataset.on_bad_image=skip", f"results_dir={tmp_path}/skip"]))
    assert rec["status"] == "done"
    # the warning says what happens (left out, training goes on), never the stop message's "nothing was trained"
    said = [r.getMessage() for r in caplog.records if "on_bad_image=skip" in r.getMessage()]
    assert said and all(f"leaving out image {bad}" in m and "training goes on" in m
                        and "nothing was trained" not in m for m in said)
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("*.json")]
    skipped = [m["info"]["skipped_images"] for m in manifests if m.get("info", {}).get("skipped_images")]
    assert skipped == [[f"image {bad}"]]


def test_stl10_is_opened_only_to_read_samples_once_its_embeddings_are_cached(assets, tmp_path, offline,
                                                                             monkeypatch):
    """Opening STL-10 reads the whole split (2.7 GB for unlabeled): a run whose embeddings are cached must not.
    What opening yields (count, labels) is memoised per file sizes and mtimes; a changed file opens it again."""
    import torchvision.datasets as tvd

    opened = []
    real_init = tvd.STL10.__init__

    def counting_init(self, *args, **kwargs):
        opened.append(kwargs.get("split"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(tvd.STL10, "__init__", counting_init)
    cfg = compose_config([*_overrides("B1", assets, tmp_path), "head=mlp"])
    first_report, second_report = {}, {}
    first = load_embeddings(cfg, report=first_report)
    assert opened == ["unlabeled"] and first_report["forward_calls"] > 0
    second = load_embeddings(cfg, report=second_report)
    assert opened == ["unlabeled"], "a cached run opened STL-10"
    assert second_report["forward_calls"] == 0
    for role in ("train", "val"):
        assert torch.equal(first[role].x, second[role].x)

    # labelled splits: the memo's labels are the opened dataset's, and reading a sample opens it
    labelled = compose_config(["experiment=B1", *_source_override("B1", tmp_path), "dataset.train_split=train",
                               "dataset.val_split=test", "dataset.label_column=label"])
    args = {"data_root": str(tmp_path), "cache_dir": str(tmp_path / "cache")}
    fresh = load_splits(labelled.dataset, ("train", "val"), **args)
    memo = load_splits(labelled.dataset, ("train", "val"), **args)
    assert opened == ["unlabeled", "train", "test"]
    for role in ("train", "val"):
        np.testing.assert_array_equal(memo[role].labels, fresh[role].labels)
        assert memo[role].fingerprint == fresh[role].fingerprint and len(memo[role]) == len(fresh[role]) == 20
    assert memo["train"].samples[3].size == (96, 96) and opened[-1] == "train"

    # a replaced file (another size) is opened anew: the memo never outlives the data
    stl10_binary(tmp_path / "tv", n_unlabeled=80, seed=1)
    raws = load_splits(cfg.dataset, ("train", "val"), **args)
    assert opened[-1] == "unlabeled" and len(raws["train"]) + len(raws["val"]) == 80
