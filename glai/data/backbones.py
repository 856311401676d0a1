"""Frozen feature extractors (docs/method.md, Families): timm / torchvision image models and transformers text models.

`build_backbone(cfg.backbone)` returns a `FrozenBackbone` in eval mode; `embed(samples)` runs it batched
under `torch.inference_mode()` with a tqdm bar and returns float32 [N, d] on the CPU. On a GPU the
forward pass may run under bf16 / fp16 autocast (`backbone.dtype`); on the CPU it is fp32.

| model | pooling (default) | d |
| --- | --- | --- |
| timm `deit_small_patch16_224` | cls: the pooled CLS token (`forward_head(pre_logits=True)`) | 384 |
| timm `efficientnet_b0` | avg: global average of `forward_features` | 1280 |
| timm `mobilenetv3_small_100` | avg: global average of `forward_features` (before `conv_head`) | 576 |
| transformers `roberta-base` | cls: first token | 768 |
| transformers `gpt2`, `xlnet-base-cased` | last: last non-pad token | 768 |

Weights come from the hub (`model_id`) or, for offline use, from `backbone.path`: a `save_pretrained`
folder or a checkpoint file (safetensors or torch state dict). The weights fingerprint in the cache
key is the sha256 of the loaded state dict, so the key changes whenever the weights do.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from glai.data.readers.base import resolve_path
from glai.data.readers.hub import hub_offline, looks_offline

__all__ = [
    "BackboneUnavailableError",
    "FrozenBackbone",
    "ImageBackbone",
    "TextBackbone",
    "backbone_modality",
    "build_backbone",
    "local_weights_signature",
    "pool_tokens",
    "state_dict_sha256",
]

log = logging.getLogger(__name__)

_DEFAULT_TEXT_POOLING = {"roberta": "cls", "bert": "cls", "gpt2": "last", "xlnet": "last", "gpt_neo": "last"}
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class BackboneUnavailableError(RuntimeError):
    """The backbone's weights need a download that cannot happen here (offline), or `path` is missing."""


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 hex over the names, dtypes, shapes and bytes of every tensor of `module.state_dict()`."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _resolve_device(device: str) -> torch.device:
    if device in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _compute_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _DTYPES[dtype]


def _load_state_dict(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    state = torch.load(str(file), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def _weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    for name in ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "model.pth"):
        if (path / name).exists():
            return path / name
    raise BackboneUnavailableError(f"backbone.path={path}: no model.safetensors / pytorch_model.bin in it")


class FrozenBackbone:
    """A frozen, eval-mode feature extractor.

    Attributes:
        name: config name (`backbone.name`).
        modality: "image" | "text".
        model: the torch module (eval, requires_grad False).
        device: where the forward pass runs.
        compute_dtype: autocast dtype on GPU, float32 on CPU.
        pooling: the resolved pooling ("cls" | "mean" | "last" | "avg" | "pre_logits").
        batch_size: samples per forward pass.
    """

    modality: str = ""

    def __init__(self, cfg, model: nn.Module, pooling: str, device: str = "auto"):
        self.cfg, self.name = cfg, cfg.name
        self.device = _resolve_device(cfg.device if cfg.device != "auto" else device)
        self.compute_dtype = _compute_dtype(cfg.dtype, self.device)
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.pooling = pooling
        self.batch_size = int(cfg.batch_size)
        self._weights_sha256: str | None = None
        self.forward_calls = 0

    @property
    def weights_sha256(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = state_dict_sha256(self.model)
        return self._weights_sha256

    def preprocessing(self) -> dict:
        """JSON-able description of the preprocessing (part of the cache key)."""
        raise NotImplementedError

    def identity(self) -> dict:
        """The backbone part of the embedding cache key: id, weights, preprocessing, pooling, dtype."""
        return {
            "name": self.name,
            "library": self.cfg.library,
            "model_id": self.cfg.model_id,
            "class": type(self.model).__name__,
            "weights_sha256": self.weights_sha256,
            "pooling": self.pooling,
            "preprocessing": self.preprocessing(),
            "compute_dtype": str(self.compute_dtype).replace("torch.", ""),
            "embedding_dtype": "float32",
        }

    def _autocast(self):
        if self.device.type == "cuda" and self.compute_dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.compute_dtype)
        return torch.autocast("cpu", enabled=False)

    def forward_batch(self, batch) -> torch.Tensor:
        """Embeddings of one preprocessed batch: float32 [B, d] on the CPU."""
        raise NotImplementedError

    def embed(self, samples: Sequence, desc: str = "", progress: bool = True) -> torch.Tensor:
        """Embed every sample (PIL images or str) in order, batched, without gradients.

        Returns:
            float32 [N, d] on the CPU.
        """
        threads = getattr(self.cfg, "num_threads", None)
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(int(threads))
        try:
            return self._embed(samples, desc, progress)
        finally:
            torch.set_num_threads(previous)

    def _embed(self, samples: Sequence, desc: str, progress: bool) -> torch.Tensor:
        raise NotImplementedError

    def _check_dim(self, out: torch.Tensor) -> None:
        want = self.cfg.embed_dim
        if want is not None and out.shape[-1] != want:
            raise ValueError(
                f"backbone {self.name!r} gives {out.shape[-1]}-d embeddings but backbone.embed_dim={want}; "
                "check backbone.pooling / model_id or fix embed_dim"
            )


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "embedding", unit="sample", disable=not enabled, mininterval=2.0,
                dynamic_ncols=True)


