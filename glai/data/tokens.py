"""Family T's cached inputs (docs/method.md, Family T): the per-token input of a frozen encoder's trained
feed-forward block.

The frozen layers below the trained block run once per split; what enters the block -- the attention output ``a``
of the layer whose feed-forward block trains, per token, with the attention mask -- is stored in the embedding
cache like the heads' embeddings (the same key fields, checksums, atomic writes and locks:
:class:`glai.data.cache.EmbeddingCache`), under a key that adds the block's layer. ``load_tokens(cfg)`` is what the
runner calls for a family T run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from glai.data.backbones import TextBackbone, backbone_modality
from glai.data.cache import EmbeddingCache
from glai.data.embeddings import _LazyBackbone, _memoised_identity, cache_key
from glai.data.readers.base import abs_path
from glai.data.roles import load_splits, roles_for_family
from glai.errors import ConfigError, DataError

__all__ = ["TOKEN_FORMAT", "block_input_layer", "load_tokens", "token_inputs"]

#: The cache key's marker of a token entry (bumped when what is stored changes).
TOKEN_FORMAT = 1


def _layers(model: torch.nn.Module):
    base = model
    for attr in ("bert", "roberta", "base_model"):
        if getattr(getattr(base, "encoder", None), "layer", None) is None and isinstance(getattr(base, attr, None),
                                                                                       torch.nn.Module):
            base = getattr(base, attr)
    return getattr(getattr(base, "encoder", None), "layer", None)


def block_input_layer(model: torch.nn.Module, blocks: int) -> int:
    """The index in ``encoder.layer`` of the first layer whose feed-forward block trains (``ffn.blocks`` last ones).

    Raises:
        ConfigError: a model without a BERT-style ``encoder.layer`` list, or ``blocks`` out of range (both name
            the model, the key and a fix).
    """
    layers = _layers(model)
    if layers is None or not len(layers) or getattr(layers[-1], "intermediate", None) is None:
        raise ConfigError(f"backbone {type(model).__name__}: no encoder.layer[i].intermediate, so the input of its "
                          "feed-forward blocks cannot be read (family T reads BERT-style layers: encoder.layer[i]."
                          "intermediate.dense, output.dense, output.LayerNorm). Fix: backbone= a BERT-style encoder "
                          "(e.g. backbone=minilm)")
    if not 1 <= blocks <= len(layers):
        raise ConfigError(f"ffn.blocks={blocks}: {type(model).__name__} has {len(layers)} layers. "
                          f"Fix: 1 <= ffn.blocks <= {len(layers)}")
    return len(layers) - blocks


@torch.no_grad()
def token_inputs(backbone: TextBackbone, texts: Sequence[str], blocks: int) -> dict[str, torch.Tensor]:
    """What enters the feed-forward block of layer ``len(layers) - blocks``, for every text.

    The encoder runs in batches (longest texts first, as :class:`glai.data.backbones.TextBackbone` embeds); a
    forward pre-hook on the layer's ``intermediate`` module reads its input, the attention output ``a``.

    Returns:
        ``{"a": float32 [N, L, d], "mask": bool [N, L]}``: ``L`` the longest text's token count (at most
        ``backbone.max_length``); padding positions hold zeros and ``mask`` False.

    Raises:
        ConfigError: the model's blocks cannot be read (:func:`block_input_layer`).
    """
    model = backbone.model
    layer = _layers(model)[block_input_layer(model, blocks)]
    texts = [str(t) for t in texts]
    order = np.argsort([-len(t) for t in texts], kind="stable")
    captured: list[torch.Tensor] = []
    hook = layer.intermediate.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    rows: list[tuple[np.ndarray, torch.Tensor, torch.Tensor]] = []
    try:
        for start in range(0, len(texts), backbone.batch_size):
            idx = order[start:start + backbone.batch_size]
            batch = {k: v.to(backbone.device) for k, v in backbone.tokenize([texts[i] for i in idx]).items()}
            captured.clear()
            with torch.inference_mode(), backbone._autocast():
                model(**batch)
            if len(captured) != 1:
                raise ConfigError(f"backbone {type(model).__name__}: the feed-forward block of layer "
                                  f"{block_input_layer(model, blocks)} ran {len(captured)} times in one forward "
                                  "pass (chunked feed-forward?). Fix: a BERT-style encoder (e.g. backbone=minilm)")
            rows.append((idx, captured[0].float().cpu(), batch["attention_mask"].bool().cpu()))
    finally:
        hook.remove()
    length = max(m.shape[1] for _, _, m in rows) if rows else 0
    d = rows[0][1].shape[-1] if rows else 0
    a = torch.zeros(len(texts), length, d)
    mask = torch.zeros(len(texts), length, dtype=torch.bool)
    for idx, h, m in rows:
        where = torch.from_numpy(idx)
        a[where, : h.shape[1]] = h * m.unsqueeze(-1)
        mask[where, : m.shape[1]] = m
    return {"a": a.contiguous(), "mask": mask.contiguous()}


def load_tokens(cfg: DictConfig, report: dict | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Family T's ``train`` and ``val`` splits: the trained block's per-token input under the frozen encoder.

    Args:
        cfg: a composed family T config (``cfg.ffn.blocks``, ``cfg.dataset`` of text, ``cfg.backbone`` a
            transformers encoder).
        report: filled with the cache's events (hits, builds), as :func:`glai.data.embeddings.extract_embeddings`.

    Returns:
        ``{role: {"a": float32 [N, L, d], "mask": bool [N, L], "y": int64 [N]}}``.

    Raises:
        ConfigError: a dataset that is not text, or a model whose blocks cannot be read.
        DataError: a split without labels, or rows without a single token.
        DatasetUnavailableError / BackboneUnavailableError: as for embeddings.
    """
    dataset, backbone_cfg = cfg.dataset, cfg.backbone
    if backbone_modality(backbone_cfg) != "text" or dataset.modality != "text":
        raise ConfigError(f"family T trains a text encoder's feed-forward block: dataset {dataset.name!r} holds "
                          f"{dataset.modality} and backbone {backbone_cfg.name!r} embeds "
                          f"{backbone_modality(backbone_cfg)}. Fix: dataset=csv (or another text dataset) and "
                          "backbone=minilm")
    data_root, cache_dir = cfg.get("data_root"), cfg.get("cache_dir", ".cache/glai")
    raws = load_splits(dataset, roles_for_family("T"), data_root=data_root, cache_dir=cache_dir)
    cache = EmbeddingCache(abs_path(cache_dir))
    lazy = _LazyBackbone(backbone_cfg, data_root, cfg.get("device", "auto"))
    identity = _memoised_identity(cache, lazy, backbone_cfg, data_root, cfg.get("device", "auto"))
    blocks = int(cfg.ffn.blocks)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for role, raw in raws.items():
        if raw.labels is None:
            raise DataError(f"the {role} split of dataset {dataset.name!r} has no labels: family T classifies. Fix: "
                            "dataset.label_column= the column of class labels")
        key = {**cache_key(identity, raw), "tokens": {"format": TOKEN_FORMAT, "input_of_trained_blocks": blocks}}

        def compute(raw=raw):
            tensors = token_inputs(lazy.get(), raw.samples, blocks)
            return {**tensors, "y": torch.from_numpy(np.asarray(raw.labels)).long()}

        out[role] = cache.get_or_compute(key, compute, extra={"info": raw.info})
        empty = int((~out[role]["mask"].any(1)).sum())
        if empty:
            raise DataError(f"{empty} rows of the {role} split of dataset {dataset.name!r} have no token (empty "
                            "text). Fix: drop them from the data")
    if report is not None:
        report.update(events=cache.events, backbone_built=lazy.instance is not None)
    return out

