"""EmbeddingCache: hit without a forward pass, corruption and key mismatch detected and rebuilt."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_fixtures import tiny_backbone, tiny_dataset

from glai.data.backbones import ImageBackbone, TextBackbone
from glai.data.cache import EmbeddingCache
from glai.data.config import BackboneConfig, DatasetConfig
from glai.data.embeddings import extract_embeddings


def _extract(assets, cache_dir, kind="images", **dataset_kw):
    bkind = "effnet" if kind == "images" else "bert"
    report: dict = {}
    out = extract_embeddings(DatasetConfig(**{**tiny_dataset(kind, assets), **dataset_kw}),
                             BackboneConfig(**tiny_backbone(bkind, assets)), ["train", "val"], data_root=assets.root,
                             cache_dir=cache_dir, progress=False, report=report)
    return out, report


def _forbid_forward(monkeypatch):
    def boom(self, batch):
        raise AssertionError("backbone forward on a cache hit")

    monkeypatch.setattr(ImageBackbone, "forward_batch", boom)
    monkeypatch.setattr(TextBackbone, "forward_batch", boom)


@pytest.mark.parametrize("kind", ["images", "text"])
def test_second_load_hits_without_forward(tiny_assets, tmp_path, monkeypatch, kind):
    first, report = _extract(tiny_assets, tmp_path, kind)
    assert [e["status"] for e in report["events"]] == ["built", "built"] and report["forward_calls"] > 0
    _forbid_forward(monkeypatch)
    second, report = _extract(tiny_assets, tmp_path, kind)
    assert [e["status"] for e in report["events"]] == ["hit", "hit"] and report["forward_calls"] == 0
    # local weights: the memoised identity means a hit does not even load the model
    assert report["backbone_built"] is False
    for role in first:
        assert torch.equal(first[role]["x"], second[role]["x"])
        assert torch.equal(first[role]["y"], second[role]["y"])


def test_manifest_fields_and_atomic_files(tiny_assets, tmp_path):
    _, report = _extract(tiny_assets, tmp_path)
    folder = tmp_path / "embeddings" / "tiny_effnet" / "tiny_images"
    manifests = sorted(folder.glob("*.json"))
    assert len(manifests) == 2 and len(list(folder.glob("*.safetensors"))) == 2
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]
    m = json.loads(manifests[0].read_text())
    key = m["key"]
    assert key["backbone"]["weights_sha256"] and key["backbone"]["pooling"] == "avg"
    assert key["backbone"]["preprocessing"]["input_size"] == [3, 32, 32]
    assert key["backbone"]["compute_dtype"] == "float32" and key["backbone"]["embedding_dtype"] == "float32"
    assert key["dataset"]["split"] in ("train", "val") and key["dataset"]["subset"]["n"] == 96
    assert m["tensors"]["x"] == {"shape": [96, 256], "dtype": "float32"}
    assert len(m["sha256"]) == 64 and m["bytes"] > 0 and "extract_time_s" in m


def test_other_subset_is_another_entry(tiny_assets, tmp_path):
    _extract(tiny_assets, tmp_path)
    _, report = _extract(tiny_assets, tmp_path, max_per_class=4)
    assert [e["status"] for e in report["events"]] == ["built", "built"]


def _entries(tmp_path):
    return sorted((tmp_path / "embeddings").rglob("*.safetensors"))


def test_corrupt_entry_is_rebuilt(tiny_assets, tmp_path, caplog):
    first, _ = _extract(tiny_assets, tmp_path)
    target = _entries(tmp_path)[0]
    data = bytearray(target.read_bytes())
    for i in range(len(data) - 64, len(data) - 32):
        data[i] ^= 0xFF  # flip bytes inside the tensor payload
    target.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        second, report = _extract(tiny_assets, tmp_path)
    statuses = sorted(e["status"] for e in report["events"])
    assert statuses == ["hit", "rebuilt"]
    assert any("checksum mismatch" in e["reason"] for e in report["events"])
    assert "rebuilding" in caplog.text
    for role in first:
        assert torch.equal(first[role]["x"], second[role]["x"])
    _, report = _extract(tiny_assets, tmp_path)
    assert [e["status"] for e in report["events"]] == ["hit", "hit"]


def test_truncated_and_mismatched_entries_are_rebuilt(tiny_assets, tmp_path):
    _extract(tiny_assets, tmp_path)
    tensors, manifest = _entries(tmp_path)[0], _entries(tmp_path)[0].with_suffix(".json")
    tensors.write_bytes(tensors.read_bytes()[:-100])
    _, report = _extract(tiny_assets, tmp_path)
    assert any("size mismatch" in e["reason"] for e in report["events"])
    m = json.loads(manifest.read_text())
    m["key"]["backbone"]["weights_sha256"] = "0" * 64
    manifest.write_text(json.dumps(m))
    _, report = _extract(tiny_assets, tmp_path)
    assert any("key mismatch" in e["reason"] for e in report["events"])


def test_changed_weights_change_the_key(tiny_assets, tmp_path, monkeypatch):
    import shutil

    import timm
    from safetensors.torch import save_file

    _extract(tiny_assets, tmp_path)
    other = tmp_path / "w" / "other.safetensors"
    other.parent.mkdir()
    shutil.copy(tiny_assets.effnet, other)
    torch.manual_seed(1)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(other))
    report: dict = {}
    extract_embeddings(DatasetConfig(**tiny_dataset("images", tiny_assets)),
                       BackboneConfig(**{**tiny_backbone("effnet", tiny_assets), "path": str(other)}),
                       ["train"], data_root=tiny_assets.root, cache_dir=tmp_path, progress=False, report=report)
    assert [e["status"] for e in report["events"]] == ["built"]


def test_cache_unit_roundtrip(tmp_path):
    cache = EmbeddingCache(tmp_path)
    key = {"backbone": {"name": "b"}, "dataset": {"name": "d", "split": "s"}}
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.randn(5, 3), "y": torch.arange(5)}

    a = cache.get_or_compute(key, compute)
    b = cache.get_or_compute(key, compute)
    assert len(calls) == 1 and torch.equal(a["x"], b["x"]) and b["y"].dtype == torch.int64
    assert cache.load({**key, "backbone": {"name": "b", "v": 2}})[1] == "missing"
