"""``run.py`` end to end on digits: every head writes a valid record; multirun; resume; NaN losses."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glai.config import compose_config
from glai.results.identity import reads_rho
from glai.runner import run, run_identity

ROOT = Path(__file__).resolve().parents[2]

FAST = ["experiment.max_epochs=3", "experiment.reduced_epochs_mode=fixed",
        "experiment.reduced_epochs=2", "structure_samples=64"]
HEADS = ["mlp", "mlp_reduced", "linear", "glai"]


def _record(root, experiment, head, rho=0.5, seed=0) -> Path:
    """The one record of (experiment, head, rho, seed) under ``root`` (its name ends in the fingerprint)."""
    prefix = f"rho{rho:g}-" if reads_rho(head) else ""
    (path,) = sorted((root / experiment / head).glob(f"{prefix}seed{seed}-*.json"))
    return path


def _check_record(rec, head):
    assert rec["schema_version"] == 2 and rec["status"] == "done" and rec["error"] is None
    assert len(rec["fingerprint"]) == 64 and len(rec["group_fingerprint"]) == 64
    assert rec["experiment"] == "digits" and rec["head"] == head and rec["family"] == "A"
    m, c = rec["metrics"], rec["cost"]
    assert m["monitor"] == "val_acc" and m["mode"] == "max"
    assert 1 <= m["epochs"] <= 3 and len(m["curves"]["val_acc"]) == m["epochs"]
    assert 0 < m["bvs"] <= 100 and m["bvs"] == max(m["curves"]["val_acc"])
    assert c["total_s"] > 0 and math.isclose(sum(c["time_s"].values()), c["total_s"], rel_tol=1e-9)
    assert rec["config"]["head"]["name"] == head and rec["environment"]["versions"]["torch"]
    if head == "glai":
        assert set(c["time_s"]) == {"reduced_mlp", "conversion", "estimator"}
        assert m["reduced_epochs"] == 2 and len(m["reduced_curves"]["val_acc"]) == 2
        p = c["params"]
        assert (p["O"], p["R"], p["E"]) == (9_610, 4_810, 41_610)
        assert p["R"] + p["kept"] == p["O"] and p["trainable"] == p["kept"]
        assert len(m["structure"]["path_distance"]) == 2
    if head in ("mlp", "mlp_reduced"):
        assert len(m["structure"]["weight_change"]) == m["epochs"]


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_run_py_writes_a_valid_record(head, tmp_path, repo_root):
    out = subprocess.run(
        [sys.executable, "run.py", f"head={head}", f"results_dir={tmp_path}", *FAST,
         f"hydra.run.dir={tmp_path}/hydra"],
        cwd=repo_root, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "BVS (val_acc)" in out.stdout
    rec = json.loads(_record(tmp_path, "digits", head).read_text())
    _check_record(rec, head)


@pytest.mark.slow
def test_multirun_writes_one_record_per_job(tmp_path, repo_root):
    out = subprocess.run(
        [sys.executable, "run.py", "-m", "head=mlp,mlp_reduced,glai,linear", "seed=0,1", f"results_dir={tmp_path}",
         "experiment.max_epochs=2", "experiment.reduced_epochs_mode=fixed",
         "experiment.reduced_epochs=1", "structure_samples=0",
         f"hydra.sweep.dir={tmp_path}/multirun", "verbose=false"],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = sorted(tmp_path.glob("digits/*/*.json"))
    assert len(records) == 8
    got = {(json.loads(p.read_text())["head"], json.loads(p.read_text())["seed"]) for p in records}
    assert got == {(h, s) for h in HEADS for s in (0, 1)}
    assert all(json.loads(p.read_text())["status"] == "done" for p in records)


def test_done_record_is_not_overwritten_unless_asked(tmp_path, capsys):
    cfg = compose_config(["head=linear", f"results_dir={tmp_path}", *FAST])
    first = run(cfg)
    path = run_identity(cfg)[2]
    before = path.read_text()
    again = run(cfg)
    assert "skipping" in capsys.readouterr().out
    assert path.read_text() == before and again["environment"] == first["environment"]
    run(compose_config(["head=linear", f"results_dir={tmp_path}", "overwrite=true", *FAST]))
    assert path.read_text() != before


def test_nan_loss_fails_the_run_with_its_reason(tmp_path):
    cfg = compose_config(["head=mlp", f"results_dir={tmp_path}", "experiment.lr=1e30", *FAST])
    rec = run(cfg)
    assert rec["status"] == "failed" and "NonFiniteLossError" in rec["error"]
    on_disk = json.loads(_record(tmp_path, "digits", "mlp").read_text())
    assert on_disk["status"] == "failed" and on_disk["error"] == rec["error"]


def test_same_seed_same_result(tmp_path):
    a = run(compose_config(["head=glai", f"results_dir={tmp_path}/a", *FAST]))
    b = run(compose_config(["head=glai", f"results_dir={tmp_path}/b", *FAST]))
    assert a["metrics"]["curves"]["val_loss"] == b["metrics"]["curves"]["val_loss"]


def test_structural_convergence_switch_ends_the_reduced_phase(tmp_path):
    """head.structure_threshold > 0: the reduced MLP stops once m_t < threshold (beyond the paper)."""
    cfg = compose_config(["head=glai", f"results_dir={tmp_path}", "experiment.max_epochs=2",
                          "experiment.reduced_epochs_mode=fixed",
                          "experiment.reduced_epochs=10", "head.structure_threshold=1e9"])
    m = run(cfg)["metrics"]
    assert m["reduced_epochs"] == 1 and m["reduced_stopped_by"] == "structure"
    cfg = compose_config(["head=glai", f"results_dir={tmp_path}/off", "experiment.max_epochs=2",
                          "experiment.reduced_epochs_mode=fixed", "experiment.reduced_epochs=3"])
    m = run(cfg)["metrics"]
    assert m["reduced_epochs"] == 3 and m["reduced_stopped_by"] == "fixed_epochs"


def test_wandb_logging_offline(tmp_path, monkeypatch):
    """wandb.enabled=true logs the finished run's curves offline (no network, no account)."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    rec = run(compose_config(["head=linear", f"results_dir={tmp_path}/runs", "wandb.enabled=true", *FAST]))
    assert rec["status"] == "done"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