class _ImageSet(torch.utils.data.Dataset):
    def __init__(self, samples: Sequence, transform):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        return self.transform(self.samples[i])


class ImageBackbone(FrozenBackbone):
    """timm or torchvision image model with timm's eval transform (optionally overridden)."""

    modality = "image"

    def __init__(self, cfg, model: nn.Module, pooling: str, data_config: dict, device: str = "auto"):
        super().__init__(cfg, model, pooling, device)
        from timm.data import create_transform

        dc = dict(data_config)
        if cfg.input_size is not None:
            dc["input_size"] = (3, int(cfg.input_size), int(cfg.input_size))
        if cfg.mean is not None:
            dc["mean"] = tuple(float(v) for v in (list(cfg.mean) * 3)[:3]) if len(cfg.mean) == 1 else tuple(cfg.mean)
        if cfg.std is not None:
            dc["std"] = tuple(float(v) for v in (list(cfg.std) * 3)[:3]) if len(cfg.std) == 1 else tuple(cfg.std)
        if cfg.crop_pct is not None:
            dc["crop_pct"] = float(cfg.crop_pct)
        self.data_config = dc
        self.transform = create_transform(**dc, is_training=False)

    def preprocessing(self) -> dict:
        dc = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.data_config.items()}
        return {"kind": "timm_eval_transform", **dc}

    def forward_batch(self, batch: torch.Tensor) -> torch.Tensor:
        self.forward_calls += 1
        with torch.inference_mode(), self._autocast():
            x = batch.to(self.device, non_blocking=True)
            out = self._pool(x)
        return out.float().cpu()

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        if hasattr(model, "forward_features"):
            feats = model.forward_features(x)
        else:  # torchvision: `features` then the pooling below
            feats = model.features(x)
        if self.pooling == "pre_logits":
            return model.forward_head(feats, pre_logits=True).flatten(1)
        if feats.ndim == 4:  # [B, C, H, W]
            if self.pooling != "avg":
                raise ValueError(f"backbone.pooling={self.pooling!r} needs tokens; a CNN supports avg|pre_logits")
            return feats.mean(dim=(2, 3))
        if feats.ndim == 3:  # [B, T, C]
            n_prefix = int(getattr(model, "num_prefix_tokens", 1))
            if self.pooling == "cls":
                return feats[:, 0]
            if self.pooling in ("avg", "mean"):
                return feats[:, n_prefix:].mean(dim=1)
            if self.pooling == "last":
                return feats[:, -1]
        if feats.ndim == 2:
            return feats
        raise ValueError(f"backbone.pooling={self.pooling!r} unsupported for features of shape {tuple(feats.shape)}")

    def _embed(self, samples: Sequence, desc: str, progress: bool) -> torch.Tensor:
        loader = torch.utils.data.DataLoader(
            _ImageSet(samples, self.transform), batch_size=self.batch_size, shuffle=False,
            num_workers=int(self.cfg.num_workers), pin_memory=self.device.type == "cuda",
        )
        outs = []
        with _progress(len(samples), desc, progress) as bar:
            for batch in loader:
                out = self.forward_batch(batch)
                if not outs:
                    self._check_dim(out)
                outs.append(out)
                bar.update(len(batch))
        return torch.cat(outs) if outs else torch.empty(0, 0)


