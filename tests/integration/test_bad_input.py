"""Bad input a user can give (issue 30): each case through ``python run.py`` as the user types it exits 2 with one
line that names the key or file and a fix, prints no traceback, and leaves no record and no half-written cache.
The data are written here: a user's CSV and class folders gone wrong in the ways the issue lists."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from tests.data.tiny_fixtures import build_tiny_assets

    return build_tiny_assets(tmp_path_factory.mktemp("tiny_bad"))


def _text(assets, path) -> list[str]:
    """A user's CSV on the tiny BERT (experiment=A2's protocol, 6 classes)."""
    from tests.data.tiny_fixtures import group_overrides, tiny_backbone

    return ["experiment=A2", "dataset=csv", f"dataset.path={path}", "dataset.name=mine",
            *group_overrides("backbone", tiny_backbone("bert", assets)), "experiment.arch=[32,16,3]",
            f"data_root={assets.root}"]


def _images(assets, path, *extra) -> list[str]:
    from tests.data.tiny_fixtures import group_overrides, tiny_backbone

    return ["experiment=A1", "dataset=folder", f"dataset.path={path}", "dataset.name=mine", *extra,
            *group_overrides("backbone", tiny_backbone("effnet", assets)), "experiment.arch=[1280,16,2]",
            f"data_root={assets.root}"]


def _csv(path: Path, rows: list[tuple], columns=("text", "label")) -> Path:
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def _rows(n_per_class: int, labels=("a", "b", "c")) -> list[tuple]:
    return [(f"word{i} sample {c}", c) for c in labels for i in range(n_per_class)]


def _folder(root: Path, classes: dict[str, int]) -> Path:
    from PIL import Image

    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (40 * i % 255, 0, 0)).save(root / name / f"{i}.png")
    return root


def _case(name: str, assets, d: Path) -> tuple[list[str], str]:
    """(overrides, what the one line must name) of each bad input."""
    if name == "binary file named .csv":
        (d / "x.csv").write_bytes(bytes(range(256)) * 8)
        return _text(assets, d / "x.csv"), "cannot be read as CSV"
    if name == "empty file":
        (d / "x.csv").write_text("")
        return _text(assets, d / "x.csv"), "x.csv is empty"
    if name == "header only":
        (d / "x.csv").write_text("text,label\n")
        return _text(assets, d / "x.csv"), "has a header (text, label) and no rows"
    if name == "missing labels":
        rows = _rows(4)
        rows[1] = (rows[1][0], None)
        return _text(assets, _csv(d / "x.csv", rows)), "1 empty labels (lines 3)"
    if name == "class ids, not indices":
        return _text(assets, _csv(d / "x.csv", _rows(4, labels=(1, 2, 3)))), "class ids (1, 2, 3"
    if name == "a class too small to validate":
        return _text(assets, _csv(d / "x.csv", _rows(4) + [("lonely", "d")])), "'d': 1 row"
    if name == "no such label column":
        return _text(assets, _csv(d / "x.csv", _rows(4))) + ["dataset.label_column=stars"], \
            "dataset.label_column='stars' is not a column"
    if name == "a folder instead of a CSV file":
        (d / "texts").mkdir()
        _csv(d / "texts" / "mine.csv", _rows(4))
        return _text(assets, d / "texts"), "no train.csv in"
    if name == "a file instead of class folders":
        (d / "photo.png").write_bytes(b"not a folder")
        return _images(assets, d / "photo.png", "dataset.format=imagefolder"), "is a file, not a folder"
    if name == "no class folders":
        (d / "flat").mkdir()
        (d / "flat" / "a.png").write_bytes(b"x")
        return _images(assets, d / "flat"), "no class folders in image folder"
    if name == "an empty class folder":
        root = _folder(d / "photos", {"cat": 3, "dog": 3})
        (root / "bird").mkdir()
        return _images(assets, root, "experiment.arch=[1280,16,3]"), "['bird']"
    if name == "a broken link":
        root = _folder(d / "photos", {"cat": 3, "dog": 3})
        (root / "cat" / "gone.png").symlink_to(d / "nowhere.png")
        return _images(assets, root), "gone.png is a broken link"
    if name == "a negative weight decay":
        return ["head=glai", "head.reduced_weight_decay=-0.5"], "head.reduced_weight_decay=-0.5"
    if name == "more outputs than classes":
        return ["head=mlp", "experiment.arch=[64,32,12]"], "experiment.arch[-1]=12"
    if name == "a backbone that is not there":
        return _text(assets, _csv(d / "x.csv", _rows(4))) + [f"backbone.path={d}/no_model"], "backbone.path="
    if name == "a misspelled key":
        return ["hed.lr=3"], "did you mean head.lr?"
    if name == "a group option that does not exist":
        return ["head=glia"], "Fix: head=glai"
    if name == "a value of the wrong type":
        return ["head.lr=abc"], "head.lr='abc': must be float"
    if name == "a sweep with an option that does not exist":
        return ["-m", "head=mlp,glia", "seed=0,1"], "Fix: head=glai"
    if name == "a corrupt study file":
        (d / "sweep").mkdir()
        (d / "sweep" / "optuna.journal").write_bytes(bytes(range(128, 256)) * 4)
        return ["-m", "tuning=search", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={d}/sweep"], \
            "hydra.sweeper.storage: the study"
    if name == "empty texts":
        rows = _rows(4)
        rows[1], rows[5] = (None, rows[1][1]), ("  ", rows[5][1])
        return _text(assets, _csv(d / "x.csv", rows)), "are empty on 2 of 12 rows (lines 3, 7)"
    if name == "labels -1, 0, 1":
        return _text(assets, _csv(d / "x.csv", _rows(4, labels=(-1, 0, 1)))), "holds the label -1 (lines 2, 3, 4, 5)"
    if name == "one class folder":
        return _images(assets, _folder(d / "photos", {"cat": 5})) + ["experiment.arch=[256,16,2]"], \
            "holds 1 class: a classifier needs at least 2"
    if name == "more folds than rows":
        return ["-m", "tuning=search", "head=linear", "tuning.folds=5000", "hydra.sweeper.n_trials=1",
                f"hydra.sweep.dir={d}/sweep"], "tuning.folds=5000: folds of 0 of the 1437 training rows"
    if name == "a search without -m":
        return ["tuning=search", "head=linear"], "Fix: add -m (python run.py -m tuning=search"
    if name == "a misspelled group":
        return ["hed=mlp"], "did you mean the group head (conf/head/)? Fix: head=mlp"
    if name == "a shell command in a name":
        return ["experiment.name=a$(touch x)"], "experiment.name=a$(touch x): Hydra cannot read this override"
    if name == "bad values in a tuned file":
        import yaml

        from glai.config import compose_config
        from glai.tuned import FORMAT, group_of, tuned_path

        group = group_of(compose_config(["head=mlp"]))
        path = tuned_path(d / "tuned", "digits", "mlp", group)
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump({"format": FORMAT, "experiment": "digits", "head": "mlp", "group": group,
                                        "settings": {"head.optimizer": "bogus", "head.weight_decay": float("nan")},
                                        "tuning": {"role": "none"}}))
        return ["tuning=best", "head=mlp", f"tuned_dir={d}/tuned", "tuning.shipped=false"], (
            f"tuned settings {path} set head.optimizer='bogus': choose one of ('sgd', 'adam', 'adamw', 'lbfgs'); "
            f"head.weight_decay=nan: must be a finite number. Fix: correct them in {path}")
    if name == "no text columns":
        return _text(assets, _csv(d / "x.csv", _rows(4))) + ["dataset.text_columns=[]"], \
            "dataset.text_columns=[]: a text dataset reads"
    raise KeyError(name)


CASES = ["binary file named .csv", "empty file", "header only", "missing labels", "class ids, not indices",
         "a class too small to validate", "no such label column", "a folder instead of a CSV file",
         "a file instead of class folders", "no class folders", "an empty class folder", "a broken link",
         "a negative weight decay", "more outputs than classes", "a backbone that is not there",
         "a misspelled key", "a group option that does not exist", "a value of the wrong type",
         "a sweep with an option that does not exist", "a corrupt study file",
         "empty texts", "labels -1, 0, 1", "no text columns", "one class folder", "more folds than rows",
         "a search without -m", "a misspelled group", "a shell command in a name", "bad values in a tuned file"]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(name, assets, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    overrides, named = _case(name, assets, d)
    done = subprocess.run([sys.executable, "run.py", *overrides, f"results_dir={tmp_path}/runs",
                           f"cache_dir={tmp_path}/cache", "hydra.run.dir=" + str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                               if k != "HYDRA_FULL_ERROR"})
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("[glai] ") and "Error: " in ln]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert named in errors[0] and "Fix:" in errors[0], errors[0]
    assert not list((tmp_path / "runs").rglob("*.json")) if (tmp_path / "runs").exists() else True
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and (".tmp" in p.name or
                                                                            p.suffix == ".safetensors")]
    assert not leftovers


def test_images_below_the_class_level_are_counted_not_dropped_silently(assets, tmp_path, caplog):
    from glai.config import compose_config
    from glai.data.datasets import load_splits

    root = _folder(tmp_path / "photos", {"cat": 4, "dog": 4})
    _folder(root / "cat" / "more", {"x": 2})  # cat/more/x/*.png: two images a level too deep
    cfg = compose_config(_images(assets, root))
    with caplog.at_level("WARNING"):
        splits = load_splits(cfg.dataset, ("train", "val"), data_root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    assert sum(len(s.samples) for s in splits.values()) == 8
    assert any("2 images in sub-folders of class folders are left out" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("script", "args", "named"), [
    ("scripts/make_tables.py", ["--runs", "{tmp}/nowhere"], "--runs"),
    ("scripts/save_tuned.py", ["--find", "hed.lr=3"], "did you mean head.lr?"),
    ("scripts/structure_threshold.py", ["hed.lr=3"], "did you mean head.lr?"),
    ("scripts/cache_embeddings.py", ["experiment=A9"], "no conf/experiment/A9.yaml"),
    ("scripts/save_tuned.py", ["{tmp}/not_a_sweep"], "search.yaml is missing"),
])
def test_the_scripts_answer_bad_input_in_one_line(script, args, named, tmp_path):
    done = subprocess.run([sys.executable, script, *(a.format(tmp=tmp_path) for a in args)], cwd=ROOT,
                          capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                               if k != "HYDRA_FULL_ERROR"})
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert any(named in ln for ln in lines[-1:]), lines[-3:]


@pytest.mark.parametrize("trials", ["0", "-1", "x"])
def test_tune_sh_refuses_a_budget_that_is_not_a_trial_count_before_any_search(trials, tmp_path):
    """HYDRA_TRIALS=0, -1 or x failed 13-17 s later in a Hydra message that did not name HYDRA_TRIALS."""
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "HYDRA_TRIALS": trials,
           "EXPERIMENTS": "digits", "HEADS": "linear", "SEEDS": "0", "SHIPPED": "0",
           "TUNING_RUNS": str(tmp_path / "runs"), "TUNED_OUT": str(tmp_path / "tuned"),
           "GLAI_RESULTS_DIR": str(tmp_path / "results"), "GLAI_CACHE_DIR": str(tmp_path / "cache")}
    start = time.monotonic()
    done = subprocess.run(["bash", "experiments/tune.sh", "basic"], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=120)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith(f"[glai] ConfigError: HYDRA_TRIALS='{trials}'") and "Fix: HYDRA_TRIALS=16" in lines[0]
    assert time.monotonic() - start < 10 and not list(tmp_path.iterdir())  # no search, no Python started


def test_a_cache_that_cannot_be_written_is_one_line_naming_glai_cache_dir(assets, tmp_path):
    """A read-only GLAI_CACHE_DIR was a traceback naming neither cache_dir nor GLAI_CACHE_DIR. A file where the
    folder should be stands in for a read-only one (root writes into those)."""
    (tmp_path / "blocked").write_text("")
    csv = _csv(tmp_path / "x.csv", _rows(4))
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    done = subprocess.run([sys.executable, "run.py", *_text(assets, csv), "experiment.arch=[32,16,3]",
                           f"results_dir={tmp_path}/runs", f"hydra.run.dir={tmp_path}/out"], cwd=ROOT,
                          capture_output=True, text=True, env={**env, "GLAI_CACHE_DIR": str(tmp_path / "blocked")})
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("[glai] ") and "Error: " in ln]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(errors) == 1, done.stderr[-2000:]
    assert "cache_dir: cannot write" in errors[0] and "Fix: GLAI_CACHE_DIR= a writable folder" in errors[0], errors
    assert not (tmp_path / "runs").exists()
