"""Optimisers (SPEC 5, 12): SGD and Adam add the weight decay to the gradient, AdamW applies it to the weights."""

import pytest
import torch

from glai.training.optimizers import OPTIMIZERS, build_optimizer


def _one_step(name, grad, lr=0.1, wd=0.5):
    p = torch.nn.Parameter(torch.tensor([2.0, -4.0]))
    opt = build_optimizer(name, [p], lr, wd)
    p.grad = grad.clone()
    opt.step()
    return p.detach()


def test_adamw_decays_the_weights_apart_from_the_gradient():
    # zero gradient: AdamW shrinks p by lr * wd * p exactly; Adam's coupled L2 makes wd * p the gradient,
    # which its normalisation turns into a step of about lr per weight
    assert torch.allclose(_one_step("adamw", torch.zeros(2)), torch.tensor([2.0, -4.0]) * (1 - 0.1 * 0.5))
    assert torch.allclose(_one_step("adam", torch.zeros(2)), torch.tensor([1.9, -3.9]), atol=1e-6)


def test_sgd_adds_the_weight_decay_to_the_gradient():
    p, g = torch.tensor([2.0, -4.0]), torch.tensor([1.0, 1.0])
    assert torch.allclose(_one_step("sgd", g), p - 0.1 * (g + 0.5 * p))


def test_unknown_optimizer_names_the_choices():
    assert OPTIMIZERS == ("sgd", "adam", "adamw", "lbfgs")
    with pytest.raises(ValueError, match="adamw"):
        build_optimizer("rmsprop", [torch.nn.Parameter(torch.zeros(1))], 0.1, 0.0)
