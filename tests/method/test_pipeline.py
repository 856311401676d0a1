"""The public API on a user's own MLP: ``glai.convert``, ``glai.fit``, ``glai.train_glai`` (paper 3.3, SPEC 2-3)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import glai
from glai.method.budget import count_parameters, count_paths

ROOT = Path(__file__).resolve().parents[2]


def _user_mlp(widths, seed=0, dropout=0.0, bias=True, dtype=torch.float32) -> nn.Sequential:
    torch.manual_seed(seed)
    layers = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, bias=bias, dtype=dtype))
        if k < len(widths) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)] if dropout else [nn.ReLU()]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("widths", [(13, 9, 4), (11, 7, 5, 3)], ids=["L1", "L2"])
def test_convert_without_a_budget_is_the_mlp_itself(widths):
    """Theorem 1: keeping every path, the GLAI head computes the user's MLP exactly (fp32 rounding)."""
    mlp = _user_mlp(widths, dropout=0.3)  # dropout is the identity at inference
    x = torch.randn(64, widths[0])
    head = glai.convert(mlp, x, cache=(x[:10],))
    mlp.eval()
    with torch.no_grad():
        want, got, got_cached = mlp(x), head(x), head(x, head.conversion.gates[0])
    scale = float(want.abs().max())
    assert torch.allclose(got, want, atol=1e-5 * scale) and torch.equal(got, got_cached)
    assert len(head.conversion.kept) == widths[-1] * count_paths(widths) == head.conversion.num_paths
    n_gates = head.estimator.n_gates
    assert [tuple(g.shape) for g in head.conversion.gates] == [(64, n_gates), (10, n_gates)]
    assert torch.equal(head.conversion.gates[1], head.gates(x[:10]))


@pytest.mark.parametrize("widths", [(13, 9, 4), (11, 7, 5, 3)], ids=["L1", "L2"])
def test_conversion_error_is_zero_unpruned_and_grows_as_paths_are_pruned(widths):
    """conversion_error: Theorem 1 (every path kept: 0 up to fp32 rounding); pruned, the relative Frobenius error of
    the estimator against the MLP, computed here by hand, larger the fewer paths are kept; cached gates and the
    selector's give the same figure, in any number of row batches."""
    mlp = _user_mlp(widths, seed=4)
    x = torch.randn(257, widths[0])
    assert glai.conversion_error(glai.convert(mlp, x), x) < 1e-5
    errors = []
    for keep in (200, 60, 15):
        head = glai.convert(mlp, x, keep=keep)
        with torch.no_grad():
            want = float((head(x) - mlp(x)).norm() / mlp(x).norm())
        got = glai.conversion_error(head, x, head.conversion.gates[0], rows=50)
        assert got == pytest.approx(want, rel=1e-4) and got == pytest.approx(glai.conversion_error(head, x), rel=1e-6)
        errors.append(got)
    assert 0 < errors[0] < errors[1] < errors[2]
    head.train()
    glai.conversion_error(head, x)
    assert head.training  # the head's mode is restored
    with pytest.raises(ValueError, match="gates has 10 rows for 257 inputs"):
        glai.conversion_error(head, x, head.conversion.gates[0][:10])
    with pytest.raises(ValueError, match="at least one input row"):
        glai.conversion_error(head, x[:0])


def test_convert_leaves_the_users_module_alone():
    mlp = _user_mlp((8, 6, 3)).train()
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    head = glai.convert(mlp, torch.randn(20, 8), keep=10)
    assert mlp.training and all(p.requires_grad for p in mlp.parameters())
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    assert all(not p.requires_grad for p in head.selector.parameters())
    with torch.no_grad():
        head.selector.layers[0].weight.add_(1.0)  # the head owns a copy
    assert torch.equal(mlp[0].weight, before["0.weight"])


def test_convert_reads_float64_and_bias_free_layers_in_float32():
    mlp = _user_mlp((6, 5, 2), bias=False, dtype=torch.float64)
    x = torch.randn(30, 6)
    head = glai.convert(mlp, x)
    assert head.estimator.values.dtype == torch.float32
    assert torch.equal(head.selector.layers[0].bias, torch.zeros(5))
    with torch.no_grad():
        assert torch.allclose(head(x), mlp(x.double()).float(), atol=1e-5)


def test_keep_prunes_to_the_top_scoring_paths_and_rho_to_the_papers_budget():
    arch = (12, 16, 4)
    selector = _user_mlp(glai.reduced_arch(arch, 0.5))
    x = torch.randn(50, 12)
    head = glai.convert(selector, x, keep=25)
    assert head.estimator.num_kept == 25
    budget = glai.parameter_budget(arch, 0.5)
    head = glai.convert(selector, x, rho=0.5, arch=arch)
    assert head.estimator.num_kept == budget.kept_paths
    # paper 4.2: the selector plus the estimator have as many parameters as the MLP they replace
    assert count_parameters(head.selector) + count_parameters(head.estimator) == budget.O
    # without arch, the original widths are the selector's divided by rho
    assert glai.convert(selector, x, rho=0.5).estimator.num_kept == budget.kept_paths


@pytest.mark.parametrize("module, match", [
    (nn.Sequential(nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 2)), "layer 1 is GELU, expected ReLU"),
    (nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2), nn.ReLU()), "the last layer is ReLU, expected Linear"),
    (nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.ReLU(), nn.Linear(5, 2)), "layer 1 is LayerNorm"),
    (nn.Sequential(nn.Linear(4, 2)), "the layers are"),
    (nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(6, 2)), "do not chain"),
], ids=["gelu", "relu-last", "layernorm", "linear-only", "widths"])
def test_unsupported_modules_say_what_is_wrong(module, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        glai.convert(module, torch.randn(8, 4))


class _Residual(nn.Module):
    """Linear-ReLU-Linear layers whose forward adds a skip connection: not an MLP of paper Definition 1."""

    def __init__(self):
        super().__init__()
        self.a, self.act, self.b = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)

    def forward(self, x):
        return self.b(self.act(self.a(x))) + x


