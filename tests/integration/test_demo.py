"""``make demo``'s one-line verdict says what the numbers show, whichever way they go."""


import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def demo():
    return load_script("demo")


def _rec(bvs, seconds):
    return {"metrics": {"bvs": bvs}, "cost": {"total_s": seconds}}


def test_verdict_reports_gains_and_losses_against_both_mlps(demo):
    line = demo._verdict(_rec(97.22, 1.0), _rec(89.17, 2.5), _rec(97.5, 0.5))
    assert line == ("GLAI is 8.05 pp more accurate and 2.50x faster than the SGD MLP; "
                    "0.28 pp less accurate and 2.00x slower than the Adam MLP.")


def test_every_head_has_its_optimiser_named(demo):
    glai = {"head": "glai", "config": {"head": {"reduced_optimizer": "sgd", "optimizer": "adam"}}}
    assert demo._optimizer(glai) == "sgd+adam"
    assert demo._optimizer({"head": "mlp", "config": {"head": {"optimizer": "adam"}}}) == "adam"
    assert set(demo.HEADS) == {"mlp", "mlp (adam)", "mlp_reduced", "glai", "linear"}