@pytest.mark.parametrize("arch", [[64, 32, 24, 10], [64, 24, 16, 20, 10]], ids=["L2", "L3"])
def test_deep_heads_train_as_glai(arch, tmp_path):
    """Deep heads end to end (issue 13): routes through L hidden layers, pruned to the MLP's budget."""
    cfg = compose_config(["head=glai", f"results_dir={tmp_path}", f"experiment.arch=[{','.join(map(str, arch))}]",
                          *FAST])
    rec = run(cfg)
    p, m = rec["cost"]["params"], rec["metrics"]
    assert rec["status"] == "done" and 0 < m["bvs"] <= 100
    assert p["hidden_layers"] == len(arch) - 2 and p["R"] + p["kept"] == p["O"]
    assert 0 < p["gate_columns_used"] <= p["gate_columns"] and p["trainable"] == p["kept"]
    assert m["step_ms"] > 0 and m["reduced_step_ms"] > 0


def test_runs_flush_denormal_floats_for_every_head(tmp_path):
    """Saturated softmax gradients (~1e-45) would make CPU steps 10-100x slower: the runner flushes them."""
    torch.set_flush_denormal(False)
    assert float(torch.tensor([1e-44]) * 1.0) > 0
    rec = run(compose_config(["head=linear", f"results_dir={tmp_path}", *FAST]))
    assert rec["environment"]["flush_denormal"] is True
    assert float(torch.tensor([1e-44]) * 1.0) == 0.0


def test_the_l0_penalty_sparsifies_the_selector_and_the_record_says_so(tmp_path):
    """head.l0_lambda (EAT, SPEC 11) on GLAI's reduced MLP: a lower firing ratio, fewer active paths per
    sample; the records carry both, for the MLP too."""
    common = ["experiment.reduced_epochs_mode=fixed",
              "experiment.reduced_epochs=8", "experiment.max_epochs=2", "structure_samples=0"]
    off = run(compose_config(["head=glai", f"results_dir={tmp_path}/off", *common]))["metrics"]
    on = run(compose_config(["head=glai", f"results_dir={tmp_path}/on", "head.l0_lambda=0.05", "head.l0_sigma=1e-3",
                             *common]))["metrics"]
    assert len(off["firing_ratio"]) == 1 and 0 < off["firing_ratio"][0] <= 1
    assert on["firing_ratio"][0] < off["firing_ratio"][0]
    assert 0 < on["active_paths_per_sample"] < off["active_paths_per_sample"]
    mlp = run(compose_config(["head=mlp", f"results_dir={tmp_path}/mlp", *common]))["metrics"]
    assert len(mlp["firing_ratio"]) == 1 and mlp.get("active_paths_per_sample") is None


