"""Trustworthy runs (SPEC 12): a record per configuration, one process per run, nothing trained is lost,
bad inputs refused before training."""

from __future__ import annotations

import json
import os
import platform
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from glai.config import ConfigError, compose_config
from glai.data.splits import EmbeddingSplit
from glai.errors import DataError, RecordWriteError
from glai.results.records import RunLock, write_record
from glai.runner import run, run_identity

FAST = ["experiment.max_epochs=2", "experiment.reduced_epochs_mode=fixed",
        "experiment.reduced_epochs=1", "structure_samples=0", "verbose=false"]


def _cfg(tmp_path, *overrides):
    return compose_config(["head=linear", f"results_dir={tmp_path}/runs", f"cache_dir={tmp_path}/cache", *FAST,
                           *overrides])


@pytest.mark.slow
def test_an_lr_sweep_writes_one_record_per_value_and_a_rerun_skips_them(tmp_path, repo_root):
    cmd = [sys.executable, "run.py", "-m", "head=mlp", "head.lr=0.001,0.01,0.1", "seed=0",
           f"results_dir={tmp_path}/runs", f"hydra.sweep.dir={tmp_path}/multirun", *FAST]
    first = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    records = sorted((tmp_path / "runs" / "digits" / "mlp").glob("*.json"))
    assert len(records) == 3
    lrs = sorted(json.loads(p.read_text())["config"]["head"]["lr"] for p in records)
    assert lrs == [0.001, 0.01, 0.1]
    before = {p: p.read_bytes() for p in records}
    again = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipping") == 3
    assert all(p.read_bytes() == data for p, data in before.items())


def test_overwrite_replaces_only_the_run_with_the_same_fingerprint(tmp_path):
    slow, fast = _cfg(tmp_path, "head.lr=0.001"), _cfg(tmp_path, "head.lr=0.1")
    run(slow)
    run(fast)
    slow_path, fast_path = run_identity(slow)[2], run_identity(fast)[2]
    assert slow_path != fast_path and slow_path.name.startswith("seed0-")  # the linear head never reads rho
    kept = slow_path.read_bytes()
    run(_cfg(tmp_path, "head.lr=0.1", "overwrite=true"))
    assert slow_path.read_bytes() == kept
    assert json.loads(fast_path.read_text())["config"]["head"]["lr"] == 0.1


