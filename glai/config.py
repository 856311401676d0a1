"""Structured configs (Hydra ConfigStore) and the checks that run before any work starts.

The dataclasses are the schema of ``conf/``: a misspelled key or a wrong type fails when Hydra composes
the config. :func:`validate` adds the range checks of docs/method.md (Notation, Parameter matching,
Families) and names the key to fix.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from glai.data.config import BackboneConfig, DatasetConfig, check_backbone_config, check_dataset_config
from glai.errors import ConfigError
from glai.names import path_part
from glai.training.optimizers import OPTIMIZERS
from glai.training.tasks import MONITORS

__all__ = [
    "CONF_DIR",
    "Config",
    "ConfigError",
    "ExperimentConfig",
    "HeadConfig",
    "compose_config",
    "reference_configs",
    "register_configs",
    "validate",
]

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

HEADS = ("mlp", "mlp_reduced", "linear", "glai", "ffn_mlp", "ffn_relu", "ffn_lora", "ffn_glai")
#: family T's heads (docs/method.md, Family T): the last feed-forward block of a frozen Transformer trained four
#: ways; ``linear`` (the classifier alone on the frozen model) is the fifth
FFN_HEADS = ("ffn_mlp", "ffn_relu", "ffn_lora", "ffn_glai")
#: what ``ffn.activation`` may switch the frozen block of ``linear`` to (family T): model = the pretrained one
FFN_ACTIVATIONS = ("model", "relu")
REDUCED_MODES = ("fixed", "auto", "structure")
#: paper 3.6: the reduced MLP trains for this fraction of the MLP's epochs to convergence, by family
REDUCED_FRACTION = {"A": 0.20, "B": 0.15, "C": 0.10, "T": 0.20}  # T: classification like A
FAMILIES = ("A", "B", "C", "T")


@dataclass
class ExperimentConfig:
    """One experiment of the suite (paper Tables 1-2; docs/method.md, Families). Set by ``conf/experiment/*.yaml``."""

    name: str = MISSING
    # A supervised, B self-supervised (InfoNCE), C few-shot, T a Transformer's feed-forward block (docs/method.md)
    family: str = "A"
    # head widths (n0, n1, ..., nL, n_out)
    arch: list[int] = MISSING
    # learning rate of every head (paper Table 2)
    lr: float = 1e-3
    # samples per step
    batch_size: int = 16
    # weight decay of the MLP heads (original, reduced, linear) and of the reduced-MLP phase of GLAI
    wd_mlp: float = 1e-3
    # weight decay of the GLAI estimator
    wd_glai: float = 0.1
    # epochs of GLAI's reduced-MLP phase (structural knowledge)
    reduced_epochs: int = 20
    # how GLAI's reduced phase ends (docs/method.md): fixed (reduced_epochs, paper Table 2) | auto (ceil(fraction x the
    # epochs to early stop of the same-configuration, same-seed MLP run, found by its fingerprint or trained
    # first)) | structure (path distance m_t below head.structure_threshold, at most reduced_epochs)
    reduced_epochs_mode: str = "fixed"
    # auto: the fraction of the MLP's epochs; None = the paper's 3.6 rule by family (A 0.20, B 0.15, C 0.10)
    reduced_fraction: Optional[float] = None
    # early-stopping monitor: val_acc (percent, maximised) or val_loss (minimised)
    monitor: str = "val_acc"
    # epochs without improvement before stopping
    patience: int = 5
    # smallest improvement that counts, in the monitor's unit (percentage points for val_acc)
    min_delta: float = 0.1
    # val_acc: an improvement counts only when it is at least this many validation rows (min_delta is raised to
    # 100 * rows / validation rows, percentage points); null = min_delta alone (glai.options.min_delta)
    min_delta_rows: Optional[float] = None
    # epoch cap (60 for families A and B, 500 for C; docs/method.md, Families)
    max_epochs: int = 60
    # family B: dropout on the head input that makes the two views
    dropout: float = 0.0
    # family B: InfoNCE temperature
    temperature: float = 0.07
    # family C: classes, support and query samples per class of an episode
    n_way: int = 5
    k_shot: int = 4
    q_query: int = 6
    # deviations from the paper recorded with every run (its errata: docs/method.md)
    deviations: list[str] = field(default_factory=list)


@dataclass
class HeadConfig:
    """A head and its optimiser (docs/method.md, Heads and optimisers). Set by ``conf/head/*.yaml``; values default
    to experiment keys."""

    # mlp | mlp_reduced | linear | glai
    name: str = MISSING
    # optimiser of the head (GLAI: of its estimator): sgd (no momentum) | adam (coupled L2) | adamw (decoupled WD)
    optimizer: str = "sgd"
    lr: float = MISSING
    weight_decay: float = MISSING
    # hidden-width factor: 1 for mlp, rho for mlp_reduced and GLAI's selector; unused by linear
    width_factor: float = 1.0
    # GLAI: optimiser and weight decay of the reduced-MLP phase
    reduced_optimizer: str = "sgd"
    reduced_weight_decay: float = 0.0
    # GLAI: learning rate of the reduced-MLP phase (None: head.lr); conf/head/glai.yaml sets experiment.lr, so
    # head.lr changes the estimator's alone
    reduced_lr: Optional[float] = None
    # GLAI: the path selector: trained (the reduced MLP after its reduced epochs, the paper's) | random (the reduced
    # MLP at its seeded initialisation, no reduced epochs: gates from random hyperplanes, the gated-ReLU control)
    selector: str = "trained"
    # GLAI: estimator implementation: sparse | dense (the paper's Listing 1 reference)
    estimator: str = "sparse"
    # GLAI sparse estimator backend: auto | triton | cpp | torch (auto: cpp on CPU when built, triton on CUDA)
    backend: str = "auto"
    # GLAI: end the reduced phase early when the path distance m_t falls below this (0 = off, paper's fixed epochs)
    structure_threshold: float = 0.0
    # EAT's l0 activation penalty (docs/method.md, The method family):
    # loss + l0_lambda * mean_b sum_j h_j^2 / (h_j^2 + l0_sigma) over the hidden activations of mlp and
    # mlp_reduced, and of GLAI's reduced MLP (the path selector); 0 = off
    l0_lambda: float = 0.0
    l0_sigma: float = 1e-4


@dataclass
class FFNConfig:
    """Family T (docs/method.md, Family T): which feed-forward blocks of the frozen encoder train, and LoRA's settings.
    Read by family T runs only (other families' fingerprints leave it out)."""

    # the last `blocks` layers' feed-forward blocks train (1: the frozen layers below run once, into the cache)
    blocks: int = 1
    # ffn_lora: the rank r and scale alpha of the adapters on the block's two linear layers (Hu et al. 2021)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    # linear: the frozen block's activation, model (the pretrained one, GELU) | relu (the ReLU switch's own cost)
    activation: str = "model"


@dataclass
class WandbConfig:
    """Optional Weights & Biases logging, offline by default."""

    enabled: bool = False
    project: str = "glai"
    mode: str = "offline"


@dataclass
class StudyConfig:
    """Multi-model protocols of the method family (GreenLightningAI; docs/method.md), run as one job each.

    ``standard`` is one head's run. ``retrain``: train the MLP and GLAI on old data, then learn new data by
    fine-tuning the MLP (new only; old + new) and by re-training GLAI's estimator only (new only; old + new),
    each timed and scored on old and new validation data. ``combine``: K GLAI estimators from one conversion
    trained on K disjoint shards and averaged, against one estimator on all data and against K averaged MLPs.
    """

    # standard | retrain | combine
    name: str = "standard"
    # retrain: old/new split of train and val: class (the last new_classes classes are new) | random
    split: str = "class"
    new_classes: int = 3
    # retrain, split=random: fraction of the training rows that are new
    new_fraction: float = 0.3
    # combine: number of shards K and how rows are dealt: iid (random) | class (by label: non-IID)
    shards: int = 4
    shard_split: str = "iid"


TUNING_ROLES = ("none", "search", "held_out")


#: ``tuning.pruner.epochs``: the Optuna pruners a search can use on the per-epoch tuning score (glai.search).
PRUNERS = ("successive_halving", "hyperband", "median", "none")


@dataclass
class PrunerConfig:
    """How a search stops unpromising trials early (``tuning.pruner``; :mod:`glai.search`, docs/views.md).

    After each fold but the last, a trial whose mean over its folds so far lies more than ``fold_se`` standard
    errors below the best complete trial's on the same folds skips the rest; with ``epochs`` set, the trial's first
    fold also reports its tuning score (the best so far) after every epoch to that Optuna pruner. The head's default
    trials are never pruned. Off here (``fold_se: 0``); ``conf/tuning/search.yaml`` switches the fold rule on and
    leaves the epoch pruner off (it changed a measured search's choice: docs/views.md, Pruning).
    """

    # successive_halving | hyperband | median | none (glai.search.build_pruner)
    epochs: str = "none"
    # the first rung, in epochs: successive halving and hyperband judge a trial at min_resource * factor**r
    min_resource: int = 2
    # successive halving / hyperband: a trial goes on past a rung when among the best 1 / reduction_factor there
    reduction_factor: int = 3
    # the fold rule's margin in standard errors of the difference of two fold means (0 = off)
    fold_se: float = 0.0
    # complete trials (the head's defaults included) before the fold rule or the median pruner prunes
    min_complete: int = 3


@dataclass
class TuningConfig:
    """Hyperparameter search on a tuning split (docs/method.md, Tuned comparison; ``conf/tuning/``).

    ``search``: the run trains on the training split minus a stratified ``fraction`` of it (rows chosen by
    ``seed``, independent of the run seed) and validates, early-stops and scores on those rows; the
    validation split that gives the BVS is never read. Family C has no training split: its search draws
    episodes from a ``fraction`` of the pool's classes (of every class's rows when the pool has fewer than
    ``2 * n_way`` classes; :func:`glai.data.loading.tuning_pool_split`), and ``held_out`` -- what its tuned runs
    use -- draws the evaluation episodes from the rest only.
    ``none``: an ordinary run. The settings a search finds land in ``<tuned_dir>/<experiment>/<head>/<group>.yaml``
    (``scripts/save_tuned.py``), which ``tuning=best`` selects.
    """

    # none | search | held_out (family C: evaluation episodes from the classes a search never saw)
    role: str = "none"
    # fraction of the training rows (family C: of the pool's classes) held out as the tuning split
    fraction: float = 0.2
    seed: int = 0
    # families A and B: how a search trial is scored. 1: on the one tuning split (no standard error); k >= 2: k-fold
    # over the training rows (stratified, folds by tuning.seed; the trial trains k times and scores the mean and its
    # standard error); 0 = auto: 5-fold when the tuning split would hold fewer than 500 rows, else `repeats`
    # repeated tuning splits (seeds tuning.seed, +1, ...): every score then has a standard error
    folds: int = 0
    # the repeated splits of folds=0 on a large training split (>= 2)
    repeats: int = 3
    # a GLAI search's longest reduced phase (epochs; glai.search_space.max_reduced_epochs): null = half the epoch
    # cap; experiments/tune.sh sets half the protocol MLP's epochs on the tuning rows
    max_reduced_epochs: Optional[int] = None
    # tuning=best: where no file of the run's group is in tuned_dir, fall back to the shipped settings
    # (conf/tuned/best, the committed study's). false: tuned_dir only, so a study reads its own searches and
    # nothing else (a group without one stops with the search to run)
    shipped: bool = True
    # how a search stops unpromising trials early (conf/tuning/search.yaml switches it on; glai.search)
    pruner: PrunerConfig = field(default_factory=lambda: PrunerConfig())
    # set by the search's sweeper for each trial, never by hand: the study (name, storage) and the trial number
    # the run reports its per-epoch tuning score to
    study: Optional[str] = None
    storage: Optional[str] = None
    trial: Optional[int] = None


@dataclass
class Config:
    """The whole run. See ``conf/config.yaml``."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    ffn: FFNConfig = field(default_factory=FFNConfig)
    seed: int = 0
    # hidden-width reduction factor of GLAI and mlp_reduced, 0 < rho < 1
    rho: float = 0.5
    # family C: episodes averaged (each one a fresh N-way K-shot Q-query draw)
    episodes: int = 1
    # auto | cpu | cuda
    device: str = "auto"
    # CPU threads for torch (0 = torch's default). Heads are small: at batch 16 one thread is fastest and
    # parallel sweep jobs do not fight over cores. Every head of a run uses the same setting.
    num_threads: int = 1
    # root of the stand-ins' local data and weights (GLAI_DATA_ROOT): make prefetch EXP=... builds them there; unset,
    # data/ in the working folder (the clone, ignored by git)
    data_root: str = "${oc.env:GLAI_DATA_ROOT,data}"
    # embedding cache (GLAI_CACHE_DIR)
    cache_dir: str = "${oc.env:GLAI_CACHE_DIR,.cache/glai}"
    # run records go to <results_dir>/<experiment>/<head>[-<tag>]/[rho<rho>-]seed<seed>-<fingerprint>.json
    results_dir: str = "${oc.env:GLAI_RESULTS_DIR,results/runs}"
    # a search's best settings per group: <tuned_dir>/<experiment>/<head>/<group key>.yaml (GLAI_TUNED_DIR;
    # glai.tuned); tuning=best reads them here first, then conf/tuned/best
    tuned_dir: str = "${oc.env:GLAI_TUNED_DIR,results/tuned}"
    # label for variants (e.g. an optimiser-controlled run); part of the record path
    tag: str = ""
    # redo a run whose record says "done"
    overwrite: bool = False
    # fixed-size sample of training embeddings for the path distance m_t (paper 3.6); 0 = off
    structure_samples: int = 512
    # print the run summary
    verbose: bool = True


STUDIES = ("standard", "retrain", "combine")


def _validate_tuning(cfg) -> None:
    tuning = cfg.get("tuning")
    if tuning is None:
        return
    if tuning.role == "requested":
        _fail("tuning", "best", "the tuned settings of the run's group are applied by glai.tuned.apply_tuned "
              "(glai.runner.run calls it first)", "glai.runner.run(cfg), or drop tuning=best")
    if tuning.role not in TUNING_ROLES:
        _fail("tuning.role", tuning.role, f"choose one of {TUNING_ROLES}", "tuning=search (conf/tuning/)")
    if tuning.role == "none":
        return
    if not 0.0 < tuning.fraction < 1.0:
        _fail("tuning.fraction", tuning.fraction, "must lie in (0, 1)", "tuning.fraction=0.2")
    if tuning.folds < 0:
        _fail("tuning.folds", tuning.folds, "0 (auto), 1 (one tuning split) or k >= 2 folds", "tuning.folds=0")
    if tuning.get("repeats", 3) < 2:
        _fail("tuning.repeats", tuning.repeats, "repeated tuning splits give a score its standard error: at least 2 "
              "(tuning.folds=1 scores on the one split)", "tuning.repeats=3")
    pruner = tuning.get("pruner")
    if pruner is not None:
        if pruner.epochs not in PRUNERS:
            _fail("tuning.pruner.epochs", pruner.epochs, f"choose one of {', '.join(PRUNERS)}",
                  "tuning.pruner.epochs=successive_halving")
        if pruner.min_resource < 1:
            _fail("tuning.pruner.min_resource", pruner.min_resource, "the first rung in epochs: >= 1",
                  "tuning.pruner.min_resource=2")
        if pruner.reduction_factor < 2:
            _fail("tuning.pruner.reduction_factor", pruner.reduction_factor, "a trial goes on when among the best "
                  "1 / reduction_factor: >= 2", "tuning.pruner.reduction_factor=3")
        if not (pruner.fold_se >= 0 and math.isfinite(pruner.fold_se)):
            _fail("tuning.pruner.fold_se", pruner.fold_se, "the fold rule's margin in standard errors: >= 0 (0 = off)",
                  "tuning.pruner.fold_se=2")
        if pruner.min_complete < 1:
            _fail("tuning.pruner.min_complete", pruner.min_complete, "complete trials before pruning: >= 1",
                  "tuning.pruner.min_complete=3")
    high = tuning.get("max_reduced_epochs")
    if high is not None and high < 1:
        _fail("tuning.max_reduced_epochs", high, "the longest reduced phase a GLAI search tries, in epochs: >= 1, or "
              "null for half of experiment.max_epochs", "tuning.max_reduced_epochs=null")
    if tuning.folds > 1 and cfg.experiment.family == "C":
        _fail("tuning.folds", tuning.folds, "a family C search draws episodes from a part of the pool's classes, "
              "it has no training rows to fold", "tuning.folds=0")
    if tuning.role == "held_out" and cfg.experiment.family != "C":
        _fail("tuning.role", tuning.role, "held_out splits a family C pool by class; a family A/B tuned run "
              "validates on its validation split, which no search has read", "tuning.role=none")
    if cfg.study.name != "standard":
        _fail("tuning.role", tuning.role, "a search scores one head's run, not a method-family study",
              "study.name=standard")


def _validate_ffn(cfg) -> None:
    """Family T and its heads go together; ``ffn.*`` in range."""
    exp, head, ffn = cfg.experiment, cfg.head, cfg.get("ffn") or FFNConfig()
    if head.name in FFN_HEADS and exp.family != "T":
        _fail("head", head.name, f"trains a Transformer's feed-forward block (family T), but experiment {exp.name!r} "
              f"is family {exp.family}", "experiment=ffn/dbpedia (or head=glai for a head on embeddings)")
    if exp.family != "T":
        return
    if head.name not in (*FFN_HEADS, "linear"):
        _fail("head", head.name, f"family T trains the last feed-forward block of a frozen Transformer: its heads are "
              f"{', '.join(FFN_HEADS)} and linear", "head=ffn_glai")
    arch = list(exp.arch)
    if len(arch) != 3 or min(arch) < 1:
        _fail("experiment.arch", arch, "family T's arch is the block's (d, d_ff) and the classes: (d, d_ff, n_out)",
              "experiment.arch=[384,1536,14]")
    if ffn.blocks < 1:
        _fail("ffn.blocks", ffn.blocks, "the last ffn.blocks layers' feed-forward blocks train: at least one",
              "ffn.blocks=1")
    if ffn.blocks > 1 and head.name == "ffn_glai":
        # a block above another trained one must pass a gradient to its input: the sparse estimator's kernels
        # compute none (its inputs are constants in every other use)
        _fail("ffn.blocks", ffn.blocks, "ffn_glai trains one block in this version: the sparse estimator has no "
              "gradient with respect to its input, which a block above another trained one needs (the other heads "
              "train any number)", "ffn.blocks=1")
    if ffn.lora_rank < 1:
        _fail("ffn.lora_rank", ffn.lora_rank, "LoRA's rank must be a positive integer", "ffn.lora_rank=8")
    if not ffn.lora_alpha > 0:
        _fail("ffn.lora_alpha", ffn.lora_alpha, "LoRA's scale must be positive", "ffn.lora_alpha=16")
    if ffn.activation not in FFN_ACTIVATIONS:
        _fail("ffn.activation", ffn.activation, f"choose one of {FFN_ACTIVATIONS}", "ffn.activation=model")
    if ffn.activation != "model" and head.name != "linear":
        _fail("ffn.activation", ffn.activation, f"switches the frozen block of head=linear (the switch's own cost); "
              f"{head.name} sets its block's activation itself", "ffn.activation=model")
    if cfg.study.name != "standard":
        _fail("study.name", cfg.study.name, "the method-family studies run on embeddings (family A)",
              "study.name=standard")
    if cfg.backbone.library != "transformers":
        _fail("backbone", cfg.backbone.name, "family T reads a Hugging Face encoder's feed-forward blocks",
              "backbone=minilm (or another BERT-style encoder of conf/backbone/)")
    if head.name == "ffn_glai":
        if exp.reduced_epochs_mode == "structure":
            _fail("experiment.reduced_epochs_mode", exp.reduced_epochs_mode, "ffn_glai's selector phase (fine-tuning "
                  "the ReLU-switched block before the conversion) runs a fixed count or the auto rule (a fraction "
                  "of the same-seed ffn_relu run's epochs)", "experiment.reduced_epochs_mode=auto")
        if exp.reduced_epochs < 0:
            _fail("experiment.reduced_epochs", exp.reduced_epochs, "ffn_glai's selector phase: epochs >= 0 (0: the "
                  "pretrained block's own paths)", "experiment.reduced_epochs=0")


def _validate_study(cfg) -> None:
    study, exp = cfg.study, cfg.experiment
    if study.name not in STUDIES:
        _fail("study.name", study.name, f"choose one of {STUDIES}", "study.name=standard")
    if study.name == "standard":
        return
    if exp.family != "A":
        _fail("study.name", study.name, f"the {study.name} study needs labelled classes (family A), but "
              f"experiment {exp.name!r} is family {exp.family}", "study.name=standard")
    if cfg.head.name != "glai":
        _fail("head.name", cfg.head.name, f"the {study.name} study trains GLAI and the MLP in one job: run it "
              "with the GLAI head (its reduced-phase settings are read; the MLP arms use conf/head/mlp.yaml)",
              "head=glai")
    n_out = exp.arch[-1]
    if study.split not in ("class", "random"):
        _fail("study.split", study.split, "choose class or random", "study.split=class")
    if study.split == "class" and not 1 <= study.new_classes < n_out:
        _fail("study.new_classes", study.new_classes, f"must lie in [1, {n_out - 1}] (the head has {n_out} "
              "outputs: the label space is known up front, so new classes are outputs that old data never "
              "trained)", f"study.new_classes={max(1, n_out // 3)}")
    if study.split == "random" and not 0 < study.new_fraction < 1:
        _fail("study.new_fraction", study.new_fraction, "must lie in (0, 1)", "study.new_fraction=0.3")
    if study.shards < 2:
        _fail("study.shards", study.shards, "combining needs >= 2 shards", "study.shards=4")
    if study.shard_split not in ("iid", "class"):
        _fail("study.shard_split", study.shard_split, "choose iid or class", "study.shard_split=iid")


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (called by ``run.py`` and the scripts), and have Hydra
    discover its plugins (``hydra/sweeper=glai_optuna`` registers its config on discovery), as ``@hydra.main`` does
    before it composes."""
    from hydra.core.plugins import Plugins

    ConfigStore.instance().store(name="config_schema", node=Config)
    Plugins.instance()


def compose_config(overrides: list[str] | None = None, conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """The config ``python run.py <overrides>`` would get (scripts, tests, notebooks).

    Raises:
        hydra.errors.ConfigCompositionException / omegaconf errors: unknown group option, misspelled key, wrong type.
    """
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    overrides = list(overrides or [])
    hydra = GlobalHydra.instance()
    if hydra.is_initialized():
        # inside a running app (a job of run.py -m): compose with a Hydra of its own, then give the app its own
        # back, so the sweep's config loader is untouched
        saved, hydra.hydra = hydra.hydra, None
        try:
            with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
                return compose(config_name="config", overrides=overrides)
        finally:
            GlobalHydra.instance().hydra = saved
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


#: The group options conf/config.yaml composes by default: the fix for an option that does not exist.
_DEFAULT_CHOICES = {"experiment": "digits", "head": "glai", "dataset": "digits", "backbone": "none", "tuning": "none"}


def compose_error_line(err: BaseException) -> str:
    """One line for a composition error of Hydra or OmegaConf (a misspelled key, a group option that does not
    exist, a value of the wrong type), naming the key and a fix, instead of Hydra's multi-line report.
    """
    text = " ".join(str(e) for e in (err, err.__cause__) if e is not None)
    missing = re.search(r"Could not find '([^']+)'", text)
    if missing:
        group, option = missing.group(1).split("/", 1) if "/" in missing.group(1) else ("", missing.group(1))
        options = sorted(str(p.relative_to(CONF_DIR / group).with_suffix("")) for p in (CONF_DIR / group).rglob(
            "*.yaml")) if group else []
        near = difflib.get_close_matches(option, options, n=1)
        fix = near[0] if near else _DEFAULT_CHOICES.get(group, options[0] if options else "...")
        return (f"{group}={option}: there is no conf/{group}/{option}.yaml (options: {', '.join(options)}). "
                f"Fix: {group}={fix}")
    unknown = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' not in", text)
    if unknown and ("not in" in text or "Could not append" in text):
        key = unknown.group(1)
        given = re.search(rf"use \+{re.escape(key)}=(\S*)", text)
        # a misspelled group (hed=mlp) is nearer a group than a key of a group (head.lr)
        groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name in _DEFAULT_CHOICES)
        top = [k for k in _SCHEMA_DEFAULTS if "." not in k]
        near = difflib.get_close_matches(key, groups + top, n=1) if "." not in key else []
        if near and near[0] in groups:
            group = near[0]
            return (f"{key}: not a config group or key; did you mean the group {group} (conf/{group}/)? "
                    f"Fix: {group}={given.group(1) if given and given.group(1) else _DEFAULT_CHOICES[group]}")
        near = near or difflib.get_close_matches(key, list(_SCHEMA_DEFAULTS), n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        return (f"{key}: not a key of the config schema (glai.config.Config){hint} (a '+' would add a key nothing "
                f"reads). Fix: {near[0] if near else 'head.lr'}=<value>")
    wrong = re.search(r"Value '(.*?)' (?:of type '\w+' )?could not be converted to (\w+).*?full_key: (\S+)", text, re.S)
    if wrong:
        value, kind, key = wrong.groups()
        default = _SCHEMA_DEFAULTS.get(key)
        if default in (None, MISSING):
            default = {"float": 0.001, "int": 1, "bool": "true"}.get(kind.lower(), "...")
        return f"{key}={value!r}: must be {kind.lower()}. Fix: {key}={default}"
    return f"{text.strip().splitlines()[0] if text.strip() else type(err).__name__}. Fix: see the override's key"


def _parse_error_line(given: list[str], err: BaseException) -> str:
    """One line naming the override Hydra's grammar cannot read (``experiment.name=a$(touch x)``) and how to
    quote it: Hydra's own quotes inside the shell's, so the shell passes them on."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for arg in given:
        try:
            parser.parse_overrides([arg])
        except HydraException as bad:
            key, _, value = arg.partition("=")
            why = str(bad).strip().splitlines()[0]
            if key.lstrip("+~") in ("experiment.name", "tag"):
                fix = f"{key}=my_name (it names a folder: letters, digits, '_', '-', '.'; nothing to quote)"
            elif "'" in value or '"' in value:
                fix = f"{key}=<the value without quotes>, or Hydra's escapes (\\' and \\\")"
            else:
                fix = f"'{key}=\"{value}\"' (Hydra's quotes inside the shell's)"
            return (f"{arg}: Hydra cannot read this override ({why}): a value holding ( ) [ ] {{ }} = ; # ! & or a "
                    f"quote must be quoted for Hydra as well as for the shell. Fix: {fix}")
    return f"{str(err).strip().splitlines()[0]}. Fix: key=value, a sweep as key=a,b"


def precheck_overrides(args: Iterable[str], *, search_needs_multirun: bool = True) -> None:
    """Compose the config the command line asks for before Hydra runs anything (``run.py``): every group option of
    a sweep must exist, and one run's config (each sweep at its first value) must compose.

    Args:
        args: the command line's arguments (``sys.argv[1:]``), ``-m`` among them for a sweep.
        search_needs_multirun: ``tuning=search`` without ``-m`` is refused (``run.py``: a search is a sweep; alone
            it would train one plain run of the head's defaults and choose nothing).

    Raises:
        ConfigError: one line from :func:`compose_error_line`, naming an override Hydra cannot parse, or a search
            without ``-m``.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = list(args)
    given = [a for a in args if "=" in a and not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(given)
    except HydraException as err:
        raise ConfigError(_parse_error_line(given, err)) from None
    single = []
    for override in parsed:
        if not override.is_sweep_override():
            single.append(override.input_line)
            continue
        try:
            values = list(override.sweep_string_iterator())
        except HydraException:  # interval / glob sweeps: left to the sweeper
            continue
        key = override.key_or_group
        if (CONF_DIR / key).is_dir():
            for value in values:
                if not (CONF_DIR / key / f"{value}.yaml").is_file():
                    raise ConfigError(compose_error_line(HydraException(f"Could not find '{key}/{value}'")))
        single.append(f"{override.get_key_element()}={values[0]}")
    try:
        cfg = compose_config(single)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(compose_error_line(err)) from None
    if search_needs_multirun and cfg.tuning.role == "search" and not {"-m", "--multirun"} & set(args):
        raise ConfigError("tuning=search: a hyperparameter search is a sweep of trials (hydra/sweeper=glai_optuna); "
                          "without -m, run.py would train one plain run of the head's defaults on the tuning rows "
                          "and choose nothing. Fix: add -m (python run.py -m tuning=search ...)")


def reference_configs(pairs: Iterable[tuple[str, str]], conf_dir: str | Path = CONF_DIR
                      ) -> dict[tuple[str, str], dict]:
    """The unmodified config of each ``(experiment, head)``, resolved: what ``python run.py experiment=X
    head=H`` runs. Tables call a run "the paper's X" only when its settings equal these (docs/method.md, Run identity).

    Pairs whose experiment or head is not in ``conf_dir`` (renamed, or a user's config elsewhere) are left
    out; their runs are then labelled as having no reference. ``dataset.path`` and ``backbone.path`` are
    resolved against ``data_root`` as the runner stores them: a stand-in run of data under another root
    differs from the reference by those paths.
    """
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from glai.data.loading import resolved_paths

    out = {}
    for experiment, head in sorted(set(pairs)):
        try:
            cfg = compose_config([f"experiment={experiment}", f"head={head}"], conf_dir)
            config = OmegaConf.to_container(cfg, resolve=True)
        except (HydraException, OmegaConfBaseException, ValueError):
            continue
        # as the runner stores them: the sources resolved against data_root (GLAI_DATA_ROOT here)
        for key, value in resolved_paths(config, cfg.data_root).items():
            group, name = key.split(".")
            config[group][name] = value
        out[(experiment, head)] = config
    return out


def _rho_fix(arch: list[int]) -> str:
    """A rho that keeps round(rho * nL) >= n_out, or the arch change that allows one."""
    low = math.ceil(100 * arch[-1] / arch[-2]) / 100
    if low < 1.0:
        return f"rho={max(low, 0.5):g}"
    return f"experiment.arch with a last hidden width above n_out={arch[-1]} (e.g. {2 * arch[-1]})"


def _validate_names(cfg) -> None:
    """The values that become folder names (:func:`glai.names.path_part`) must stay inside their root:
    ``experiment.name`` and ``tag`` under ``results_dir`` and ``tuned_dir`` (exactly as given), ``dataset.name``
    and ``backbone.name`` under ``cache_dir``."""
    path_part("experiment.name", cfg.experiment.name, exact=True, nested=True, fix="experiment.name=my_experiment")
    if str(cfg.tag):
        path_part("tag", cfg.tag, exact=True, fix="tag=my_variant")
    path_part("dataset.name", cfg.dataset.name, fix="dataset.name=my_data")
    path_part("backbone.name", cfg.backbone.name, fix="backbone.name=my_backbone")


def _validate_keys(cfg) -> None:
    """Keys outside the schema (``+hed.lr=3``, Hydra's own hint for a misspelled key, adds one) are refused:
    nothing would read them, and the run would silently train with the default."""
    from omegaconf import OmegaConf

    if not isinstance(cfg, DictConfig):
        return
    known = set(_SCHEMA_DEFAULTS)
    extra = sorted(k for k, _ in _flat_items(OmegaConf.to_container(cfg, resolve=False)) if k not in known)
    if extra:
        near = {k: difflib.get_close_matches(k, known, n=1) for k in extra}
        hint = "; ".join(f"{k} (did you mean {m[0]}?)" if m else k for k, m in near.items())
        _fail(extra[0], OmegaConf.select(cfg, extra[0]), f"not a key of the config schema (glai.config.Config): "
              f"{hint}; nothing reads it", f"drop the '+' and spell the key as the schema does, e.g. "
              f"{near[extra[0]][0] if near[extra[0]] else 'head.lr'}=...")


def _schema_defaults() -> dict[str, Any]:
    from omegaconf import OmegaConf

    return dict(_flat_items(OmegaConf.to_container(OmegaConf.structured(Config))))


def _validate_finite(cfg) -> None:
    """NaN passes every ``< 0`` test: every float of the config must be a finite number."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    if not isinstance(config, dict):
        return
    flat = dict(_flat_items(config))
    for key, value in flat.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            default = _SCHEMA_DEFAULTS.get(key)
            fix = f"{key}={default:g}" if isinstance(default, float) and math.isfinite(default) else f"{key}=0.001"
            _fail(key, value, "must be a finite number", f"{fix} (or the value of conf/ for this key)")


def _flat_items(node, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flat_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _fail(key: str, value: Any, why: str, fix: str) -> None:
    raise ConfigError(f"{key}={value!r}: {why}. Fix: {fix}")


def validate(cfg: DictConfig | Config) -> None:
    """Range checks that Hydra's types cannot express (docs/method.md), run before any work starts.

    Raises:
        ConfigError: naming the key, the value and the fix.
    """
    _validate_keys(cfg)
    _validate_finite(cfg)
    exp, head = cfg.experiment, cfg.head
    if head.name not in HEADS:
        _fail("head", head.name, f"unknown head, choose one of {HEADS}", "head=glai (conf/head/*.yaml)")
    if exp.family not in FAMILIES:
        _fail("experiment.family", exp.family, f"unknown family, choose one of {FAMILIES}", "experiment.family=A")
    _validate_ffn(cfg)
    arch = list(exp.arch)
    if len(arch) < 3 or min(arch) < 1:
        _fail("experiment.arch", arch, "need (n0, n1, ..., nL, n_out) with L >= 1 positive widths",
              "experiment.arch=[64,128,10]")
    if not 0.0 < cfg.rho < 1.0:
        _fail("rho", cfg.rho, "the reduction factor must lie in (0, 1) (paper 4.2)", "rho=0.5")
    if head.name in ("glai", "mlp_reduced"):
        # the heads read rho through head.width_factor; name the key the value came from
        key, factor = ("rho", cfg.rho) if head.width_factor == cfg.rho else ("head.width_factor", head.width_factor)
        if not 0.0 < factor < 1.0:
            _fail(key, factor, "the reduction factor must lie in (0, 1) (paper 4.2)", f"{key}=0.5")
        if round(factor * arch[-2]) < arch[-1]:
            fix = _rho_fix(arch)
            _fail(key, factor, f"round({key} * nL) = {round(factor * arch[-2])} < n_out = {arch[-1]}: the reduced "
                  "MLP would be a bottleneck (paper 4.2)", fix.replace("rho=", f"{key}=", 1))
    if head.name == "mlp" and head.width_factor != 1.0:
        _fail("head.width_factor", head.width_factor, "the original MLP has the full widths (mlp_reduced reduces "
              "them by rho)", "head.width_factor=1.0 (or head=mlp_reduced to reduce them)")
    for key, valid in (("max_epochs", 60), ("batch_size", 16), ("patience", 5)):
        if getattr(exp, key) < 1:
            _fail(f"experiment.{key}", getattr(exp, key), "must be a positive integer", f"experiment.{key}={valid}")
    if cfg.seed < 0:
        _fail("seed", cfg.seed, "must be >= 0 (it seeds numpy, torch and scikit-learn)", "seed=0")
    if exp.reduced_epochs_mode not in REDUCED_MODES:
        _fail("experiment.reduced_epochs_mode", exp.reduced_epochs_mode, f"choose one of {REDUCED_MODES}",
              "experiment.reduced_epochs_mode=fixed")
    if exp.reduced_fraction is not None and not 0.0 < exp.reduced_fraction <= 1.0:
        _fail("experiment.reduced_fraction", exp.reduced_fraction, "must lie in (0, 1]",
              "experiment.reduced_fraction=0.2")
    if head.name == "glai" and exp.reduced_epochs_mode == "structure" and not head.structure_threshold > 0:
        _fail("head.structure_threshold", head.structure_threshold,
              "experiment.reduced_epochs_mode=structure ends the reduced phase on the path distance m_t",
              "head.structure_threshold=0.05")
    if head.name == "glai" and exp.reduced_epochs_mode == "structure" and cfg.structure_samples < 1:
        _fail("structure_samples", cfg.structure_samples, "experiment.reduced_epochs_mode=structure measures the "
              "path distance m_t on a sample of the training embeddings", "structure_samples=512")
    if head.name == "glai" and head.structure_threshold > 0 and cfg.structure_samples < 1:
        _fail("structure_samples", cfg.structure_samples, "head.structure_threshold > 0 ends the reduced phase on "
              "the path distance m_t, measured on a sample of the training embeddings", "structure_samples=512")
    if head.name == "glai" and exp.reduced_epochs < 1:
        _fail("experiment.reduced_epochs", exp.reduced_epochs, "GLAI needs >= 1 reduced-MLP epoch",
              "experiment.reduced_epochs=20")
    if exp.monitor not in MONITORS:
        _fail("experiment.monitor", exp.monitor, f"choose one of {tuple(MONITORS)}", "experiment.monitor=val_acc")
    if exp.min_delta < 0:
        _fail("experiment.min_delta", exp.min_delta, "must be >= 0", "experiment.min_delta=0.1")
    if not head.lr > 0:
        # the heads read experiment.lr: fix the key the value came from; L-BFGS's lr is its step length (1.0)
        fix = ("head.lr=1.0 (L-BFGS's initial step length)" if head.optimizer == "lbfgs" else
               "experiment.lr=1e-3 (which every head reads)" if head.lr == exp.lr else "head.lr=1e-3")
        _fail("head.lr", head.lr, "the learning rate must be positive", fix)
    if head.reduced_lr is not None and not head.reduced_lr > 0:
        _fail("head.reduced_lr", head.reduced_lr, "the learning rate must be positive",
              "experiment.lr=1e-3" if head.reduced_lr == exp.lr else "head.reduced_lr=1e-3")
    if head.weight_decay < 0:
        _fail("head.weight_decay", head.weight_decay, "must be >= 0",
              "head.weight_decay=1e-3 (or experiment.wd_mlp / experiment.wd_glai, which the heads read)")
    if head.reduced_weight_decay < 0:
        _fail("head.reduced_weight_decay", head.reduced_weight_decay, "must be >= 0 (the reduced MLP's L2)",
              "head.reduced_weight_decay=1e-3 (or experiment.wd_mlp, which it reads)")
    for key in ("optimizer", "reduced_optimizer"):
        if getattr(head, key) not in OPTIMIZERS:
            _fail(f"head.{key}", getattr(head, key), f"choose one of {OPTIMIZERS}", f"head.{key}=sgd")
    _validate_study(cfg)
    _validate_tuning(cfg)
    if not head.l0_lambda >= 0:
        _fail("head.l0_lambda", head.l0_lambda, "the penalty weight must be >= 0 (0 = off)", "head.l0_lambda=0.001")
    if not head.l0_sigma > 0:
        _fail("head.l0_sigma", head.l0_sigma, "must be positive", "head.l0_sigma=1e-4")
    if head.l0_lambda > 0 and head.name == "linear":
        _fail("head.l0_lambda", head.l0_lambda, "the linear head has no hidden activations to penalise",
              "head.l0_lambda=0")
    if head.selector not in ("trained", "random"):
        _fail("head.selector", head.selector, "choose trained or random", "head.selector=trained")
    if exp.family == "B" and "lbfgs" in (head.optimizer, head.reduced_optimizer):
        key = "head.optimizer" if head.optimizer == "lbfgs" else "head.reduced_optimizer"
        _fail(key, "lbfgs", "full-batch L-BFGS would contrast every row with every other one: InfoNCE over "
              "batches (family B) is another objective", f"{key}=adam")
    if head.estimator not in ("sparse", "dense"):
        _fail("head.estimator", head.estimator, "choose sparse or dense", "head.estimator=sparse")
    if head.backend not in ("auto", "triton", "cpp", "torch"):
        _fail("head.backend", head.backend, "choose auto, triton, cpp or torch", "head.backend=auto")
    if not 0.0 <= exp.dropout < 1.0:
        _fail("experiment.dropout", exp.dropout, "must lie in [0, 1)", "experiment.dropout=0.2")
    if exp.family == "B" and not exp.temperature > 0:
        _fail("experiment.temperature", exp.temperature, "must be positive", "experiment.temperature=0.07")
    if exp.family == "C":
        for key in ("n_way", "k_shot", "q_query"):
            if getattr(exp, key) < 1:
                valid = {"n_way": arch[-1], "k_shot": 5, "q_query": 10}[key]
                _fail(f"experiment.{key}", getattr(exp, key), "must be a positive integer",
                      f"experiment.{key}={valid}")
        if exp.n_way != arch[-1]:
            _fail("experiment.n_way", exp.n_way, f"an N-way episode needs n_out = N, but arch ends in {arch[-1]}",
                  f"experiment.arch[-1]={exp.n_way} or experiment.n_way={arch[-1]}")
    if cfg.episodes < 1:
        _fail("episodes", cfg.episodes, "must be a positive integer", "episodes=1")
    if cfg.num_threads < 0:
        _fail("num_threads", cfg.num_threads, "must be >= 0 (0 = torch default)", "num_threads=1")
    if cfg.device not in ("auto", "cpu", "cuda"):
        _fail("device", cfg.device, "choose auto, cpu or cuda", "device=auto")
    _validate_names(cfg)
    for check in (check_dataset_config, check_backbone_config):
        check(cfg.dataset if check is check_dataset_config else cfg.backbone)


#: Defaults of the schema by dotted key: its keys (the unknown-key check) and the fixes of the finite-number check.
_SCHEMA_DEFAULTS = _schema_defaults()
