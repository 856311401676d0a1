"""scripts/prefetch.py and glai.data.standins: every offline stand-in is rebuilt from its public source, in the
source's own format (tiny copies that the tests write: a hub repository's layout read by ``datasets``, a
torchvision root, hub weights), into exactly the layout its config reads; then the run command works offline."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from glai.config import CONF_DIR, compose_config
from glai.data.sources import SourceOpener
from glai.data.standins import STANDINS, build_standin, standin_for
from tests.conftest import load_script
from tests.data.source_fixtures import (
    DBPEDIA_CLASSES,
    WORDS,
    _card,
    _features,
    _rows,
    accept_tiny_torchvision_files,
    hub_mirror,
    omniglot_folders,
)
from tests.data.tiny_fixtures import build_tiny_assets, tiny_experiment_overrides

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
D, D_FF = 32, 64  # the tiny MiniLM's width and feed-forward width


@pytest.fixture(scope="module")
def prefetch_module():
    return load_script("prefetch")


def wikitext_tokens_mirror(root: Path) -> Path:
    """Salesforce/wikitext's repository layout with the tokens config the stand-in is cut from (wikitext-2-v1)."""
    import datasets as ds

    config, pattern = "wikitext-2-v1", "wikitext-2-v1/{split}-00000-of-00001.parquet"
    sizes = {"train": 36_718, "validation": 3_760, "test": 4_358}
    folder = root / "Salesforce__wikitext"
    features = _features("Salesforce/wikitext")
    rng = np.random.default_rng(1)
    for split in sizes:
        path = folder / pattern.format(split=split)
        path.parent.mkdir(parents=True, exist_ok=True)
        # the hub's rows keep each line's break; a blank line is an empty row
        lines = [t + "\n" if t else t for t in _rows("Salesforce/wikitext", split, rng)["text"]]
        ds.Dataset.from_dict({"text": lines}, features=features).to_parquet(str(path))
    (folder / "README.md").write_text(_card("Salesforce/wikitext", config, pattern, features, sizes))
    return folder


def cifar10_batches(root: Path, per_class: int = 2) -> Path:
    """torchvision's CIFAR-10 root: ``cifar-10-batches-py/`` with the five training batches, the test batch and
    ``batches.meta`` as the original pickles (data uint8 [N, 3072] row-major RGB planes, labels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [c for c in range(10) for _ in range(per_class)]
        # smooth pictures (a colour and a ramp), which JPEG keeps close
        colour = rng.integers(40, 200, size=(len(labels), 3, 1, 1))
        ramp = np.linspace(0, 40, 32)[None, None, :, None] + np.linspace(0, 20, 32)[None, None, None, :]
        data = np.clip(colour + ramp, 0, 255).astype(np.uint8).reshape(len(labels), -1)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data,
                         "filenames": [f"{name}_{i}.png" for i in range(len(labels))]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 10 * per_class, "num_vis": 3072}, f)
    return root


def tiny_minilm(root: Path) -> Path:
    """A one-layer BERT in the hub repository's files (save_pretrained), whose vocabulary holds the words of the
    hub-format text fixtures: the stand-in for sentence-transformers/all-MiniLM-L6-v2."""
    from transformers import BertConfig, BertModel

    from tests.data.tiny_fixtures import _make_tokenizer

    folder = root / "all-MiniLM-L6-v2"
    tok, n_vocab = _make_tokenizer(WORDS + ["Title", "Section", "=", "."], "bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=n_vocab, hidden_size=D, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=D_FF, max_position_embeddings=160)).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "LICENSE").write_text("Apache-2.0 (test copy)\n")
    return folder


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Every stand-in's source, tiny, in its own format: source id -> local copy."""
    import timm
    import torchvision
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("sources")
    out = {hub: hub_mirror(root, hub) for hub in ("fancyzhx/dbpedia_14", "fancyzhx/ag_news")}
    out["Salesforce/wikitext"] = wikitext_tokens_mirror(root)
    out["torchvision:Omniglot"] = omniglot_folders(root / "omniglot_root")
    out["torchvision:CIFAR10"] = cifar10_batches(root / "cifar_root")
    out["sentence-transformers/all-MiniLM-L6-v2"] = tiny_minilm(root)
    torch.manual_seed(0)
    for name in ("tf_efficientnet_lite0", "tf_mobilenetv3_small_075"):
        model = timm.create_model(name, pretrained=False)  # the hub file holds the ImageNet classifier too
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / f"{name}.safetensors"))
        out[f"timm/{name}.in1k"] = root / f"{name}.safetensors"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), root / "mobilenet_v2-b0353104.pth")
    out["torchvision:MobileNet_V2_Weights.IMAGENET1K_V1"] = root / "mobilenet_v2-b0353104.pth"
    return out


