"""Families B (InfoNCE) and C (few-shot episodes) end to end on digits, and the cached-structure rule."""

import math

import pytest
import torch

from glai.config import compose_config
from glai.method.heads import MLPHead
from glai.method.pipeline import build_glai_head
from glai.runner import run
from glai.training.early_stopping import EarlyStopping
from glai.training.loop import run_epochs
from glai.training.optimizers import build_optimizer
from glai.training.tasks import ContrastiveTask, SupervisedTask, draw_episode, info_nce

FAMILY_B = ["experiment.family=B", "experiment.monitor=val_loss", "experiment.min_delta=1e-5",
            "experiment.dropout=0.2", "experiment.arch=[64,32,16]", "experiment.max_epochs=3",
            "experiment.reduced_epochs_mode=fixed", "experiment.reduced_epochs=2", "structure_samples=0"]
FAMILY_C = ["experiment.family=C", "experiment.n_way=4", "experiment.k_shot=3", "experiment.q_query=5",
            "experiment.arch=[64,32,4]", "experiment.max_epochs=20", "experiment.reduced_epochs_mode=fixed",
            "experiment.reduced_epochs=5",
            "experiment.patience=30", "experiment.min_delta=1", "structure_samples=0"]


@pytest.mark.parametrize("head", ["mlp", "glai"])
def test_family_b_records_eval_mode_infonce(head, tmp_path):
    rec = run(compose_config([f"head={head}", f"results_dir={tmp_path}", *FAMILY_B]))
    m = rec["metrics"]
    assert rec["status"] == "done" and m["monitor"] == "val_loss" and m["mode"] == "min"
    assert all(v is None for v in m["curves"]["val_acc"])
    assert m["bvs"] == min(m["curves"]["val_loss"]) and m["bvs"] > 0


def test_family_c_averages_episodes_with_an_interval(tmp_path):
    rec = run(compose_config(["head=linear", f"results_dir={tmp_path}", "episodes=3", *FAMILY_C]))
    ep = rec["metrics"]["episodes"]
    assert ep["n"] == 3 and len(ep["bvs"]) == 3
    assert rec["metrics"]["bvs"] == pytest.approx(sum(ep["bvs"]) / 3)
    assert math.isfinite(ep["ci95"]) and ep["ci95"] >= 0
    # query accuracy over 4 x 5 = 20 samples moves in steps of 5 percentage points
    assert all(abs(b / 5 - round(b / 5)) < 1e-9 for b in ep["bvs"])


def test_episodes_are_disjoint_and_relabelled():
    x = torch.arange(200, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(200) // 10  # 20 classes x 10 samples
    g = torch.Generator().manual_seed(0)
    sx, sy, qx, qy = draw_episode(x, y, n_way=5, k_shot=2, q_query=3, generator=g)
    assert sx.shape == (10, 1) and qx.shape == (15, 1)
    assert sorted(sy.unique().tolist()) == sorted(qy.unique().tolist()) == [0, 1, 2, 3, 4]
    assert not set(sx.flatten().tolist()) & set(qx.flatten().tolist())
    for label in range(5):  # support and query of one label come from one original class
        classes = set((torch.cat([sx[sy == label], qx[qy == label]]).flatten() // 10).long().tolist())
        assert len(classes) == 1
    with pytest.raises(ValueError, match="needs 21"):
        draw_episode(x, y, n_way=21, k_shot=2, q_query=3, generator=g)


def test_info_nce_prefers_matching_views():
    z = torch.randn(8, 16)
    assert info_nce(z, z, 0.07) < info_nce(z, z[torch.randperm(8, generator=torch.Generator().manual_seed(1))], 0.07)
    assert info_nce(z, z, 0.07) > 0


@pytest.mark.parametrize("task", [SupervisedTask(), ContrastiveTask(0.2, 0.07, 16)], ids=["A", "B"])
def test_estimator_training_never_runs_the_selector(task):
    """SPEC 2: the activation patterns are cached once; the selector stays out of the training loop."""
    torch.manual_seed(0)
    selector = MLPHead((10, 8, 3))
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    head = build_glai_head(selector, x, 40, cache=(x,))
    train_gates, val_gates = head.conversion.gates
    frozen = [p.clone() for p in head.selector.parameters()]

    def forbidden(*args, **kwargs):
        raise AssertionError("the selector ran inside the training loop")

    head.selector.forward = forbidden
    head.selector.hidden_patterns = forbidden
    opt = build_optimizer("adam", head.estimator.parameters(), 1e-2, 0.0)
    task.monitor = "val_loss"
    hist = run_epochs(head, opt, task, (x, y, train_gates), (x, y, val_gates), batch_size=16, max_epochs=3,
                      generator=torch.Generator().manual_seed(0), stopper=EarlyStopping("min", 5, 0.0), mode="min")
    assert hist.epochs == 3
    assert all(torch.equal(a, b) for a, b in zip(frozen, head.selector.parameters()))
