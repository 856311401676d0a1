"""MLP -> GLAI conversion is exact (paper Theorem 1, SPEC 2) and pruning obeys Theorem 2 (SPEC 3)."""

import pytest
import torch

from glai.method.budget import count_paths
from glai.method.conversion import glai_reference_forward, mlp_to_glai
from glai.method.dense_estimator import DenseEstimator
from glai.method.heads import MLPHead
from glai.method.pipeline import build_glai_head
from glai.method.pruning import path_norms, prune
from glai.method.sparse_estimator import SparseEstimator

ARCHS = [(7, 5, 3), (33, 17, 4), (64, 128, 10), (9, 4, 6, 3), (11, 7, 5, 2), (5, 3, 4, 2, 2)]


def _mlp(arch, seed=0):
    torch.manual_seed(seed)
    mlp = MLPHead(arch)
    # biases large enough that many units are inactive: the gates matter
    for layer in mlp.layers:
        torch.nn.init.normal_(layer.bias, std=0.5)
    return mlp


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: "arch" + "x".join(map(str, a)))
def test_conversion_reproduces_mlp_to_fp32_rounding(arch):
    mlp = _mlp(arch)
    x = torch.randn(257, arch[0]) * 2
    expansion = mlp_to_glai(mlp)
    gates = expansion.gates(mlp, x)
    assert 0 < gates.float().mean() < 1, "test inputs should switch some units off and some on"
    y_mlp = mlp(x)
    y_glai = glai_reference_forward(expansion.weight, expansion.bias, x, gates)
    scale = float(y_mlp.detach().abs().max())
    assert torch.allclose(y_glai, y_mlp, rtol=0, atol=1e-5 * scale), (y_glai - y_mlp).abs().max()
    assert expansion.num_paths == arch[-1] * count_paths(arch)


@pytest.mark.parametrize("arch", ARCHS[:2] + ARCHS[3:5], ids=lambda a: "arch" + "x".join(map(str, a)))
def test_estimators_before_pruning_equal_mlp(arch):
    mlp = _mlp(arch, seed=1)
    x = torch.randn(63, arch[0])
    e = mlp_to_glai(mlp)
    gates = e.gates(mlp, x)
    x_tilde = torch.cat([x, torch.ones(63, 1)], 1)
    kept = prune(e, x_tilde, gates, e.num_paths)  # keep everything
    dims = dict(n_in=e.n_in, n_gates=e.n_gates, n_out=e.n_out)
    sparse = SparseEstimator.from_paths(kept.out_idx, kept.in_idx, kept.gate_idx, kept.values, e.bias, **dims)
    dense = DenseEstimator.from_paths(kept.out_idx, kept.in_idx, kept.gate_idx, kept.values, e.bias, **dims)
    y = mlp(x)
    tol = 1e-5 * float(y.detach().abs().max())
    assert torch.allclose(sparse(x_tilde, gates), y, atol=tol)
    assert torch.allclose(dense(x_tilde, gates), y, atol=tol)


def test_linear_head_cannot_be_converted():
    with pytest.raises(ValueError, match="hidden"):
        mlp_to_glai(MLPHead((4, 3)))


@pytest.mark.parametrize("arch", [(17, 9, 5), (8, 6, 4, 3)], ids=["L1", "L2"])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.8])
def test_theorem2_bound(arch, fraction):
    """sum_o mean_Omega |phi_o - phi~_o| <= sum of removed |w| ||c||_1 (paper Theorem 2)."""
    mlp = _mlp(arch, seed=2)
    x = torch.randn(300, arch[0])
    e = mlp_to_glai(mlp)
    gates = e.gates(mlp, x)
    x_tilde = torch.cat([x, torch.ones(300, 1)], 1)
    keep = max(1, int(fraction * e.num_paths))
    kept = prune(e, x_tilde, gates, keep)
    pruned = DenseEstimator.from_paths(kept.out_idx, kept.in_idx, kept.gate_idx, kept.values, e.bias,
                                       e.n_in, e.n_gates, e.n_out)
    with torch.no_grad():
        err = (mlp(x) - pruned(x_tilde, gates)).abs().mean(0).sum().item()
    assert err > 0, "pruning something must change the outputs"
    assert err <= kept.removed_score * (1 + 1e-5) + 1e-6, (err, kept.removed_score)


def test_prune_keeps_the_top_scores():
    mlp = _mlp((12, 6, 3), seed=3)
    x = torch.randn(100, 12)
    e = mlp_to_glai(mlp)
    gates = e.gates(mlp, x)
    x_tilde = torch.cat([x, torch.ones(100, 1)], 1)
    kept = prune(e, x_tilde, gates, 20)
    scores = e.weight.abs() * path_norms(x_tilde, gates).unsqueeze(0)
    kept_scores = scores[kept.out_idx, kept.in_idx, kept.gate_idx]
    threshold = kept_scores.min()
    assert int((scores > threshold).sum()) <= 20
    assert torch.equal(kept.values, e.weight[kept.out_idx, kept.in_idx, kept.gate_idx])
    removed = scores.sum() - kept_scores.sum()
    assert kept.removed_score == pytest.approx(float(removed), rel=1e-5)


def test_prune_rejects_bad_keep():
    mlp = _mlp((4, 3, 2))
    x = torch.randn(10, 4)
    e = mlp_to_glai(mlp)
    x_tilde = torch.cat([x, torch.ones(10, 1)], 1)
    with pytest.raises(ValueError, match="keep"):
        prune(e, x_tilde, e.gates(mlp, x), e.num_paths + 1)


@pytest.mark.parametrize("arch", [(13, 10, 3), (11, 8, 6, 3)], ids=["L1", "L2"])
def test_glai_head_runs_its_selector_when_gates_are_not_cached(arch):
    mlp = _mlp(arch, seed=4)
    x = torch.randn(50, arch[0])
    e = mlp_to_glai(mlp)
    head = build_glai_head(mlp, x, e.num_paths)  # keep every path
    kept, (gates,) = head.conversion.kept, head.conversion.gates
    assert gates.shape[1] <= e.n_gates and len(kept) == e.num_paths
    with torch.no_grad():
        y_cached, y_fresh, y_mlp = head(x, gates), head(x), mlp(x)
    assert torch.equal(y_cached, y_fresh)
    assert torch.allclose(y_cached, y_mlp, atol=1e-5 * float(y_mlp.detach().abs().max()))
    assert all(not p.requires_grad for p in head.selector.parameters())
