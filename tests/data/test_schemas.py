"""Every experiment config composes with every head; stand-ins keep their paper experiment's protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from glai.data.config import check_backbone_config, check_dataset_config

CONF = Path(__file__).resolve().parents[2] / "conf"
PAPER = ["A1", "A2", "B1", "B2", "C1", "C2"]
EXPERIMENTS = PAPER + [f"offline/{e}" for e in PAPER]
# the heads of these families (family T's ffn_* heads train a Transformer block: tests/transformer)
HEADS = sorted(p.stem for p in (CONF / "head").glob("*.yaml") if not p.stem.startswith("ffn_"))
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))
BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))

# SPEC 6 (paper Tables 1-2): arch, LR, BS, WD MLP, WD GLAI, rho, reduced epochs, monitor, patience, min delta
TABLE = {
    "A1": ([384, 256, 37], 1e-3, 16, 1e-3, 0.1, 0.5, 20, "val_acc", 5, 0.1),
    "A2": ([768, 128, 14], 1e-3, 16, 1e-3, 0.1, 0.5, 20, "val_acc", 5, 0.1),
    "B1": ([1280, 640, 128], 1e-3, 16, 1e-3, 0.1, 0.5, 60, "val_loss", 5, 1e-5),
    "B2": ([768, 768, 128], 1e-4, 16, 1e-2, 0.1, 0.5, 2, "val_loss", 5, 0.01),
    "C1": ([576, 256, 5], 1e-3, 16, 1e-3, 0.1, 0.5, 30, "val_acc", 30, 1.0),
    "C2": ([768, 512, 4], 1e-3, 32, 1e-2, 0.1, 0.5, 30, "val_acc", 30, 1.0),
}
STAND_IN_ARCH = {"A1": [1280, 256, 10], "A2": [384, 128, 14], "B1": [1280, 640, 128], "B2": [384, 768, 128],
                 "C1": [432, 256, 5], "C2": [384, 512, 4]}
PROTOCOL = ["family", "lr", "batch_size", "wd_mlp", "wd_glai", "reduced_epochs", "monitor", "patience",
            "min_delta", "max_epochs", "dropout", "temperature", "n_way", "k_shot", "q_query"]


def test_heads_exist():
    assert {"glai", "mlp", "mlp_reduced", "linear"} <= set(HEADS)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_with_head(compose_cfg, experiment, head):
    from glai.config import validate

    cfg = compose_cfg([f"experiment={experiment}", f"head={head}"])
    OmegaConf.resolve(cfg)
    validate(cfg)
    check_dataset_config(cfg.dataset)
    check_backbone_config(cfg.backbone)
    assert cfg.head.name == head
    assert cfg.backbone.library != "none"
    assert cfg.dataset.modality in ("image", "text")
    assert cfg.backbone.embed_dim == cfg.experiment.arch[0]


@pytest.mark.parametrize("name", PAPER)
def test_paper_table(compose_cfg, name):
    cfg = compose_cfg([f"experiment={name}"])
    e = cfg.experiment
    arch, lr, bs, wd_mlp, wd_glai, rho, red, monitor, patience, min_delta = TABLE[name]
    assert list(e.arch) == arch
    assert (e.lr, e.batch_size, e.wd_mlp, e.wd_glai, cfg.rho, e.reduced_epochs) == (lr, bs, wd_mlp, wd_glai, rho, red)
    assert (e.monitor, e.patience, e.min_delta) == (monitor, patience, min_delta)
    assert e.max_epochs == (500 if name[0] == "C" else 60)
    assert e.family == name[0]
    if name == "B1":
        assert (e.dropout, e.temperature) == (0.2, 0.07)
    if name == "B2":
        assert (e.dropout, e.temperature) == (0.4, 0.07)
    if name == "C1":
        assert (e.n_way, e.k_shot, e.q_query) == (5, 4, 6)
    if name == "C2":
        assert (e.n_way, e.k_shot, e.q_query) == (4, 5, 10)
    if name == "A2":
        assert any("14" in d for d in e.deviations)


@pytest.mark.parametrize("name", PAPER)
def test_stand_in_keeps_protocol(compose_cfg, name):
    paper = compose_cfg([f"experiment={name}"])
    offline = compose_cfg([f"experiment=offline/{name}"])
    for key in PROTOCOL:
        assert offline.experiment[key] == paper.experiment[key], key
    assert offline.rho == paper.rho
    assert list(offline.experiment.arch) == STAND_IN_ARCH[name]
    assert offline.experiment.deviations, "a stand-in records what it changes"
    # stand-ins read only local data and weights, relative to data_root
    assert offline.dataset.path is not None and not Path(offline.dataset.path).is_absolute()
    assert offline.backbone.path is not None and not Path(offline.backbone.path).is_absolute()


def test_stand_in_files_document_their_subset():
    for name in PAPER:
        text = (CONF / "experiment" / "offline" / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_")
        assert "Subset" in text, name


def _modality(group: str, name: str) -> str:
    text = (CONF / group / f"{name}.yaml").read_text()
    if group == "dataset":
        return "image" if "modality: image" in text else "text"
    return "text" if "library: transformers" in text else "image"


# The groups are orthogonal, so each dataset is composed with one backbone of its modality and each
# backbone with one dataset of its modality (a full grid would only repeat the same composition).
PAIRS = sorted(
    {(d, next(b for b in BACKBONES if b != "none" and _modality("backbone", b) == _modality("dataset", d)))
     for d in DATASETS if d != "digits"}
    | {(next(d for d in DATASETS if d != "digits" and _modality("dataset", d) == _modality("backbone", b)), b)
       for b in BACKBONES if b != "none"}
)


@pytest.mark.parametrize("dataset,backbone", PAIRS)
def test_any_backbone_pairs_with_any_dataset(compose_cfg, dataset, backbone):
    cfg = compose_cfg(["experiment=A1", f"dataset={dataset}", f"backbone={backbone}"])
    # omniglot_local holds the same images as omniglot (arrays instead of torchvision's PNGs) under its name,
    # which the offline/C1 records and embedding cache have always used
    assert cfg.dataset.name == {"omniglot_local": "omniglot"}.get(dataset, dataset) and cfg.backbone.name == backbone
    assert cfg.dataset.modality == _modality("dataset", dataset)
    check_dataset_config(cfg.dataset)
    check_backbone_config(cfg.backbone)


def test_tiny_overrides_compose(compose_cfg, tiny_experiment_overrides):
    for experiment in EXPERIMENTS:
        cfg = compose_cfg(tiny_experiment_overrides(experiment) + ["head=glai"])
        assert cfg.dataset.name in ("tiny_images", "tiny_text")
        assert cfg.dataset.max_per_class is None and cfg.backbone.input_size in (None, 32)
