"""Full-batch L-BFGS (issue 20): the convex problems of GLAI's estimator and of the linear head reach
scikit-learn's LogisticRegression optimum (same C, lbfgs) -- the peer check of the convex solver."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

import glai
from glai.method.heads import LinearHead, MLPHead
from glai.training.loop import NonFiniteLossError, fit
from glai.training.optimizers import FullBatchLBFGS

WD = 0.05


def _blobs(n, dim=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 1.5
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, dim, generator=g), y


def _sklearn(features: np.ndarray, y: np.ndarray, wd: float) -> LogisticRegression:
    n = features.shape[0]
    return LogisticRegression(C=1.0 / (wd * n), solver="lbfgs", max_iter=10_000, tol=1e-12).fit(features, y)


def _objective(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, wd: float) -> float:
    return float(F.cross_entropy(logits.double(), y) + 0.5 * wd * weights.double().pow(2).sum())


def test_linear_head_reaches_the_sklearn_optimum():
    x, y = _blobs(150)
    vx, vy = _blobs(90, seed=1)
    torch.manual_seed(0)
    head = LinearHead(6, 3)
    fit(head, (x, y), (vx, vy), optimizer="lbfgs", lr=1.0, weight_decay=WD, max_epochs=300, patience=None)
    ref = _sklearn(x.numpy().astype(np.float64), y.numpy(), WD)
    with torch.no_grad():
        ours = _objective(head(x), y, head.layers[0].weight, WD)
        theirs_logits = torch.from_numpy(ref.decision_function(x.numpy().astype(np.float64)))
        theirs = _objective(theirs_logits, y, torch.from_numpy(ref.coef_), WD)
        assert abs(ours - theirs) / theirs < 1e-4, (ours, theirs)
        assert (head(vx).argmax(1).numpy() == ref.predict(vx.numpy().astype(np.float64))).all()


def test_glai_estimator_reaches_the_sklearn_optimum_on_its_path_features():
    """With frozen gates the estimator is multinomial logistic regression over the path features
    x~_i * a_g(x) (all paths kept: Theorem 1's exact conversion), intercept = its biases."""
    x, y = _blobs(150)
    vx, vy = _blobs(90, seed=1)
    torch.manual_seed(0)
    mlp = MLPHead([6, 5, 3])
    head = glai.convert(mlp, x, cache=(vx,), estimator="dense")
    g_tr, g_va = head.conversion.gates
    fit(head, (x, y, g_tr), (vx, vy, g_va), optimizer="lbfgs", lr=1.0, weight_decay=WD, max_epochs=400,
        patience=None)

    def features(xs, gates):  # [N, n_in * n_gates] in the estimator's (i, g) order
        x_tilde = torch.cat([xs, torch.ones(xs.shape[0], 1)], 1)
        return torch.einsum("bi,bs->bis", x_tilde, gates.float()).reshape(xs.shape[0], -1).double().numpy()

    ref = _sklearn(features(x, g_tr), y.numpy(), WD)
    est = head.estimator
    with torch.no_grad():
        ours = _objective(head(x, g_tr), y, est.weight * est.mask, WD)
        theirs = _objective(torch.from_numpy(ref.decision_function(features(x, g_tr))), y,
                            torch.from_numpy(ref.coef_), WD)
        assert abs(ours - theirs) / theirs < 1e-4, (ours, theirs)
        assert (head(vx, g_va).argmax(1).numpy() == ref.predict(features(vx, g_va))).all()


def test_one_iteration_per_epoch_on_the_clock():
    x, y = _blobs(60)
    torch.manual_seed(0)
    hist = fit(LinearHead(6, 3), (x, y), (x, y), optimizer="lbfgs", lr=1.0, weight_decay=WD, max_epochs=7,
               patience=None)
    assert hist.epochs == 7 and hist.steps == 7 and hist.time_s > 0 and len(hist.curves["train_loss"]) == 7
    assert hist.curves["train_loss"][-1] < hist.curves["train_loss"][0]


def test_a_non_finite_loss_restarts_from_the_last_point_then_fails():
    w = torch.nn.Parameter(torch.ones(3))
    opt = FullBatchLBFGS([("weight", w)], lr=1.0, weight_decay=0.0)
    assert math.isfinite(opt.full_batch_epoch(lambda: (w - 2).pow(2).sum()))
    before = w.detach().clone()
    assert math.isnan(opt.full_batch_epoch(lambda: (w * float("nan")).sum()))
    assert torch.equal(w.detach(), before) and opt.restarts == 2
    x, y = _blobs(30)
    with pytest.raises(NonFiniteLossError):
        fit(LinearHead(6, 3), (x * float("inf"), y), (x, y), optimizer="lbfgs", max_epochs=3, patience=None)


def test_biases_are_not_penalised():
    x, y = _blobs(30)
    head = LinearHead(6, 3)
    opt = FullBatchLBFGS(list(head.named_parameters()), lr=1.0, weight_decay=2.0)
    with torch.no_grad():
        head.layers[0].bias.fill_(10.0)
        assert float(opt.penalty()) == pytest.approx(float(head.layers[0].weight.pow(2).sum()))


def test_an_lbfgs_epoch_prints_no_warning():
    """Every L-BFGS run printed PyTorch's 'Converting a tensor with requires_grad=True to a scalar' (issue 30)."""
    import warnings

    x, y = _blobs(60)
    head = LinearHead(6, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(head, (x, y), (x, y), optimizer="lbfgs", lr=1.0, weight_decay=WD, max_epochs=2, patience=None)
