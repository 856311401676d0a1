"""Path distance m_t (paper 3.6, SPEC 4) against a brute-force enumeration of every path."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from glai.training.structure import PathDistanceTracker, path_distance, structural_convergence

try:
    from glai.method.heads import MLPHead
except ImportError:  # the lead's heads module is not there yet: same interface, minimal.

    class MLPHead(nn.Module):
        def __init__(self, arch):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(arch[:-1], arch[1:], strict=True))

        @torch.no_grad()
        def hidden_patterns(self, x):
            out = []
            for layer in self.layers[:-1]:
                z = layer(x)
                out.append((z > 0).to(torch.uint8))
                x = torch.relu(z)
            return out


def _patterns(mlp, x):
    """Activation bits computed here from the weights, independently of ``hidden_patterns``."""
    out = []
    with torch.no_grad():
        for layer in mlp.layers[:-1]:
            z = x @ layer.weight.T + layer.bias
            out.append((z > 0).double())
            x = torch.relu(z)
    return out


def _brute_force(x, before, after, n_out):
    """m_t by listing every path (i, s1..sL, o) and every bias-started path (s_k..sL, o), k >= 2."""
    x = x.double()
    m, n0 = x.shape
    x_tilde = torch.cat([x, torch.ones(m, 1, dtype=torch.float64)], dim=1)
    widths = [a.shape[1] for a in before]
    distances = []

    def ind(patterns, start, route):
        value = torch.ones(m, dtype=torch.float64)
        for layer, s in zip(range(start, len(widths)), route, strict=True):
            value = value * patterns[layer][:, s]
        return value

    for _o in range(n_out):
        for i in range(n0 + 1):
            for route in itertools.product(*(range(n) for n in widths)):
                diff = (ind(before, 0, route) - ind(after, 0, route)).abs()
                distances.append(float((x_tilde[:, i].abs() * diff).mean()))
        for k in range(1, len(widths)):
            for route in itertools.product(*(range(n) for n in widths[k:])):
                diff = (ind(before, k, route) - ind(after, k, route)).abs()
                distances.append(float(diff.mean()))
    return sum(distances) / len(distances)


def _perturb(mlp, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in mlp.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize(
    "arch", [(3, 4, 2), (5, 7, 3), (3, 4, 3, 2), (2, 3, 2, 4, 2)], ids=["L1-3x4x2", "L1-5x7x3", "L2", "L3"]
)
def test_tracker_matches_brute_force(arch):
    torch.manual_seed(0)
    mlp = MLPHead(arch)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(17, arch[0], generator=gen)
    tracker = PathDistanceTracker(x)
    first = tracker.update(mlp)
    assert first == {"path_distance": None, "weight_change": None}
    before_params = [p.detach().clone() for p in mlp.parameters()]
    before = _patterns(mlp, x)
    _perturb(mlp, 0.5, seed=2)
    after = _patterns(mlp, x)
    out = tracker.update(mlp)
    expected = _brute_force(x, before, after, arch[-1])
    assert expected > 0, "the perturbation must change some activation"
    assert out["path_distance"] == pytest.approx(expected, rel=1e-10)
    params = list(mlp.parameters())
    deltas = torch.cat([(p.detach() - q).reshape(-1) for p, q in zip(params, before_params, strict=True)])
    assert out["weight_change"] == pytest.approx(float(deltas.abs().double().mean()), rel=1e-6)
    assert tracker.history["path_distance"] == [None, out["path_distance"]]


def test_l1_reduces_to_mean_over_input_and_unit():
    torch.manual_seed(3)
    x = torch.randn(11, 4)
    before = [torch.randint(0, 2, (11, 6), dtype=torch.uint8)]
    after = [torch.randint(0, 2, (11, 6), dtype=torch.uint8)]
    x_tilde = torch.cat([x, torch.ones(11, 1)], dim=1).double()
    diff = (before[0].double() - after[0].double()).abs()  # [M, n1]
    # mean over (i, s) of mean_x |x~_i| |delta a_s|
    expected = (x_tilde.abs()[:, :, None] * diff[:, None, :]).mean()
    assert path_distance(x, before, after) == pytest.approx(float(expected), rel=1e-12)


def test_unchanged_model_has_zero_distance():
    mlp = MLPHead((4, 8, 8, 3))
    tracker = PathDistanceTracker(torch.randn(9, 4))
    tracker.update(mlp)
    out = tracker.update(mlp)
    assert out == {"path_distance": 0.0, "weight_change": 0.0}


def test_shape_errors():
    with pytest.raises(ValueError, match="non-empty"):
        PathDistanceTracker(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="same number"):
        path_distance(torch.zeros(2, 3), [torch.zeros(2, 4)], [])


def test_structural_convergence():
    history = [None, 0.5, 0.2, 0.05, 0.2, 0.04, 0.03]
    assert structural_convergence(history, 0.1) == 4
    assert structural_convergence(history, 0.1, consecutive=2) == 7
    assert structural_convergence(history, 0.01) is None
    assert structural_convergence([], 0.1) is None
    with pytest.raises(ValueError):
        structural_convergence(history, 0.1, consecutive=0)