@pytest.fixture
def tiny_torchvision(monkeypatch):
    """torchvision checks the published MD5 sums of CIFAR-10 and Omniglot; tiny copies cannot match them."""
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as cifar

    accept_tiny_torchvision_files(monkeypatch)
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)


def _config_paths() -> dict[str, str]:
    """conf/<group>/<name>.yaml -> its relative `path` (a file under data_root), for every shipped config."""
    out = {}
    for group in ("dataset", "backbone"):
        for file in sorted((CONF_DIR / group).glob("*.yaml")):
            node = yaml.safe_load(file.read_text()) or {}
            path = node.get("path")
            if path and node.get("source") != "torchvision" and not Path(path).is_absolute():
                out[f"conf/{group}/{file.name}"] = path
    return out


def test_every_relative_path_of_a_shipped_config_is_a_standin_that_names_its_source():
    paths = _config_paths()
    assert paths  # the stand-ins' configs exist
    for config, path in paths.items():
        standin = standin_for(path)
        assert standin is not None, f"{config}: path {path!r} has no builder in glai.data.standins"
        assert config in standin.configs
        text = (CONF_DIR.parent / config).read_text()
        # the config's comment names the public source and how to get it
        assert standin.source.split(":")[-1] in text and "make prefetch" in text, config
    assert {s.path for s in STANDINS} == set(paths.values())
    assert {c for s in STANDINS for c in s.configs} == set(paths)


def _table(experiment: str, root: Path, split: str, tmp_path: Path):
    cfg = compose_config([f"experiment={experiment}", f"data_root={root}", f"cache_dir={tmp_path}/cache"])
    return SourceOpener(cfg.dataset, cfg.data_root, cfg.cache_dir).open(split)


def test_dbpedia14_is_cut_per_class_from_the_hub_dataset_into_what_its_config_reads(sources, tmp_path):
    import datasets

    build_standin("data/dbpedia14", tmp_path, sources)
    folder = tmp_path / "data" / "dbpedia14"
    assert sorted(p.name for p in folder.iterdir()) == ["classes.txt", "test.csv", "train.csv"]
    assert (folder / "classes.txt").read_text().split("\n")[:-1] == DBPEDIA_CLASSES
    hub = datasets.load_dataset(str(sources["fancyzhx/dbpedia_14"]), split="train")
    table = _table("offline/A2", tmp_path, "train", tmp_path)
    # every row of every class (the fixture has fewer than 1,000 per class), each one a hub row's content
    assert sorted(zip(table.labels.tolist(), table.texts())) == sorted(zip(hub["label"], hub["content"]))
    assert _table("offline/A2", tmp_path, "test", tmp_path).n == len(
        datasets.load_dataset(str(sources["fancyzhx/dbpedia_14"]), split="test"))


def test_ag_news_keeps_the_whole_test_split_with_the_hubs_text(sources, tmp_path):
    import datasets

    build_standin("data/ag_news", tmp_path, sources)
    hub = datasets.load_dataset(str(sources["fancyzhx/ag_news"]), split="test")
    table = _table("offline/C2", tmp_path, "test", tmp_path)
    assert table.texts() == hub["text"] and table.labels.tolist() == hub["label"]


def test_wikitext2_writes_one_line_per_hub_row_and_the_same_paragraphs(sources, tmp_path):
    import datasets

    build_standin("data/wikitext2", tmp_path, sources)
    for split, file in (("validation", "valid"), ("test", "test")):
        rows = datasets.load_dataset(str(sources["Salesforce/wikitext"]), "wikitext-2-v1", split=split)["text"]
        lines = (tmp_path / "data" / "wikitext2" / f"{file}.txt").read_text().split("\n")[:-1]
        assert lines == [r.rstrip("\n") for r in rows]
        paragraphs = [r.strip() for r in rows if r.strip() and not r.strip().startswith("=")]
        assert _table("offline/B2", tmp_path, file, tmp_path).texts() == paragraphs


