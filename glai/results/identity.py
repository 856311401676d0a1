"""Run identity (docs/method.md, Run identity): which config values make two runs different runs, and the
fingerprint of a run.

Every key of the resolved config (``glai.config.Config``, dotted) is classified in :data:`IDENTITY`, one
place, and ``tests/results/test_identity.py`` fails when the schema gains a key that is not listed here:

- ``setting``: can change the result (or its time): part of the fingerprint, and a difference from the
  unmodified experiment makes the run a variant (never "the paper's X").
- ``environment``: where it ran (device, threads): part of the fingerprint, so runs on different hardware
  are never averaged together, but not a change of the protocol.
- ``label``: the user's tag: part of the fingerprint (a tagged run is its own run).
- ``seed``: part of the run's fingerprint, left out of its *group* fingerprint (the seeds of one setting).
- ``content``: what the local sources hold (``data_content``, added by ``glai.runner.run_identity``: sizes and
  mtimes of the files under the resolved ``dataset.path`` / ``backbone.path``): part of the fingerprint, so a
  file changed in place is a new run, but never a difference of settings (the paths say where the data are).
- ``excluded``: cannot change the result: output and cache paths, verbosity, logging, overwrite, ``data_root``
  (the stored ``dataset.path`` / ``backbone.path`` are already resolved against it).

The settings of GLAI's reduced phase (:data:`GLAI_ONLY`) count for GLAI runs only; keys a head never reads
(:data:`UNREAD`: rho for ``mlp`` and ``linear``) leave its fingerprint, so a rho sweep reuses one MLP.
A feature switched off
(:data:`OFF_VALUES`, and the settings that depend on it, :data:`DEPENDS_ON`) does not count at all.

A fingerprint is the SHA-256 of the canonical JSON of the included ``key: value`` pairs. Keys a config does
not have are simply absent (records of an older schema keep their own fingerprint, computed from their
stored config); keys not listed in :data:`IDENTITY` are included as settings (never silently ignored).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "CLASSES",
    "DEPENDS_ON",
    "FAMILY_ONLY",
    "FFN_HEAD_KEYS",
    "GLAI_HEADS",
    "GLAI_ONLY",
    "IDENTITY",
    "OFF_VALUES",
    "RUNTIME_KEYS",
    "UNREAD",
    "differences",
    "fingerprint",
    "flatten",
    "identity_items",
    "is_variant_key",
    "reads_rho",
    "short",
]

CLASSES = ("setting", "environment", "label", "seed", "content", "excluded")

_EXPERIMENT = {k: "setting" for k in (
    "name", "family", "arch", "lr", "batch_size", "wd_mlp", "wd_glai", "reduced_epochs", "reduced_epochs_mode",
    "reduced_fraction", "monitor", "patience",
    "min_delta", "min_delta_rows", "max_epochs", "dropout", "temperature", "n_way", "k_shot", "q_query")}
# the list of documented deviations from the paper describes the experiment; it does not change a run
_EXPERIMENT["deviations"] = "excluded"
_HEAD = {k: "setting" for k in (
    "name", "optimizer", "lr", "weight_decay", "width_factor", "reduced_optimizer", "reduced_weight_decay",
    "reduced_lr",
    "estimator", "backend", "structure_threshold", "l0_lambda", "l0_sigma", "selector")}
# the estimator backend computes the same function (to float rounding) at another speed, like the device
_HEAD["backend"] = "environment"
_DATASET = {k: "setting" for k in (
    "name", "source", "modality", "hf_path", "hf_name", "path", "format", "train_split", "val_split",
    "pool_split", "val_fraction", "image_column", "text_columns", "label_column", "use_labels", "text_unit",
    "min_chars", "max_train", "max_val", "max_pool", "max_per_class", "num_classes", "subset_seed",
    "image_mode", "invert_images", "fixed_split", "torchvision_class", "on_bad_image")}
_BACKBONE = {k: "setting" for k in (
    "name", "library", "model_id", "path", "pooling", "embed_dim", "max_length", "batch_size", "input_size",
    "mean", "std", "crop_pct", "dtype")}
# where and how fast the embeddings are extracted: the same embeddings (they are cached by content)
_BACKBONE.update(device="environment", num_workers="excluded", num_threads="excluded")

#: Every config key (dotted) and its class. The one list that decides what a run is.
IDENTITY: dict[str, str] = {
    **{f"experiment.{k}": v for k, v in _EXPERIMENT.items()},
    **{f"head.{k}": v for k, v in _HEAD.items()},
    **{f"dataset.{k}": v for k, v in _DATASET.items()},
    **{f"backbone.{k}": v for k, v in _BACKBONE.items()},
    "seed": "seed",
    "rho": "setting",
    "episodes": "setting",
    # the path-distance sample also ends GLAI's reduced phase when head.structure_threshold > 0
    "structure_samples": "setting",
    "device": "environment",
    "num_threads": "environment",
    "tag": "label",
    "data_root": "excluded",
    "data_content": "content",
    "cache_dir": "excluded",
    "results_dir": "excluded",
    "tuned_dir": "excluded",
    "overwrite": "excluded",
    "verbose": "excluded",
    "wandb.enabled": "excluded",
    "wandb.project": "excluded",
    "wandb.mode": "excluded",
    **{f"study.{k}": "setting" for k in ("name", "split", "new_classes", "new_fraction", "shards", "shard_split")},
    # a search run trains and scores on other rows than the run without it
    **{f"tuning.{k}": "setting" for k in ("role", "fraction", "seed", "folds", "repeats")},
    # the range of a search's space: what a trial runs is in its own keys (experiment.reduced_epochs)
    "tuning.max_reduced_epochs": "excluded",
    # where tuning=best looked for the settings it applied: the applied settings are the run's own keys
    "tuning.shipped": "excluded",
    # a search's pruning and the trial a run reports to: a trial that runs to its end scores the same under any
    # pruner (a pruned one is recorded as pruned, never as done); the pruner is part of the search's identity
    **{f"tuning.pruner.{k}": "excluded" for k in ("epochs", "min_resource", "reduction_factor", "fold_se",
                                                  "min_complete")},
    **{f"tuning.{k}": "excluded" for k in ("study", "storage", "trial")},
    # family T: the trained blocks and LoRA's adapters (read by family T runs only: FAMILY_ONLY)
    **{f"ffn.{k}": "setting" for k in ("blocks", "lora_rank", "lora_alpha", "activation")},
}
#: Keys read by one family only (prefix -> family): they leave every other family's fingerprint, so adding
#: family T re-runs nothing of families A-C.
FAMILY_ONLY: dict[str, str] = {"ffn.": "T"}


#: Settings that only GLAI reads (its reduced phase, its estimator and backend): they cannot change another
#: head's run, so they leave it out (an MLP run is then the same run whatever the reduced-epoch rule of the
#: GLAI runs beside it, and an MLP record carries no estimator backend to tell environments apart by).
GLAI_ONLY = frozenset({"experiment.reduced_epochs", "experiment.reduced_epochs_mode", "experiment.reduced_fraction",
                       "experiment.wd_glai", "head.reduced_optimizer", "head.reduced_weight_decay",
                       "head.reduced_lr", "head.estimator", "head.backend", "head.structure_threshold",
                       "head.selector"})


#: Keys of IDENTITY that the schema does not have: added to the stored config by ``glai.runner.run_identity``.
RUNTIME_KEYS = frozenset({"data_content"})

#: Keys a head never reads, by head: they leave its fingerprint (else a rho sweep would retrain the MLP once
#: per rho). ``mlp`` has the full widths (head.width_factor 1), ``linear`` has no hidden layer to reduce or track.
_LORA = frozenset({"ffn.lora_rank", "ffn.lora_alpha"})
UNREAD: dict[str, frozenset] = {
    "mlp": frozenset({"rho"}),
    "linear": frozenset({"rho", "head.width_factor", "structure_samples", "head.l0_sigma"}) | _LORA,
    # family T: the block's own widths (no rho); LoRA's settings are ffn_lora's, ffn.activation is linear's
    **{h: frozenset({"rho", "head.width_factor", "structure_samples", "ffn.activation"}) | _LORA
       for h in ("ffn_mlp", "ffn_relu", "ffn_glai")},
    "ffn_lora": frozenset({"rho", "head.width_factor", "structure_samples", "ffn.activation"}),
}
#: Family T's keys that belong to one head (LoRA's adapters, the classifier-only head's activation switch): a
#: head's variant, like ``head.*``, never another group.
FFN_HEAD_KEYS = frozenset({"ffn.lora_rank", "ffn.lora_alpha", "ffn.activation"})
#: The heads that read GLAI's settings (:data:`GLAI_ONLY`): GLAI on embeddings and inside a Transformer block.
GLAI_HEADS = frozenset({"glai", "ffn_glai"})


def reads_rho(head: str) -> bool:
    """Whether a head's result depends on ``rho`` (``glai``, ``mlp_reduced``); the others' records are named
    without it and pair with runs of any rho."""
    return "rho" not in UNREAD.get(head, frozenset())


def is_variant_key(key: str) -> bool:
    """A key a tagged variant changes without leaving its group (docs/method.md, Run identity): the head's
    settings (``head.*``), GLAI's reduced-phase rule (:data:`GLAI_ONLY`), the tuning role and the tag. Every other
    setting (data, backbone, arch, protocol) is the group's: it labels the run in the tables and keys its tuned
    settings."""
    return key.startswith(("head.", "tuning.")) or key in GLAI_ONLY or key in FFN_HEAD_KEYS or key == "tag"


#: Settings read by a search only (``tuning.role: search``): a tuned run's identity never holds them.
SEARCH_ONLY = frozenset({"tuning.folds", "tuning.repeats"})


#: Settings that, at the value that switches them off, leave the fingerprint: a run without them is the run it
#: was before they existed (adding an off-by-default feature re-runs nothing). key -> its "off" value.
OFF_VALUES: dict[str, Any] = {"head.l0_lambda": 0.0, "head.selector": "trained", "study.name": "standard",
                              "experiment.min_delta_rows": None,
                              "tuning.role": "none",
                              "dataset.fixed_split": False, "dataset.torchvision_class": None,
                              "dataset.on_bad_image": "stop"}
#: Settings read only when another is on: they leave the fingerprint with it. key -> the switch.
DEPENDS_ON: dict[str, str] = {
    "head.l0_sigma": "head.l0_lambda",
    **{f"study.{k}": "study.name" for k in ("split", "new_classes", "new_fraction", "shards", "shard_split")},
    "tuning.fraction": "tuning.role",
    "tuning.seed": "tuning.role",
    "tuning.folds": "tuning.role",
}


def _is_off(flat: Mapping[str, Any], key: str) -> bool:
    switch = DEPENDS_ON.get(key, key)
    return switch in OFF_VALUES and switch in flat and flat[switch] == OFF_VALUES[switch]


def flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b": leaf}``; lists are leaves."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def identity_items(config: Mapping, classes: Iterable[str] = ("setting", "environment", "label", "seed", "content")
                   ) -> dict[str, Any]:
    """The ``key: value`` pairs of ``config`` whose class is in ``classes`` (unlisted keys count as settings)."""
    classes = set(classes)
    flat = flatten(config)
    head = flat.get("head.name", "glai")
    unread = UNREAD.get(head, frozenset()) | (frozenset() if head in GLAI_HEADS else GLAI_ONLY)
    if flat.get("tuning.role") != "search":
        unread = unread | SEARCH_ONLY
    family = flat.get("experiment.family")
    return {k: v for k, v in flat.items()
            if IDENTITY.get(k, "setting") in classes and k not in unread and not _is_off(flat, k)
            and all(family == f for prefix, f in FAMILY_ONLY.items() if k.startswith(prefix))}


def fingerprint(config: Mapping, *, seed: bool = True) -> str:
    """SHA-256 hex digest (64 chars) of a run's identity; ``seed=False`` gives its group's (the seeds of one
    setting, averaged in a table)."""
    classes = ("setting", "environment", "label", "content") + (("seed",) if seed else ())
    payload = json.dumps(identity_items(config, classes), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def short(fp: str) -> str:
    """The 10 hex digits of a fingerprint shown in record file names and labels."""
    return fp[:10]


def differences(config: Mapping, reference: Mapping, classes: Iterable[str] = ("setting", "label")
                ) -> dict[str, Any]:
    """``key: value`` of ``config`` where it differs from ``reference`` (keys of the given classes; a key
    missing on one side counts as different and shows ``None``)."""
    a, b = identity_items(config, classes), identity_items(reference, classes)
    return {k: a.get(k) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
