"""Frozen-backbone embeddings of a dataset's splits, through the embedding cache.

`load_embeddings(cfg)` is what `glai.data.loading.load_data` calls for every dataset that is not
scikit-learn's digits: it opens the family's roles (`train` + `val` for A and B, `pool` for C), builds
the backbone, and returns each role's embeddings from `EmbeddingCache`, extracting them on the first call.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import torch
from omegaconf import DictConfig

from glai.data.backbones import FrozenBackbone, backbone_modality, build_backbone, local_weights_signature
from glai.data.cache import EmbeddingCache, memoised_json
from glai.data.readers.base import abs_path
from glai.data.roles import drop_undecodable, load_splits, roles_for_family
from glai.data.splits import EmbeddingSplit

__all__ = ["cache_key", "extract_embeddings", "load_embeddings"]

log = logging.getLogger(__name__)


class _LazyBackbone:
    """Builds the backbone on first use, so a cache hit with memoised identity loads no model."""

    def __init__(self, cfg, data_root, device):
        self.cfg, self.data_root, self.device = cfg, data_root, device
        self.instance: FrozenBackbone | None = None

    def get(self) -> FrozenBackbone:
        if self.instance is None:
            self.instance = build_backbone(self.cfg, data_root=self.data_root, device=self.device)
        return self.instance


def _memoised_identity(cache: EmbeddingCache, backbone: _LazyBackbone, cfg, data_root, device) -> dict:
    """The backbone's cache-key identity, memoised under `<cache>/identities/` for local weights.

    The memo is keyed by `local_weights_signature` (config, weight files' size and mtime, library
    versions); hub weights have no signature and are always loaded to fingerprint them.
    """
    signature = local_weights_signature(cfg, data_root, device)
    memo = cache.root / "identities" / f"{signature}.json" if signature else None
    return memoised_json(memo, lambda: backbone.get().identity())


def cache_key(backbone_identity: dict, raw) -> dict:
    """The embedding cache's key of one split: backbone (id, weights, preprocessing, pooling, dtype) + dataset part.

    The dataset part holds the name, the source (hub id or local path and format), the split, the
    content fingerprint (source files / HF fingerprint + selected indices) and the subset description.
    Labels' use (`use_labels`) is not part of the key: a labelled entry serves unlabeled families too.
    """
    return {
        "backbone": backbone_identity,
        "dataset": {
            "name": raw.info["name"],
            "split": raw.split,
            "source": raw.info["source"],
            "fingerprint": raw.fingerprint,
            "subset": raw.info["subset"],
        },
    }


def extract_embeddings(
    dataset_cfg,
    backbone_cfg,
    roles: Sequence[str],
    data_root: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    device: str = "auto",
    progress: bool = True,
    report: dict | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """Embeddings of `roles` of `dataset_cfg` under `backbone_cfg`, cached.

    Returns:
        {role: {"x": float32 [N, d], "y"?: int64 [N]}} ("y" absent for unlabeled sources).

    Raises:
        DatasetUnavailableError / BackboneUnavailableError: offline and no local copy configured; the
            message names the config key (`dataset.path`, `backbone.path`) and env var (GLAI_DATA_ROOT).
    """
    t0 = time.perf_counter()
    raws = load_splits(dataset_cfg, roles, data_root=data_root, cache_dir=cache_dir)
    if backbone_modality(backbone_cfg) != dataset_cfg.modality:
        raise ValueError(
            f"backbone {backbone_cfg.name!r} embeds {backbone_modality(backbone_cfg)} but dataset "
            f"{dataset_cfg.name!r} holds {dataset_cfg.modality}; pair image backbones with image datasets and "
            "text with text"
        )
    cache = EmbeddingCache(abs_path(cache_dir))
    backbone = _LazyBackbone(backbone_cfg, data_root, device)
    identity = _memoised_identity(cache, backbone, backbone_cfg, data_root, device)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for role, raw in raws.items():
        key = cache_key(identity, raw)

        def compute(raw=raw):
            if getattr(dataset_cfg, "on_bad_image", "stop") == "skip" and raw.modality == "image":
                raw, skipped = drop_undecodable(raw)
                # stored in the cache manifest: which samples the embeddings leave out
                raw.info["skipped_images"] = skipped  # the same dict as the outer raw's
            x = backbone.get().embed(raw.samples, desc=f"{backbone_cfg.name} {dataset_cfg.name}/{raw.split}",
                                     progress=progress)
            tensors = {"x": x.float().contiguous()}
            if raw.labels is not None:
                tensors["y"] = torch.from_numpy(raw.labels).long()
            return tensors

        out[role] = cache.get_or_compute(key, compute, extra={"info": raw.info})
    if report is not None:
        report.update({
            "events": cache.events,
            "forward_calls": backbone.instance.forward_calls if backbone.instance is not None else 0,
            "backbone_built": backbone.instance is not None,
            "total_s": time.perf_counter() - t0,
            "shapes": {r: {k: list(v.shape) for k, v in t.items()} for r, t in out.items()},
        })
    return out


def load_embeddings(cfg: DictConfig, report: dict | None = None) -> dict:
    """The family's splits of `cfg.dataset` embedded by `cfg.backbone`, as `EmbeddingSplit`s.

    Family A and B get {"train", "val"}, family C {"pool"} (the held-out classes the episodes are drawn
    from). Labels are dropped when `dataset.use_labels` is false (family B).

    The fit with the head (width, labels) is checked by `glai.data.splits.check_splits`.

    Raises:
        DatasetUnavailableError / BackboneUnavailableError: see `extract_embeddings`.
    """
    family = cfg.experiment.family
    roles = roles_for_family(family)
    tensors = extract_embeddings(
        cfg.dataset, cfg.backbone, roles,
        data_root=cfg.get("data_root"), cache_dir=cfg.get("cache_dir", ".cache/glai"),
        device=cfg.get("device", "auto"), progress=True, report=report,
    )
    out = {}
    for role, t in tensors.items():
        x, y = t["x"], t.get("y")
        if not cfg.dataset.use_labels:
            y = None
        out[role] = EmbeddingSplit(x=x, y=y)
    return out
