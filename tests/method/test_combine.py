"""Combining estimators that share a selector (papers/000, SPEC 11): exact maths on aligned paths."""

import copy

import pytest
import torch

from glai.method.combine import average_estimators, average_modules, shard_weights
from glai.method.dense_estimator import DenseEstimator
from glai.method.heads import MLPHead
from glai.method.sparse_estimator import SparseEstimator


def _estimator(seed=0, n_in=9, n_gates=6, n_out=4, paths=40):
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(n_out * n_in * n_gates, generator=g)[:paths]
    o, i, s = flat // (n_in * n_gates), (flat // n_gates) % n_in, flat % n_gates
    return SparseEstimator.from_paths(o, i, s, torch.randn(paths, generator=g), torch.randn(n_out, generator=g),
                                      n_in, n_gates, n_out, backend="torch")


def _perturbed(est, seed):
    out = copy.deepcopy(est)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out.values.add_(torch.randn(out.values.shape, generator=g))
        out.bias.add_(torch.randn(out.bias.shape, generator=g))
    return out


@pytest.mark.parametrize("sizes", [[5, 5, 5], [10, 3, 7], [1, 99]])
def test_combining_copies_of_one_estimator_returns_it(sizes):
    est = _estimator()
    combined = average_estimators([copy.deepcopy(est) for _ in sizes], shard_weights(sizes))
    assert torch.equal(combined.values, est.values) and torch.equal(combined.bias, est.bias)
    assert torch.equal(combined.layout.perm, est.layout.perm)


def test_the_combined_forward_is_the_weighted_average_of_forwards():
    """The estimator is linear in (values, bias) for fixed gates, so averaging weights averages outputs."""
    base = _estimator(1)
    shards = [_perturbed(base, k) for k in range(4)]
    weights = shard_weights([30, 10, 40, 20])
    combined = average_estimators(shards, weights)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(13, 9, generator=g)
    gates = (torch.rand(13, 6, generator=g) < 0.5).to(torch.uint8)
    with torch.no_grad():
        expected = sum(w * m(x, gates).double() for w, m in zip(weights, shards, strict=True))
        got = combined(x, gates).double()
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    # and the inputs are untouched
    assert not torch.equal(shards[0].values, combined.values)


def test_dense_estimators_combine_too():
    w = torch.randn(3, 5, 4)
    mask = torch.rand(3, 5, 4) < 0.5
    a, b = DenseEstimator(w, torch.zeros(3), mask), DenseEstimator(2 * w, torch.ones(3), mask)
    c = average_estimators([a, b], [0.5, 0.5])
    assert torch.allclose(c.weight, 1.5 * w) and torch.allclose(c.bias, torch.full((3,), 0.5))


def test_estimators_of_different_conversions_are_refused():
    with pytest.raises(ValueError, match="different paths"):
        average_estimators([_estimator(0), _estimator(1)], [0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        average_estimators([_estimator(0), _estimator(0)], [0.5, 0.4])
    with pytest.raises(ValueError, match="one class"):
        average_estimators([_estimator(0), MLPHead((3, 4, 2))], [0.5, 0.5])
    with pytest.raises(ValueError, match="K >= 1"):
        average_estimators([], [])
    with pytest.raises(ValueError, match="positive sum"):
        shard_weights([0, 0])


def test_average_modules_is_parameter_wise_fedavg():
    a, b = MLPHead((3, 4, 2)), MLPHead((3, 4, 2))
    c = average_modules([a, b], [0.25, 0.75])
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.allclose(pc, 0.25 * pa + 0.75 * pb)
    with pytest.raises(ValueError, match="names or shapes"):
        average_modules([a, MLPHead((3, 5, 2))], [0.5, 0.5])