def test_studies_run_from_their_experiment_configs_and_get_tables_of_their_own(tmp_path):
    """experiment=retrain/digits and combine/digits (papers/000): one record each, summarised by make tables
    in retrain.md and combine.md, never as a row of the protocol tables."""
    from glai.results.tables import write_all

    fast = [f"results_dir={tmp_path}/runs", "experiment.max_epochs=3", "experiment.reduced_epochs_mode=fixed",
            "experiment.reduced_epochs=2",
            "structure_samples=0", "verbose=false"]
    retrain = run(compose_config(["experiment=retrain/digits", *fast]))
    combine = run(compose_config(["experiment=combine/digits", "study.shard_split=class", *fast]))
    assert retrain["status"] == combine["status"] == "done"
    assert retrain["head"] == "glai" and retrain["metrics"]["study"]["name"] == "retrain"
    run(compose_config(["head=mlp", *fast]))
    write_all(tmp_path / "runs", tmp_path / "tables", figures=False)
    tables = tmp_path / "tables"
    assert (tables / "retrain.md").read_text().count("retrain/digits") == 6
    assert "non-IID" in (tables / "combine.md").read_text()
    assert "retrain/digits" not in (tables / "table3.md").read_text()
    assert "combine/digits" not in (tables / "table3.md").read_text()


def test_study_tables_never_average_runs_of_different_settings(tmp_path):
    """Two retrain studies that differ in head.lr get two rows each, marked by their fingerprints."""
    from glai.results.tables import write_all

    fast = [f"results_dir={tmp_path}/runs", "experiment.max_epochs=2", "experiment.reduced_epochs_mode=fixed",
            "experiment.reduced_epochs=1",
            "structure_samples=0", "verbose=false", "experiment=retrain/digits"]
    run(compose_config(fast))
    run(compose_config([*fast, "head.lr=0.01"]))
    write_all(tmp_path / "runs", tmp_path / "tables", figures=False)
    import pandas as pd

    table = pd.read_csv(tmp_path / "tables" / "retrain.csv")
    assert len(table) == 12 and table["Exp"].nunique() == 2 and (table["n"] == 1).all()
    assert table["Exp"].str.startswith("retrain/digits #").all()


@pytest.mark.parametrize("overrides", [
    ["head=glai", "head.selector=random"],
    ["head=glai", "head.optimizer=lbfgs", "head.lr=1.0"],
    ["head=linear", "head.optimizer=lbfgs", "head.lr=1.0"],
])
def test_selector_control_and_lbfgs_run_through_the_runner(overrides, tmp_path):
    rec = run(compose_config([*overrides, f"results_dir={tmp_path}", "experiment.max_epochs=4", "verbose=false"]))
    assert rec["status"] == "done", rec.get("error")
    if "head.selector=random" in overrides:
        # no reduced epoch and no partner MLP: the auto rule has nothing to resolve
        metrics = rec["metrics"]
        assert metrics["reduced_epochs"] == 0 and metrics["reduced_epochs_rule"]["mode"] == "random_selector"
        assert not (tmp_path / "digits" / "mlp").exists()
    if "head.optimizer=lbfgs" in overrides:
        assert rec["metrics"]["epochs"] <= 4 and rec["config"]["head"]["optimizer"] == "lbfgs"


@pytest.mark.slow
def test_a_diverging_single_run_exits_2_naming_the_key(tmp_path):
    """head.lr=1e30 ended as a failed run with exit 0 and no key named (issue 30); a sweep's job still goes on."""
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "head=mlp", "head.lr=1e30", f"results_dir={tmp_path}",
                          "structure_samples=0", "verbose=false"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "the step is likely too large (head.lr=1e+30" in out.stderr and "Fix: a smaller head.lr" in out.stderr
    (record,) = tmp_path.rglob("*.json")
    assert json.loads(record.read_text())["status"] == "failed"


@pytest.mark.slow
def test_a_missing_dataset_file_is_one_line_and_exit_2(tmp_path):
    """A backbone or dataset file that does not exist printed Hydra's traceback, exit 1 (issue 30)."""
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "experiment=offline/A1", f"data_root={tmp_path}/none",
                          f"results_dir={tmp_path}/runs"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "Error executing job" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("[glai] DatasetUnavailableError: dataset.path=") and f"{tmp_path}/none" in line
    assert not (tmp_path / "runs").exists()
