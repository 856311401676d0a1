"""Tiny frozen backbones loaded from local checkpoints; pooling and offline errors."""

from __future__ import annotations

import pytest
import torch
from tiny_fixtures import EFFNET_DIM, TEXT_DIM, tiny_backbone

from glai.data.backbones import BackboneUnavailableError, build_backbone, pool_tokens
from glai.data.config import BackboneConfig


def _bb(kind, assets, **kw):
    return build_backbone(BackboneConfig(**{**tiny_backbone(kind, assets), **kw}))


def test_timm_checkpoint_avg_pool(tiny_assets):
    from PIL import Image

    bb = _bb("effnet", tiny_assets)
    assert not bb.model.training and not any(p.requires_grad for p in bb.model.parameters())
    images = [Image.new("RGB", (40, 30), (i * 20, 100, 200)) for i in range(5)]
    x = bb.embed(images, progress=False)
    assert x.shape == (5, EFFNET_DIM) and x.dtype == torch.float32
    assert torch.allclose(x, bb.embed(images, progress=False))
    assert bb.preprocessing()["input_size"] == [3, 32, 32]
    assert bb.identity()["weights_sha256"] == _bb("effnet", tiny_assets).identity()["weights_sha256"]


def test_timm_checkpoint_with_classifier_is_accepted(tiny_assets, tmp_path):
    """A full-classifier checkpoint (like tf_efficientnet_lite0.safetensors) loads into the embedding model."""
    import timm
    from safetensors.torch import save_file

    full = timm.create_model("test_efficientnet", pretrained=False, num_classes=7)
    path = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
    bb = _bb("effnet", tiny_assets, path=str(path))
    assert "classifier.weight" not in bb.model.state_dict()


def test_embed_dim_mismatch_is_reported(tiny_assets):
    from PIL import Image

    bb = _bb("effnet", tiny_assets, embed_dim=123)
    with pytest.raises(ValueError, match="embed_dim"):
        bb.embed([Image.new("RGB", (32, 32))], progress=False)


@pytest.mark.parametrize("kind,pooling", [("bert", "cls"), ("bert", "mean"), ("gpt2", "last")])
def test_text_backbones(tiny_assets, kind, pooling):
    bb = _bb(kind, tiny_assets, pooling=pooling)
    texts = ["red apple rose", "blue sky", "green frog leaf moss grass forest", "snow"]
    x = bb.embed(texts, progress=False)
    assert x.shape == (4, TEXT_DIM)
    # batching and length sorting do not change a text's embedding
    one = torch.cat([bb.embed([t], progress=False) for t in texts])
    torch.testing.assert_close(x, one, rtol=1e-4, atol=1e-5)


def test_gpt2_gets_a_pad_token(tiny_assets):
    bb = _bb("gpt2", tiny_assets)
    assert bb.tokenizer.pad_token is not None


def test_text_truncation(tiny_assets):
    bb = _bb("bert", tiny_assets, max_length=8)
    batch = bb.tokenize(["red " * 50])
    assert batch["input_ids"].shape[1] == 8


def test_pool_tokens_left_and_right_padding():
    h = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert torch.equal(pool_tokens(h, right, "last")[0], h[0, 2])
    assert torch.equal(pool_tokens(h, left, "last")[0], h[0, 4])
    assert torch.equal(pool_tokens(h, right, "cls")[0], h[0, 0])
    assert torch.equal(pool_tokens(h, left, "cls")[0], h[0, 2])
    torch.testing.assert_close(pool_tokens(h, right, "mean")[0], h[0, :3].mean(0))


def test_missing_weights_path_names_the_key(tiny_assets):
    with pytest.raises(BackboneUnavailableError, match="backbone.path.*GLAI_DATA_ROOT"):
        _bb("effnet", tiny_assets, path="weights/nope.safetensors")


def test_offline_hub_model_error(monkeypatch):
    import timm

    def no_network(*args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co' (LocalEntryNotFoundError)")
        raise AssertionError("unexpected")

    monkeypatch.setattr(timm, "create_model", no_network)
    with pytest.raises(BackboneUnavailableError) as err:
        build_backbone(BackboneConfig(name="deit_small", library="timm", model_id="deit_small_patch16_224"))
    assert "backbone.path=" in str(err.value) and "safetensors" in str(err.value)
