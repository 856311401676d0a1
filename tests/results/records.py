"""Synthetic run records for the results tests, built through the record's schema as the runner builds them
(:func:`glai.results.schema.new_record`, checked by :func:`glai.results.schema.check_record`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from glai.results.identity import fingerprint
from glai.results.schema import check_record, new_record


def default_config(experiment, head, seed=0, rho=0.5, tag="", **changes):
    """A small resolved config of the shape the runner stores; ``changes`` as dotted ``key=value``
    (``**{"head.lr": 0.1}``)."""
    glai_like = head in ("glai", "mlp_reduced")
    cfg = {
        "experiment": {"name": experiment, "lr": 1e-3, "batch_size": 16, "wd_mlp": 1e-3, "wd_glai": 0.1,
                       "reduced_epochs": 5},
        "head": {"name": head, "lr": 1e-3, "weight_decay": 0.1 if head == "glai" else 1e-3,
                 "optimizer": "adam" if head == "glai" else "sgd", "width_factor": rho if glai_like else 1.0},
        "rho": rho, "seed": seed, "tag": tag, "device": "cpu", "num_threads": 1, "results_dir": "results/runs",
    }
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return cfg


def references(experiments, heads=("mlp", "mlp_reduced", "glai", "linear")):
    """``(experiment, head) -> config`` of the unmodified experiments (what ``reference_configs`` composes)."""
    return {(e, h): default_config(e, h) for e in experiments for h in heads}


def make_record(experiment, head, seed, *, status="done", error=None, tag="", rho=0.5, total_s=10.0,
                bvs=80.0, epochs=10, monitor="val_acc", overrides=None, phases=None, reduced_epochs=None,
                structure=None, config=None):
    """One run record as the runner writes it (``_path`` set as by ``glai.results.stats.load_records``)."""
    mode = "max" if monitor == "val_acc" else "min"
    done = status == "done"
    metrics = {}
    if done:
        metrics = {
            "monitor": monitor, "mode": mode, "bvs": bvs, "best_epoch": epochs, "epochs": epochs,
            "curves": {"train_loss": [1.0 / (e + 1) for e in range(epochs)],
                       "val_loss": [1.2 / (e + 1) for e in range(epochs)],
                       "val_acc": [50.0 + e for e in range(epochs)], "epoch_time_s": [0.1] * epochs},
        }
        if structure is not None:
            metrics["structure"] = structure
        if head == "glai":
            metrics["reduced_epochs"] = reduced_epochs if reduced_epochs is not None else 5
    time_s = phases if phases is not None else (
        {"reduced_mlp": 0.5 * total_s, "conversion": 0.1 * total_s, "estimator": 0.4 * total_s}
        if head == "glai" else {"train": total_s})
    config = copy.deepcopy(config) if config is not None else default_config(experiment, head, seed, rho, tag)
    rec = new_record(
        status=status, error=error, experiment=experiment, head=head, tag=tag, seed=seed, rho=rho,
        family=experiment.split("/")[-1][0],
        overrides=overrides if overrides is not None else [f"experiment={experiment}", f"head={head}"],
        config=config, fingerprint=fingerprint(config), group_fingerprint=fingerprint(config, seed=False),
        deviations=[], process={"pid": 1, "host": "test", "start_utc": "2025-01-01T00:00:00+00:00"}, data_s=0.0,
        metrics=metrics, cost={"time_s": time_s, "total_s": total_s if done else None, "params": {}},
        environment={"versions": {}, "device": "cpu", "git_sha": "0" * 40, "git_dirty": False,
                     "time_utc": "2025-01-01T00:00:00Z"})
    check_record(rec)
    name = head + (f"-{tag}" if tag else "")
    rec["_path"] = f"results/runs/{experiment}/{name}/rho{rho}-seed{seed}.json"
    return rec


def write_records(root: Path, records) -> list[Path]:
    """Write records to ``root/<experiment>/<head>[-<tag>]/rho<rho>-seed<seed>.json`` (without ``_path``)."""
    paths = []
    for rec in records:
        rec = dict(rec)
        name = rec["head"] + (f"-{rec['tag']}" if rec["tag"] else "")
        path = root / rec["experiment"] / name / f"rho{rec['rho']}-seed{rec['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        rec.pop("_path", None)
        path.write_text(json.dumps(rec))
        paths.append(path)
    return paths