def test_omniglot_arrays_hold_torchvisions_images_in_character_order(sources, tmp_path, tiny_torchvision):
    from PIL import Image

    build_standin("data/omniglot", tmp_path, sources)
    folder = tmp_path / "data" / "omniglot"
    ranges = pd.read_csv(folder / "alphabet_ranges.csv")
    assert list(ranges.columns) == ["set", "alphabet", "first_char_id", "last_char_id", "n_chars"]
    for split in ("background", "evaluation"):
        with np.load(folder / f"images_{split}.npz") as z:
            images, labels = z["images"], z["labels"]
        assert images.dtype == bool and images.shape == (6, 20, 105, 105)
        assert (labels == np.arange(6)[:, None]).all()
        # the first character (smallest id) by its first and last drawers, as torchvision opens them
        folder_tv = Path(sources["torchvision:Omniglot"]) / "omniglot-py" / f"images_{split}"
        for drawer in (0, 19):
            png = folder_tv / "Alphabet_0" / "character01" / f"0000_{drawer + 1:02d}.png"
            assert (images[0, drawer] == (np.asarray(Image.open(png).convert("L")) > 127)).all()
        assert not (images[0, 0] == images[1, 0]).all()  # characters differ
        assert ranges[ranges["set"] == split]["n_chars"].sum() == 6
    pool = _table("offline/C1", tmp_path, "evaluation", tmp_path)
    assert pool.n == 6 * 20 and pool.labels.tolist() == [c for c in range(6) for _ in range(20)]


def test_cifar10_archive_is_torchvisions_images_as_jpeg_per_class(sources, tmp_path, tiny_torchvision):
    import torchvision.datasets as tvd

    build_standin("data/cifar10/cifar10_jpg.tar.gz", tmp_path, sources)
    train = _table("offline/A1", tmp_path, "train", tmp_path)
    ds = tvd.CIFAR10(str(sources["torchvision:CIFAR10"]), train=True)
    assert train.n == len(ds) and sorted(train.labels.tolist()) == sorted(ds.targets)
    assert [f.parent.name for f in train.files[:1]] == ["airplane"] and train.files[0].name == "0000.jpg"
    image = np.asarray(train.get(0), dtype=np.float32)  # the first airplane, through JPEG
    first = ds.data[ds.targets.index(0)].astype(np.float32)
    assert image.shape == (32, 32, 3) and np.abs(image - first).mean() < 8  # lossy, yet the same picture
    assert _table("offline/A1", tmp_path, "test", tmp_path).n == 20


@pytest.mark.parametrize("backbone", ["minilm", "efficientnet_lite0", "mobilenetv3_small_075", "mobilenet_v2"])
def test_backbone_weights_are_the_sources_and_load_through_their_config(backbone, sources, tmp_path):
    from glai.data.backbones import build_backbone

    cfg = compose_config([f"backbone={backbone}", f"data_root={tmp_path}"])
    standin = standin_for(cfg.backbone.path)
    standin.build(tmp_path, sources)
    if backbone == "minilm":
        cfg = compose_config([f"backbone={backbone}", f"data_root={tmp_path}", f"backbone.embed_dim={D}"])
    model = build_backbone(cfg.backbone, tmp_path, device="cpu")
    source = sources[standin.source]
    if backbone == "minilm":
        from transformers import AutoModel

        expected = AutoModel.from_pretrained(str(source)).state_dict()
    elif backbone == "mobilenet_v2":
        expected = torch.load(source, weights_only=True)
    else:
        from safetensors.torch import load_file

        expected = load_file(str(source))
    loaded = model.model.state_dict()
    shared = set(loaded) & set(expected)
    assert len(shared) >= len(loaded) - 1  # everything but a position-id buffer
    assert all(torch.equal(loaded[k], expected[k]) for k in shared)