class TextBackbone(FrozenBackbone):
    """transformers encoder / decoder with cls | mean | last pooling over the attention mask."""

    modality = "text"

    def __init__(self, cfg, model: nn.Module, tokenizer, pooling: str, device: str = "auto"):
        super().__init__(cfg, model, pooling, device)
        if tokenizer.pad_token is None:
            # GPT-2 has no pad token; padded positions are masked out by the pooling anyway
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self.tokenizer = tokenizer
        self.max_length = int(cfg.max_length)

    def preprocessing(self) -> dict:
        tok = self.tokenizer
        backend = getattr(tok, "backend_tokenizer", None)
        vocab_sha = hashlib.sha256(
            backend.to_str().encode() if backend is not None else repr(sorted(tok.get_vocab().items())).encode()
        ).hexdigest()
        return {
            "kind": "tokenizer",
            "class": type(tok).__name__,
            "tokenizer_sha256": vocab_sha,
            "max_length": self.max_length,
            "truncation": True,
            "padding_side": tok.padding_side,
            "pad_token": tok.pad_token,
        }

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    def forward_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.forward_calls += 1
        with torch.inference_mode(), self._autocast():
            batch = {k: v.to(self.device) for k, v in batch.items()}
            hidden = self.model(**batch).last_hidden_state  # [B, T, d]
            out = pool_tokens(hidden.float(), batch["attention_mask"], self.pooling)
        return out.float().cpu()

    def _embed(self, samples: Sequence, desc: str, progress: bool) -> torch.Tensor:
        texts = [str(t) for t in samples]
        # longest first, so batches hold similar lengths (less padding) and memory peaks show up early
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: torch.Tensor | None = None
        with _progress(len(texts), desc, progress) as bar:
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                emb = self.forward_batch(self.tokenize([texts[i] for i in idx]))
                if out is None:
                    self._check_dim(emb)
                    out = torch.empty(len(texts), emb.shape[1], dtype=torch.float32)
                out[torch.from_numpy(idx)] = emb
                bar.update(len(idx))
        return out if out is not None else torch.empty(0, 0)


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool token states over the attention mask, for right or left padding.

    Args:
        hidden: float [B, T, d] token states.
        mask: int/bool [B, T], 1 for real tokens.
        pooling: "cls" (first real token), "mean" (mean over real tokens), "last" (last real token).

    Returns:
        float [B, d].
    """
    mask = mask.to(hidden.device)
    positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(mask)  # [B, T]
    real = mask.bool()
    if pooling == "mean":
        m = real.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    if pooling == "last":
        idx = torch.where(real, positions, torch.full_like(positions, -1)).max(dim=1).values.clamp_min(0)
    elif pooling == "cls":
        big = hidden.shape[1]
        idx = torch.where(real, positions, torch.full_like(positions, big)).min(dim=1).values.clamp_max(big - 1)
    else:
        raise ValueError(f"backbone.pooling={pooling!r}: text models support cls | mean | last")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


def _hub_error(cfg, exc: BaseException, download: str) -> BackboneUnavailableError:
    return BackboneUnavailableError(
        f"Backbone {cfg.name!r} ({cfg.library} {cfg.model_id!r}) needs a download from the HF hub, which is "
        f"not reachable here (offline) and not in the local HF cache. Fix: on a machine with internet run "
        f"`make prefetch EXP=<experiment>` (it fills the HF cache that HF_HOME names; share it with this "
        f"machine), or set `backbone.path=/local/weights` to a local copy (relative paths are resolved against "
        f"data_root, i.e. GLAI_DATA_ROOT), e.g. made there with {download}. "
        f"(cause: {type(exc).__name__}: {exc})"
    )


def _build_timm(cfg, path: Path | None, device: str) -> ImageBackbone:
    import timm
    from timm.data import resolve_data_config

    if not cfg.model_id:
        raise ValueError(f"backbone {cfg.name!r}: backbone.model_id (the timm architecture name) is required")
    if path is None:
        try:
            model = timm.create_model(cfg.model_id, pretrained=True, num_classes=0)
        except Exception as exc:  # noqa: BLE001
            if hub_offline() or looks_offline(exc):
                raise _hub_error(cfg, exc, (
                    f"`m = timm.create_model({cfg.model_id!r}, pretrained=True); "
                    f"safetensors.torch.save_file(m.state_dict(), '{cfg.model_id}.safetensors')`")) from exc
            raise
    else:
        model = timm.create_model(cfg.model_id, pretrained=False, num_classes=0)
        state = _load_state_dict(_weights_file(path))
        own = set(model.state_dict())
        head = model.pretrained_cfg.get("classifier") or "classifier"
        heads = head if isinstance(head, (list, tuple)) else [head]
        # checkpoints of the full classifier: drop the classification layer the embedding model lacks
        state = {k: v for k, v in state.items() if k in own or not any(k.startswith(h + ".") for h in heads)}
        model.load_state_dict(state, strict=True)
    pooling = cfg.pooling
    if pooling == "default":
        pooling = "cls" if getattr(model, "global_pool", None) == "token" else "avg"
    return ImageBackbone(cfg, model, pooling, resolve_data_config({}, model=model), device)


def _build_torchvision(cfg, path: Path | None, device: str) -> ImageBackbone:
    import torchvision

    if not cfg.model_id:
        raise ValueError(f"backbone {cfg.name!r}: backbone.model_id (a torchvision builder, e.g. mobilenet_v2)")
    builder = getattr(torchvision.models, cfg.model_id)
    if path is None:
        try:
            model = builder(weights="DEFAULT")
        except Exception as exc:  # noqa: BLE001
            if looks_offline(exc):
                raise _hub_error(cfg, exc, f"`torchvision.models.{cfg.model_id}(weights='DEFAULT')` and save its "
                                           "state_dict with safetensors") from exc
            raise
    else:
        model = builder()
        model.load_state_dict(_load_state_dict(_weights_file(path)), strict=True)
    pooling = "avg" if cfg.pooling == "default" else cfg.pooling
    data_config = {"input_size": (3, 224, 224), "interpolation": "bilinear", "mean": (0.485, 0.456, 0.406),
                   "std": (0.229, 0.224, 0.225), "crop_pct": 0.875, "crop_mode": "center"}
    return ImageBackbone(cfg, model, pooling, data_config, device)


def _build_transformers(cfg, path: Path | None, device: str) -> TextBackbone:
    from transformers import AutoModel, AutoTokenizer

    source = str(path) if path is not None else cfg.model_id
    if not source:
        raise ValueError(f"backbone {cfg.name!r}: set backbone.model_id (hub id) or backbone.path (local folder)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source)
    except Exception as exc:  # noqa: BLE001
        if path is None and (hub_offline() or looks_offline(exc)):
            raise _hub_error(cfg, exc, (
                f"`AutoModel.from_pretrained({cfg.model_id!r}).save_pretrained(d)` and "
                f"`AutoTokenizer.from_pretrained({cfg.model_id!r}).save_pretrained(d)`")) from exc
        raise
    pooling = cfg.pooling
    if pooling == "default":
        pooling = _DEFAULT_TEXT_POOLING.get(getattr(model.config, "model_type", ""), "mean")
    return TextBackbone(cfg, model, tokenizer, pooling, device)


def backbone_modality(cfg) -> str:
    """"image" for timm / torchvision backbones, "text" for transformers ones (no model is loaded)."""
    return {"timm": "image", "torchvision": "image", "transformers": "text"}.get(cfg.library, "vector")


def local_weights_signature(cfg, data_root: str | os.PathLike | None, device: str = "auto") -> str | None:
    """sha256 over the backbone config, the local weight files' (name, size, mtime) and library versions.

    None when the weights come from the hub (`backbone.path` unset). Used to memoise `identity()` so a
    cache hit need not load the model; any change of the files, the config or the versions changes it.
    """
    import json

    if cfg.path is None:
        return None
    path = resolve_path(cfg.path, data_root)
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    import timm
    import transformers

    dev = _resolve_device(cfg.device if cfg.device != "auto" else device)
    fields = {k: getattr(cfg, k) for k in ("name", "library", "model_id", "pooling", "embed_dim", "max_length",
                                             "input_size", "crop_pct", "dtype")}
    fields.update(mean=list(cfg.mean) if cfg.mean is not None else None,
                  std=list(cfg.std) if cfg.std is not None else None)
    blob = {"cfg": fields, "files": stats, "device": dev.type, "dtype": str(_compute_dtype(cfg.dtype, dev)),
            "versions": [torch.__version__, timm.__version__, transformers.__version__]}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def build_backbone(cfg, data_root: str | os.PathLike | None = None, device: str = "auto") -> FrozenBackbone:
    """The frozen backbone of `cfg` (a `BackboneConfig` or composed `backbone` node).

    Args:
        cfg: backbone config.
        data_root: folder that a relative `backbone.path` is resolved against (GLAI_DATA_ROOT).
        device: used when `backbone.device` is "auto" (e.g. the run's top-level `device`).

    Raises:
        BackboneUnavailableError: hub weights needed while offline, or `backbone.path` does not exist.
        ValueError: `library: none`, or a missing `model_id`.
    """
    from glai.data.config import check_backbone_config

    check_backbone_config(cfg)
    path = None
    if cfg.path is not None:
        path = resolve_path(cfg.path, data_root)
        if not path.exists():
            raise BackboneUnavailableError(
                f"backbone.path={cfg.path!r} of backbone {cfg.name!r} resolves to {path}, which does not exist. "
                "Fix: backbone.path= the local weights, or GLAI_DATA_ROOT / data_root= the folder that "
                "relative paths are taken from."
            )
    if cfg.library == "timm":
        return _build_timm(cfg, path, device)
    if cfg.library == "torchvision":
        return _build_torchvision(cfg, path, device)
    if cfg.library == "transformers":
        return _build_transformers(cfg, path, device)
    raise ValueError(
        f"backbone.library={cfg.library!r}: dataset needs a feature extractor; choose a backbone group "
        "(e.g. backbone=efficientnet_lite0) or use a vector dataset (dataset=digits)"
    )

