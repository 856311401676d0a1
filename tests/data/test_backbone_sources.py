"""The paper's six backbones: their model ids, pooling and embedding widths (conf/backbone/*.yaml) hold for the
real architectures (issue 11).

Nothing is downloaded: each architecture is built from its library's own definition (timm's registry for the
model id; transformers' config class at the released model's widths, one layer deep to stay fast), saved in
the hub's file layout (``model.safetensors``; ``save_pretrained``) and loaded through ``backbone.path`` by the
same code a run uses. The weights are random, so only shapes and pooling are checked, not values.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from glai.config import compose_config
from glai.data.backbones import build_backbone
from tests.data.tiny_fixtures import WORDS, _make_tokenizer

TIMM = ["deit_small", "efficientnet_b0", "mobilenetv3_small"]
#: transformers backbones -> (config class, the released model's widths: hidden size, heads, feed-forward)
TRANSFORMERS = {
    "roberta_base": ("RobertaConfig", dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                                           num_hidden_layers=1)),
    "gpt2": ("GPT2Config", dict(n_embd=768, n_head=12, n_layer=1)),
    "xlnet_base": ("XLNetConfig", dict(d_model=768, n_head=12, d_inner=3072, n_layer=1)),
}


def _backbone_cfg(name: str, path):
    cfg = compose_config([f"backbone={name}", f"backbone.path={path}", "backbone.batch_size=2"]).backbone
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM)
def test_timm_backbone_config_matches_its_architecture(name, tmp_path):
    import timm
    from safetensors.torch import save_file

    model_id = compose_config([f"backbone={name}"]).backbone.model_id
    torch.manual_seed(0)
    model = timm.create_model(model_id, pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    cfg = _backbone_cfg(name, tmp_path)
    backbone = build_backbone(cfg, device="cpu")
    images = [Image.new("RGB", (64, 48), color=(i * 40, 100, 200 - i * 40)) for i in range(3)]
    x = backbone.embed(images, progress=False)
    assert x.shape == (3, cfg.embed_dim) and torch.isfinite(x).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_transformers_backbone_config_matches_its_architecture(name, tmp_path):
    import transformers

    class_name, widths = TRANSFORMERS[name]
    words = [w for ws in WORDS for w in ws]
    tokenizer, n_vocab = _make_tokenizer(words, "gpt2" if name != "roberta_base" else "bert")
    config = getattr(transformers, class_name)(vocab_size=n_vocab, **widths)
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    cfg = _backbone_cfg(name, tmp_path)
    backbone = build_backbone(cfg, device="cpu")
    x = backbone.embed(["red apple fire", "blue ocean sky whale river", "green"], progress=False)
    assert x.shape == (3, cfg.embed_dim) and torch.isfinite(x).all()
    # last-token pooling (GPT-2, XLNet) reads the last real token: padding must not change a text's embedding
    if cfg.pooling == "last":
        alone = backbone.embed(["green"], progress=False)
        assert torch.allclose(alone[0], x[2], atol=1e-4)
