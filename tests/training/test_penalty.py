"""EAT's l0 activation penalty (papers/004, SPEC 11) and the sparsity measures it is judged by."""

import pytest
import torch

from glai.method.heads import LinearHead, MLPHead
from glai.method.sparsity import active_paths_per_sample, firing_ratio
from glai.training.loop import fit
from glai.training.penalty import ActivationPenaltyTask, capture_hidden, l0_hat
from glai.training.tasks import SupervisedTask


def test_l0_hat_is_the_papers_formula_and_bounded():
    h = [torch.tensor([[0.0, 1.0, 3.0], [0.5, 0.0, 0.0]]), torch.tensor([[2.0], [0.0]])]
    sigma = 0.25
    per_sample = [sum(v * v / (v * v + sigma) for v in row) for row in ([0.0, 1.0, 3.0, 2.0], [0.5, 0.0, 0.0, 0.0])]
    assert float(l0_hat(h, sigma)) == pytest.approx(sum(per_sample) / 2)
    big = [torch.full((4, 7), 1e3)]
    assert 0.0 <= float(l0_hat([torch.zeros(4, 7)], sigma)) == 0.0
    assert float(l0_hat(big, 1e-4)) == pytest.approx(7.0, rel=1e-6)  # counts the active units as sigma -> 0


def test_l0_hat_gradient():
    h = torch.tensor([[0.3, 0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    sigma = 0.1
    l0_hat([h], sigma).backward()
    expected = 2 * h.detach() * sigma / (h.detach() ** 2 + sigma) ** 2
    assert torch.allclose(h.grad, expected)


def test_the_penalised_loss_adds_lambda_times_l0_of_the_forward():
    torch.manual_seed(0)
    model = MLPHead((5, 8, 6, 3))
    x, y = torch.randn(10, 5), torch.randint(0, 3, (10,))
    base = SupervisedTask()
    task = ActivationPenaltyTask(base, l0_lambda=0.5, l0_sigma=1e-2)
    with torch.no_grad():
        h1 = torch.relu(model.layers[0](x))
        h2 = torch.relu(model.layers[1](h1))
        expected = base.loss(model, x, y, None) + 0.5 * l0_hat([h1, h2], 1e-2)
        got = task.loss(model, x, y, None)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    assert model.captured_hidden is None  # capture ends with the loss
    assert task.monitor == base.monitor


def test_capture_refuses_a_model_without_hidden_activations():
    with pytest.raises(TypeError, match="captured_hidden"):
        with capture_hidden(torch.nn.Linear(3, 2)):
            pass
    task = ActivationPenaltyTask(SupervisedTask(), 0.1, 1e-4)
    with pytest.raises(RuntimeError, match="no hidden layer"):
        task.loss(LinearHead(3, 2), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), None)


def test_a_strong_penalty_lowers_the_firing_ratio():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 10, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    ratios = {}
    for lam in (0.0, 0.05):
        torch.manual_seed(0)
        model = MLPHead((10, 64, 3))
        task = ActivationPenaltyTask(SupervisedTask(), lam, 1e-3) if lam else SupervisedTask()
        fit(model, (x, y), (x, y), task=task, optimizer="adam", lr=1e-2, max_epochs=15, patience=None)
        ratios[lam] = firing_ratio(model, x)[0]
    assert ratios[0.05] < 0.5 * ratios[0.0], ratios


def test_firing_ratio_and_active_paths_count_what_they_say():
    model = MLPHead((2, 3, 1))
    with torch.no_grad():
        model.layers[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        model.layers[0].bias.zero_()
    x = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -2.0], [-1.0, 1.0]])
    # active units per row: 2, 1, 2, 1 of 3 (chunk=3 splits the rows across two forwards)
    assert firing_ratio(model, x, chunk=3) == [pytest.approx(6 / 12)]
    gates = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1]], dtype=torch.uint8)
    gate_idx = torch.tensor([0, 0, 2, 1, 2, 2])  # paths per column: 2, 1, 3
    assert active_paths_per_sample(gates, gate_idx) == pytest.approx((5 + 0 + 6) / 3)
    with pytest.raises(ValueError, match="hidden layers"):
        firing_ratio(LinearHead(2, 1), x)