def test_an_interrupted_build_leaves_nothing(tmp_path):
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises on a source that is not there
        build_standin("data/dbpedia14", tmp_path, {"fancyzhx/dbpedia_14": tmp_path / "no-such-clone"})
    assert not (tmp_path / "data" / "dbpedia14").exists()
    assert [p.name for p in (tmp_path / "data").iterdir()] == []


@pytest.mark.parametrize("experiment", ["ffn/dbpedia", "offline/A2"])
def test_prefetch_builds_the_standins_and_the_same_command_then_runs_offline(
        experiment, prefetch_module, sources, tmp_path, monkeypatch):
    """make prefetch EXP=<experiment> on a machine with internet (here: the sources' hub-format copies), then the
    run command, offline, reads what it built: the experiment's own dataset and backbone configs, unchanged but
    for the tiny model's widths."""
    from glai.runner import run

    root, lines = tmp_path / "data_root", []
    base = [f"experiment={experiment}", f"data_root={root}", f"cache_dir={tmp_path}/cache"]
    assert prefetch_module.prefetch(base, echo=lines.append, sources=sources) == 0, lines
    assert lines[0].startswith("[prefetch] ok stand-in data/dbpedia14 built at")
    assert lines[1].startswith("[prefetch] ok stand-in weights/all-MiniLM-L6-v2 built at")
    assert lines[-1].startswith("HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python run.py experiment=")
    assert sorted(p.relative_to(root).as_posix() for p in root.glob("*/*")) == [
        "data/dbpedia14", "weights/all-MiniLM-L6-v2"]
    again = []
    assert prefetch_module.prefetch(base, echo=again.append, sources={}) == 0  # built once, then left as it is
    assert "already at" in again[0] and "already at" in again[1]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    head, arch = ("ffn_glai", f"[{D},{D_FF},14]") if experiment == "ffn/dbpedia" else ("glai", f"[{D},32,14]")
    rec = run(compose_config(base + [f"head={head}", f"experiment.arch={arch}", f"backbone.embed_dim={D}",
                                     f"results_dir={tmp_path}/runs", "experiment.max_epochs=2", "verbose=false"]
                             + (["experiment.reduced_epochs_mode=fixed", "experiment.reduced_epochs=1"]
                                if head == "glai" else [])))
    assert rec["status"] == "done", rec.get("error")
    assert rec["config"]["dataset"]["path"] == str((root / "data" / "dbpedia14").resolve())
    assert rec["config"]["backbone"]["path"] == str((root / "weights" / "all-MiniLM-L6-v2").resolve())


def test_prefetch_runs_the_loaders_and_prints_the_offline_command(prefetch_module, tmp_path):
    assets = build_tiny_assets(tmp_path / "tiny")
    overrides = tiny_experiment_overrides("A2", assets)
    lines = []
    assert prefetch_module.prefetch(overrides, echo=lines.append) == 0
    assert lines[0].startswith("[prefetch] ok backbone tiny_bert") and lines[1].startswith("[prefetch] ok dataset")
    assert lines[-1].startswith("HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python run.py ")
    assert "experiment=A2" in lines[-1]


def test_prefetch_names_what_failed(prefetch_module, tmp_path):
    lines = []
    code = prefetch_module.prefetch(["experiment=offline/A2", f"data_root={tmp_path}/root"], echo=lines.append,
                                    sources={"fancyzhx/dbpedia_14": tmp_path / "no-such-clone"})
    assert code == 1 and lines[-1].startswith("[prefetch] FAILED stand-in data/dbpedia14")
    assert not (tmp_path / "root" / "data" / "dbpedia14").exists()


def test_source_arguments_are_parsed_or_refused(prefetch_module, capsys):
    overrides, sources = prefetch_module.parse_args(
        ["--source", "fancyzhx/dbpedia_14=/m/db", "experiment=ffn/dbpedia", "--source=a/b=/m/ab"])
    assert overrides == ["experiment=ffn/dbpedia"] and sources == {"fancyzhx/dbpedia_14": "/m/db", "a/b": "/m/ab"}
    with pytest.raises(SystemExit) as exit_info:
        prefetch_module.parse_args(["--source", "fancyzhx/dbpedia_14"])
    assert exit_info.value.code == 2 and "--source" in capsys.readouterr().err