def test_records_are_readable_by_collaborators(tmp_path):
    run(_cfg(tmp_path))
    path = run_identity(_cfg(tmp_path))[2]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_run_held_by_another_process_returns_at_once_naming_it(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    path = run_identity(cfg)[2]
    holder = {"status": "running", "process": {"pid": 4242, "host": "node17", "start_utc": "2026-11-27T10:00:00"}}
    write_record(path, holder)
    with RunLock(path):
        rec = run(cfg)
    assert rec["status"] == "running"
    out = capsys.readouterr().out
    assert "pid 4242 on host node17, started 2026-11-27T10:00:00" in out and "not starting it twice" in out
    assert json.loads(path.read_text()) == holder  # nothing trained, nothing written


def test_a_stale_running_record_is_reported_then_run_again(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    config, fp, path = run_identity(cfg)
    write_record(path, {"status": "running", "fingerprint": fp, "config": config,
                        "process": {"pid": 1, "host": "gone", "start_utc": "yesterday"}})
    rec = run(cfg)
    assert "a stale run; running it again" in capsys.readouterr().out
    assert rec["status"] == "done" and json.loads(path.read_text())["status"] == "done"


@pytest.mark.slow
def test_two_identical_processes_train_once(tmp_path, repo_root):
    cmd = [sys.executable, "run.py", "head=mlp", f"results_dir={tmp_path}/runs", f"hydra.run.dir={tmp_path}/h",
           "experiment.max_epochs=40", "structure_samples=0"]
    procs = [subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    trained = [o for o, _ in outs if "BVS (val_acc)" in o]
    assert len(trained) == 1, outs
    other = next(o for o, _ in outs if "BVS (val_acc)" not in o)
    assert "not starting it twice" in other or "skipping" in other
    assert len(list((tmp_path / "runs").rglob("*.json"))) == 1


def test_a_failing_final_write_keeps_the_trained_record(tmp_path, monkeypatch, capsys):
    import glai.runner as runner

    calls = []

    def flaky_write(path, record):
        calls.append(record["status"])
        if record["status"] == "done" and str(path).startswith(str(tmp_path / "runs")):
            raise PermissionError(13, "Permission denied", str(path))
        write_record(path, record)

    monkeypatch.setattr(runner, "write_record", flaky_write)
    cfg = _cfg(tmp_path, "verbose=true")
    with pytest.raises(RecordWriteError, match=r"results_dir=.*GLAI_RESULTS_DIR") as err:
        run(cfg)
    saved = list((tmp_path / "cache" / "unsaved-records").glob("*.json"))
    assert calls[0] == "running" and len(saved) == 1 and str(saved[0]) in str(err.value)
    rec = json.loads(saved[0].read_text())
    assert rec["status"] == "done" and 0 < rec["metrics"]["bvs"] <= 100
    assert f"record: {saved[0]}" in capsys.readouterr().out  # the summary is printed


def test_an_unwritable_results_folder_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    cfg = compose_config(["head=linear", f"results_dir={tmp_path}/file/runs", *FAST])
    with pytest.raises(RecordWriteError, match="results_dir="):
        run(cfg)


@pytest.mark.parametrize("bad_rows", [1, "all"])
def test_non_finite_validation_embeddings_are_refused(tmp_path, monkeypatch, bad_rows):
    import glai.data.loading as loading

    real = loading.load_digits

    def poisoned(val_fraction, seed):
        splits = real(val_fraction, seed)
        x = splits["val"].x.clone()
        x[: (x.shape[0] if bad_rows == "all" else 1), 3] = float("nan")
        return {"train": splits["train"], "val": EmbeddingSplit(x, splits["val"].y)}

    monkeypatch.setattr(loading, "load_digits", poisoned)
    cfg = _cfg(tmp_path)
    n = 360 if bad_rows == "all" else 1
    with pytest.raises(DataError, match=rf"the val embeddings .* have {n} of 360 rows with NaN"):
        run(cfg)
    # the data are checked before any record or lock exists: nothing is left in results_dir
    assert not run_identity(cfg)[2].exists() and not any(Path(cfg.results_dir).rglob("*"))


def test_seed_must_be_non_negative(tmp_path):
    with pytest.raises(ConfigError, match=r"seed=-1.*Fix: seed=0"):
        run(_cfg(tmp_path, "seed=-1"))


def test_process_info_names_this_process(tmp_path):
    from glai.results.records import process_info

    info = process_info()
    assert info["pid"] == os.getpid() and info["host"] == platform.node()


def test_non_finite_validation_loss_fails_the_run():
    from glai.training.loop import NonFiniteLossError, run_epochs
    from glai.training.optimizers import build_optimizer
    from glai.training.tasks import SupervisedTask

    class NanInEval(torch.nn.Linear):
        def forward(self, x):
            y = super().forward(x)
            return y if self.training else y * float("nan")

    model = NanInEval(4, 2)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    with pytest.raises(NonFiniteLossError, match="validation loss is nan at epoch 1"):
        run_epochs(model, build_optimizer("sgd", model.parameters(), 0.1, 0.0), SupervisedTask(), (x, y, None),
                   (x, y, None), batch_size=8, max_epochs=3, generator=torch.Generator().manual_seed(0))


def test_auto_reduced_epochs_reads_the_same_configuration_mlp_run(tmp_path):
    """SPEC 12: reduced epochs = ceil(fraction x the same-seed MLP's epochs to early stop), MLP found by its
    fingerprint (here run first as an ordinary head=mlp job)."""
    common = [f"results_dir={tmp_path}/runs", "experiment.max_epochs=10", "experiment.patience=2",
              "structure_samples=0", "verbose=false"]
    mlp = run(compose_config(["head=mlp", *common]))
    rec = run(compose_config(["head=glai", "experiment.reduced_epochs_mode=auto", "experiment.reduced_fraction=0.5",
                              "experiment.reduced_epochs=99", *common]))
    rule = rec["metrics"]["reduced_epochs_rule"]
    expected = max(1, -(-mlp["metrics"]["epochs"] // 2))
    assert rule["mode"] == "auto" and rule["mlp_epochs"] == mlp["metrics"]["epochs"]
    assert rule["mlp_fingerprint"] == mlp["fingerprint"] and rec["metrics"]["reduced_epochs"] == expected
    assert len(list((tmp_path / "runs" / "digits" / "mlp").glob("*.json"))) == 1  # found, not trained again


def test_auto_reduced_epochs_trains_the_missing_mlp_first(tmp_path):
    cfg = compose_config(["head=glai", "experiment.reduced_epochs_mode=auto", f"results_dir={tmp_path}/runs",
                          "experiment.max_epochs=4", "structure_samples=0", "verbose=false"])
    rec = run(cfg)
    (mlp_path,) = list((tmp_path / "runs" / "digits" / "mlp").glob("*.json"))
    mlp = json.loads(mlp_path.read_text())
    assert mlp["status"] == "done" and mlp["fingerprint"] == rec["metrics"]["reduced_epochs_rule"]["mlp_fingerprint"]
    assert mlp["overrides"] == ["head=mlp"] and mlp["head"] == "mlp"  # not the GLAI job's head overrides
    # digits is family A: fraction 0.20 (paper 3.6)
    assert rec["metrics"]["reduced_epochs"] == max(1, -(-mlp["metrics"]["epochs"] * 2 // 10))
    assert rec["config"]["experiment"]["reduced_epochs_mode"] == "auto"


def test_structure_mode_needs_a_threshold(tmp_path):
    with pytest.raises(ConfigError, match=r"head.structure_threshold=0.0.*Fix: head.structure_threshold="):
        run(_cfg(tmp_path, "head=glai", "experiment.reduced_epochs_mode=structure"))


def test_a_glai_record_names_the_estimator_backend_that_ran(tmp_path, monkeypatch):
    """``head.backend=auto`` is stored resolved on the CPU (like ``device``): ``cpp`` when the compiled estimator
    is built, else ``torch``; the two are different runs (fingerprints) but the same protocol (no variant)."""
    import glai.kernels.estimator.function as function_module
    import glai.runner as runner_module
    from glai.results.identity import differences

    cfgs = {}
    for built in (True, False):
        monkeypatch.setattr(function_module, "cpp_available", lambda built=built: built)
        cfg = _cfg(tmp_path, "head=glai", "device=cpu")
        cfgs[built] = run_identity(cfg)
    (with_cpp, fp_cpp, _), (without, fp_torch, _) = cfgs[True], cfgs[False]
    assert with_cpp["head"]["backend"] == "cpp" and without["head"]["backend"] == "torch"
    assert fp_cpp != fp_torch
    reference = compose_config(["head=glai"])
    assert "head.backend" not in differences(with_cpp, OmegaConf.to_container(reference))
    # a non-GLAI head keeps what it was given (it has no estimator)
    monkeypatch.setattr(function_module, "cpp_available", lambda: True)
    assert run_identity(_cfg(tmp_path, "head=mlp", "device=cpu"))[0]["head"]["backend"] == "auto"
    # asking for cpp where it is not built is refused before any work, naming the build command
    monkeypatch.setattr(runner_module, "cpp_available", lambda: False)
    with pytest.raises(ConfigError, match="python -m glai.kernels.estimator"):
        run_identity(_cfg(tmp_path, "head=glai", "head.backend=cpp", "device=cpu"))


def test_a_glai_run_trains_with_the_backend_its_record_names(tmp_path, monkeypatch):
    """``auto`` is resolved once, before training, and that backend (not ``auto``) reaches the estimator."""
    import glai.kernels.estimator.function as function_module
    import glai.method.sparse_estimator as sparse_module

    monkeypatch.setattr(function_module, "cpp_available", lambda: False)
    seen = []
    original = sparse_module.glai_estimator

    def spy(*args, **kwargs):
        seen.append((args[0].shape[0], args[5] if len(args) > 5 else kwargs.get("backend")))
        return original(*args, **kwargs)

    monkeypatch.setattr(sparse_module, "glai_estimator", spy)
    record = run(_cfg(tmp_path, "head=glai", "device=cpu"))
    assert record["config"]["head"]["backend"] == "torch" and {b for _, b in seen} == {"torch"}
    # cost.estimator_backends names what ran at every batch size the estimator saw (training and evaluation)
    ran = record["cost"]["estimator_backends"]
    assert ran == {str(batch): backend for batch, backend in sorted(set(seen))}
    assert len(ran) >= 2 and str(record["config"]["experiment"]["batch_size"]) in ran


def _stand_in_root(root: Path, content: bytes = b"x") -> Path:
    """A data root holding offline/A1's relative sources (their content does not matter to the identity)."""
    for rel in ("data/cifar10/cifar10_jpg.tar.gz", "weights/tf_efficientnet_lite0.safetensors"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


def test_the_same_relative_path_under_another_data_root_is_another_run(tmp_path):
    """Identity is the data, not the path's spelling (issue 19: a finished run of other data was reused)."""
    a, b = _stand_in_root(tmp_path / "a"), _stand_in_root(tmp_path / "b")
    base = ["experiment=offline/A1", "head=mlp", f"results_dir={tmp_path}/runs"]
    config_a, fp_a, _ = run_identity(compose_config([*base, f"data_root={a}"]))
    config_b, fp_b, _ = run_identity(compose_config([*base, f"data_root={b}"]))
    assert fp_a != fp_b
    assert config_a["dataset"]["path"] == str((a / "data/cifar10/cifar10_jpg.tar.gz").resolve())
    assert config_a["backbone"]["path"] == str((a / "weights/tf_efficientnet_lite0.safetensors").resolve())
    # the same data spelled another way is the same run
    spelled = compose_config([*base, f"data_root={a}/../a"])
    assert run_identity(spelled)[1] == fp_a


def test_a_file_changed_in_place_is_another_run(tmp_path):
    root = _stand_in_root(tmp_path / "root")
    cfg = compose_config(["experiment=offline/A1", "head=mlp", f"data_root={root}"])
    before = run_identity(cfg)[1]
    (root / "data/cifar10/cifar10_jpg.tar.gz").write_bytes(b"other photos")
    assert run_identity(cfg)[1] != before


def test_a_rho_sweep_trains_the_mlp_once(tmp_path, capsys):
    first = run(_cfg(tmp_path, "head=mlp", "rho=0.5"))
    again = run(_cfg(tmp_path, "head=mlp", "rho=0.25"))
    assert first["fingerprint"] == again["fingerprint"] and "skipping" in capsys.readouterr().out
    assert len(list(Path(tmp_path, "runs").rglob("*.json"))) == 1


def test_overwrite_replaces_a_corrupt_record(tmp_path):
    cfg = _cfg(tmp_path)
    path = run_identity(cfg)[2]
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON.*overwrite=true"):
        run(cfg)
    rec = run(_cfg(tmp_path, "overwrite=true"))
    assert rec["status"] == "done" and json.loads(path.read_text())["status"] == "done"


def test_run_py_prints_a_config_error_without_a_traceback(tmp_path, repo_root):
    out = subprocess.run([sys.executable, "run.py", "experiment.min_delta=nan", f"results_dir={tmp_path}",
                          f"hydra.run.dir={tmp_path}/h"], cwd=repo_root, capture_output=True, text=True, timeout=300,
                         env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"})
    assert out.returncode == 2
    assert "ConfigError: experiment.min_delta=nan: must be a finite number. Fix: experiment.min_delta=0.1" in out.stderr
    assert "Traceback" not in out.stderr and not any(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("poison, error, match", [
    ("one_class", DataError, r"train split of dataset 'digits' .* has 1 class: a classifier needs >= 2"),
    ("negative", DataError, r"has label -1: labels must be class indices 0..K-1"),
    ("empty", DataError, r"the val split of dataset 'digits' .* is empty"),
])
def test_data_that_cannot_train_the_head_is_refused_before_any_record(tmp_path, monkeypatch, poison, error, match):
    import glai.data.loading as loading

    real = loading.load_digits

    def poisoned(val_fraction, seed):
        splits = real(val_fraction, seed)
        train, val = splits["train"], splits["val"]
        if poison == "one_class":
            train = EmbeddingSplit(train.x, torch.zeros_like(train.y))
        elif poison == "negative":
            y = train.y.clone()
            y[0] = -1
            train = EmbeddingSplit(train.x, y)
        else:
            val = EmbeddingSplit(val.x[:0], val.y[:0])
        return {"train": train, "val": val}

    monkeypatch.setattr(loading, "load_digits", poisoned)
    cfg = _cfg(tmp_path)
    with pytest.raises(error, match=match):
        run(cfg)
    assert not any(Path(cfg.results_dir).rglob("*"))


def test_more_shards_than_rows_fails_before_training(tmp_path):
    cfg = compose_config(["experiment=combine/digits", "study.shards=5000", f"results_dir={tmp_path}/runs",
                          "experiment.reduced_epochs_mode=fixed", "verbose=false"])
    with pytest.raises(ConfigError, match=r"study.shards=5000 but the train split .* has 1437 rows.*Fix: study.shards=4"
                       ):
        run(cfg)
    assert not (tmp_path / "runs").exists()
