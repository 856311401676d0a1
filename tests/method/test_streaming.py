"""Streaming conversion and pruning (issue 13): the same kept paths as the dense expansion, without it."""

from __future__ import annotations

import pytest
import torch

from glai.method.conversion import PathWeights, mlp_to_glai, path_structure
from glai.method.heads import MLPHead
from glai.method.pruning import path_norms, path_scores, prune, prune_streaming

# (arch, keep fraction): L = 1, 2, 3 with odd widths
CASES = [((13, 9, 4), 0.3), ((33, 17, 5), 0.05), ((9, 4, 6, 3), 0.5), ((11, 7, 5, 2), 0.1), ((5, 3, 4, 2, 2), 0.9)]


def _problem(arch, seed=0, n=64, dead_inputs=0):
    torch.manual_seed(seed)
    mlp = MLPHead(arch)
    x = torch.randn(n, arch[0])
    if dead_inputs:
        x[:, :dead_inputs] = 0.0  # zero path norms: many paths tie at score 0
    x_tilde = torch.cat([x, torch.ones(n, 1)], 1)
    gates = path_structure(mlp).gates(mlp, x)
    return mlp, x_tilde, gates


def _same(a, b):
    for name in ("out_idx", "in_idx", "gate_idx", "values"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.removed_score == pytest.approx(b.removed_score, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("arch, frac", CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else "")
@pytest.mark.parametrize("max_elements", [1, 97, 10**9], ids=["one-output-blocks", "odd-blocks", "one-block"])
def test_streaming_equals_dense(arch, frac, max_elements):
    mlp, x_tilde, gates = _problem(arch)
    expansion = mlp_to_glai(mlp)
    keep = max(1, round(frac * expansion.num_paths))
    _same(prune_streaming(mlp, x_tilde, gates, keep, max_elements=max_elements),
          prune(expansion, x_tilde, gates, keep))


@pytest.mark.parametrize("arch", [(12, 8, 3), (10, 5, 4, 3)], ids=["L1", "L2"])
def test_ties_are_broken_by_the_smaller_path_index(arch):
    """Dead inputs give many paths the score 0; keeping beyond the positive ones must pick them by index."""
    mlp, x_tilde, gates = _problem(arch, dead_inputs=6)
    expansion = mlp_to_glai(mlp)
    keep = expansion.num_paths * 3 // 4
    dense = prune(expansion, x_tilde, gates, keep)
    _same(prune_streaming(mlp, x_tilde, gates, keep, max_elements=7), dense)
    n_in, n_gates = expansion.n_in, expansion.n_gates
    flat = (dense.out_idx * n_in + dense.in_idx) * n_gates + dense.gate_idx
    assert flat.numel() == keep
    # the kept order: descending score, ties by ascending flat index
    all_scores = path_scores(expansion.weight, path_norms(x_tilde, gates), expansion.valid).flatten()
    kept_scores = all_scores[flat]
    assert bool((kept_scores[:-1] >= kept_scores[1:]).all())
    tied = kept_scores[:-1] == kept_scores[1:]
    assert bool((flat[:-1][tied] < flat[1:][tied]).all())
    # every path left out scores at most the last kept one, and among equals has a larger index
    left = torch.ones(all_scores.numel(), dtype=torch.bool)
    left[flat] = False
    last = kept_scores[-1]
    assert bool((all_scores[left] <= last).all())
    assert bool((torch.nonzero(left & (all_scores == last)).squeeze(1) > flat[kept_scores == last].max()).all())


def test_keeping_every_path_reproduces_the_dense_expansion():
    mlp, x_tilde, gates = _problem((9, 4, 6, 3))
    expansion = mlp_to_glai(mlp)
    kept = prune_streaming(mlp, x_tilde, gates, expansion.num_paths, max_elements=50)
    dense = torch.zeros_like(expansion.weight)
    dense[kept.out_idx, kept.in_idx, kept.gate_idx] = kept.values
    assert torch.equal(dense, expansion.weight) and kept.removed_score == 0.0


def test_blocks_are_bit_identical_rows_of_the_dense_expansion():
    torch.manual_seed(3)
    mlp = MLPHead((7, 5, 4, 3, 4))
    weights, dense = PathWeights(mlp), mlp_to_glai(mlp).weight
    assert torch.equal(torch.cat([weights.block(0, 1), weights.block(1, 3), weights.block(3, 4)]), dense)


def test_streaming_never_builds_more_than_a_block(monkeypatch):
    mlp, x_tilde, gates = _problem((33, 17, 5))
    sizes = []
    real = PathWeights.block

    def spy(self, start, stop):
        out = real(self, start, stop)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(PathWeights, "block", spy)
    structure = path_structure(mlp)
    per_output = structure.n_in * structure.n_gates
    prune_streaming(mlp, x_tilde, gates, 100, max_elements=2 * per_output)
    assert max(sizes) == 2 * per_output and sum(sizes) == structure.n_out * per_output


def test_streaming_refuses_a_bad_keep():
    mlp, x_tilde, gates = _problem((8, 6, 3))
    with pytest.raises(ValueError, match="keep must be in"):
        prune_streaming(mlp, x_tilde, gates, 0)
    with pytest.raises(ValueError, match="do not match"):
        prune_streaming(mlp, x_tilde[:, :-1], gates, 5)