def test_a_forward_that_is_not_its_layers_in_order_is_refused():
    with pytest.raises(ValueError, match="differs from Linear-ReLU"):
        glai.convert(_Residual(), torch.randn(16, 4))


def test_bad_arguments_say_how_to_fix_them():
    mlp, x = _user_mlp((8, 6, 3)), torch.randn(20, 8)
    with pytest.raises(ValueError, match="not both"):
        glai.convert(mlp, x, keep=5, rho=0.5)
    with pytest.raises(ValueError, match="Pass arch="):
        glai.convert(mlp, x, rho=0.5, arch=(8, 20, 3))
    with pytest.raises(ValueError, match="keep must be in"):
        glai.convert(mlp, x, keep=10**6)
    with pytest.raises(ValueError, match=r"n0=8"):
        glai.convert(mlp, x, keep=5, cache=(torch.randn(3, 7),))


def test_fit_trains_only_the_estimator_and_runs_the_selector_once_per_split():
    torch.manual_seed(0)
    x, y = torch.randn(96, 10), torch.randint(0, 3, (96,))
    head = glai.convert(_user_mlp((10, 8, 3)), x, keep=40)
    selector_before = [p.clone() for p in head.selector.parameters()]
    values_before = head.estimator.values.detach().clone()
    calls = []
    patterns = head.selector.hidden_patterns
    head.selector.hidden_patterns = lambda inp: calls.append(len(inp)) or patterns(inp)
    hist = glai.fit(head, (x, y), (x[:32], y[:32]), optimizer="adam", lr=1e-2, weight_decay=0.0, max_epochs=4,
                    patience=None)
    assert calls == [96, 32]  # gates computed once per split, never inside the loop (SPEC 2)
    assert hist.epochs == 4 and len(hist.curves["val_acc"]) == 4 and 0 <= hist.bvs <= 100
    assert all(torch.equal(a, b) for a, b in zip(selector_before, head.selector.parameters()))
    assert not torch.equal(values_before, head.estimator.values.detach())


def test_fit_refuses_a_malformed_split():
    head = glai.MLPHead((4, 3, 2))
    with pytest.raises(ValueError, match=r"\(x, y\) or \(x, y, gates\)"):
        glai.fit(head, torch.randn(5, 4), (torch.randn(5, 4), torch.zeros(5, dtype=torch.long)))


def test_train_glai_runs_the_papers_three_phases():
    torch.manual_seed(1)
    x, y = torch.randn(120, 12), torch.randint(0, 4, (120,))
    run = glai.train_glai((12, 16, 4), (x, y), (x[:40], y[:40]), rho=0.5, reduced_epochs=3, max_epochs=5,
                          patience=2, seed=3)
    assert run.reduced.epochs == 3 and run.reduced.stopped_by == "fixed_epochs"
    assert 1 <= run.estimator.epochs <= 5
    assert run.head.estimator.num_kept == run.budget.kept_paths
    assert set(run.time_s) == {"reduced_mlp", "conversion", "estimator"} and min(run.time_s.values()) >= 0
    again = glai.train_glai((12, 16, 4), (x, y), (x[:40], y[:40]), rho=0.5, reduced_epochs=3, max_epochs=5,
                            patience=2, seed=3)
    assert again.estimator.curves["val_loss"] == run.estimator.curves["val_loss"]  # seeded end to end


def test_getting_started_example_runs():
    """The documentation's "Getting started: GLAI on your own MLP" example is executed as written."""
    text = (ROOT / "docs" / "getting-started.md").read_text()
    code = text.split("```python", 1)[1].split("```", 1)[0]
    assert 5 <= len(code.strip().splitlines()) <= 14
    namespace: dict = {}
    exec(compile(code, "docs/getting-started.md", "exec"), namespace)
    assert isinstance(namespace["head"], glai.GLAIHead)


def test_a_random_selector_glai_head_is_the_gated_relu_model_written_out():
    """head.selector=random (issue 20): the selector is the reduced MLP at its seeded initialisation (random
    hyperplanes, no reduced epoch), and the head computes y_o = b_o + sum_{i,g} w[o,i,g] x~_i 1[u_g . x + c_g > 0]
    (the gated-ReLU model of Mishkin, Sahiner & Pilanci 2022) with u, c that initialisation's first layer."""
    from glai.method.heads import MLPHead, reduced_arch
    from glai.method.pipeline import train_glai

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(120, 6, generator=g), torch.randint(0, 3, (120,), generator=g)
    arch = [6, 16, 3]
    run = train_glai(arch, (x, y), (x, y), rho=0.5, selector="random", estimator="dense", seed=4, max_epochs=3,
                     batch_size=32)
    torch.manual_seed(4)
    init = MLPHead(reduced_arch(arch, 0.5))
    sel = run.head.selector
    assert torch.equal(sel.layers[0].weight, init.layers[0].weight) and run.reduced.epochs == 0
    u, c = init.layers[0].weight, init.layers[0].bias
    gates = (x @ u.T + c > 0).float()  # [N, 8]: the random hyperplanes' half-spaces
    x_tilde = torch.cat([x, torch.ones(120, 1)], 1)
    est = run.head.estimator
    want = torch.einsum("bi,bs,ois->bo", x_tilde, gates, est.weight * est.mask) + est.bias
    with torch.no_grad():
        torch.testing.assert_close(run.head(x), want, rtol=1e-5, atol=1e-5)
    assert run.time_s["reduced_mlp"] == 0.0
