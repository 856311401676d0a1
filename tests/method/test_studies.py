"""The method family's studies (papers/000, SPEC 11): splits, the selector-outdated signals, both studies."""

import pytest
import torch

from glai.method.heads import MLPHead
from glai.method.pipeline import GLAIOptions
from glai.method.studies import (
    combine_study,
    nearest_pattern_distance,
    retrain_study,
    split_old_new,
    split_shards,
    unseen_pattern_fraction,
)
from glai.training.loop import LoopOptions, OptimizerOptions

LOOP = LoopOptions(batch_size=32, max_epochs=3, patience=2, min_delta=0.1)
GLAI = GLAIOptions(rho=0.5, reduced_epochs=2, reduced_optimizer="sgd", reduced_weight_decay=1e-3, optimizer="adam",
                   lr=1e-2, weight_decay=0.0, backend="torch")
MLP = OptimizerOptions(optimizer="adam", lr=1e-2, weight_decay=0.0)


def _blobs(n=240, classes=4, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(n) % classes
    return centers[y] + torch.randn(n, dim, generator=g), y


def test_class_split_makes_the_last_classes_new_and_random_split_a_fraction():
    y = torch.arange(100) % 5
    old, new = split_old_new(y, split="class", new_classes=2, new_fraction=0.0, n_classes=5,
                             generator=torch.Generator().manual_seed(0))
    assert set(y[new].tolist()) == {3, 4} and set(y[old].tolist()) == {0, 1, 2} and bool((old ^ new).all())
    old, new = split_old_new(y, split="random", new_classes=0, new_fraction=0.3, n_classes=5,
                             generator=torch.Generator().manual_seed(0))
    assert int(new.sum()) == 30 and bool((old ^ new).all())


@pytest.mark.parametrize("how", ["iid", "class"])
def test_shards_are_disjoint_and_cover_every_row(how):
    y = torch.arange(103) % 4
    shards = split_shards(y, 4, how, torch.Generator().manual_seed(1))
    allrows = torch.cat(shards)
    assert allrows.numel() == 103 and torch.unique(allrows).numel() == 103
    classes = [torch.unique(y[s]).numel() for s in shards]
    assert max(classes) <= 2 if how == "class" else min(classes) == 4


def test_pattern_signals():
    torch.manual_seed(0)
    sel = MLPHead((4, 16, 2))
    x = torch.randn(50, 4)
    assert unseen_pattern_fraction(sel, x, x) == 0.0
    assert nearest_pattern_distance(sel, x, x) == 0.0
    far = 100 * torch.randn(50, 4)
    assert 0.0 < nearest_pattern_distance(sel, x[:5], far) <= 1.0
    # a pattern not among the old ones: flip the sign of the inputs of a linear-ish selector
    with torch.no_grad():
        sel.layers[0].bias.zero_()
    assert unseen_pattern_fraction(sel, x[:1], -x[:1]) == 1.0


def test_retrain_study_runs_every_arm_and_scores_old_and_new_classes():
    (x, y), (vx, vy) = _blobs(), _blobs(120, seed=1)
    out = retrain_study((8, 32, 4), (x, y), (vx, vy), split="class", new_classes=1, new_fraction=0.0, seed=0,
                        loop=LOOP, glai=GLAI, mlp=MLP)
    assert set(out["arms"]) == {"mlp_new", "mlp_all", "glai_new", "glai_all"}
    assert out["rows"] == {"train_old": 180, "train_new": 60, "val_old": 90, "val_new": 30}
    for arm in [*out["arms"].values(), *out["old"].values()]:
        assert all(0 <= arm[k] <= 100 for k in ("acc_old", "acc_new", "acc_all")) and arm["time_s"] > 0
        # the old and new validation rows partition all of them (class split)
        assert arm["acc_all"] == pytest.approx((90 * arm["acc_old"] + 30 * arm["acc_new"]) / 120)
    assert 0.0 <= out["unseen_pattern_fraction"] <= 1.0 and out["new_output_paths"]["of"] > 0


@pytest.mark.parametrize("how", ["iid", "class"])
def test_combine_study_averages_shard_estimators(how):
    (x, y), (vx, vy) = _blobs(), _blobs(120, seed=1)
    out = combine_study((8, 32, 4), (x, y), (vx, vy), shards=3, shard_split=how, seed=0, loop=LOOP, glai=GLAI,
                        mlp=MLP)
    assert out["shard_sizes"] == [80, 80, 80]
    for model in ("glai", "mlp"):
        assert len(out[model]["shards"]) == 3 and 0 <= out[model]["combined"] <= 100


def test_split_shards_refuses_more_shards_than_rows():
    y = torch.arange(3)
    with pytest.raises(ValueError, match=r"study.shards=4: need 2 <= shards <= 3"):
        split_shards(y, 4, "iid", torch.Generator().manual_seed(0))


def test_studies_end_the_reduced_phase_on_structure_when_asked():
    """The studies take GLAIOptions whole: structure_threshold reaches them (it was dropped by a keyword list)."""
    from dataclasses import replace

    from glai.training.structure import PathDistanceTracker

    x, y = _blobs()
    vx, vy = _blobs(seed=1)
    opts = replace(GLAI, reduced_epochs=6, structure_threshold=1.0)  # m_t < 1 after the first epoch
    with pytest.raises(ValueError, match="needs a tracker"):
        combine_study((8, 32, 4), (x, y), (vx, vy), shards=2, shard_split="iid", seed=0, loop=LOOP, glai=opts,
                      mlp=MLP)
    out = combine_study((8, 32, 4), (x, y), (vx, vy), shards=2, shard_split="iid", seed=0, loop=LOOP, glai=opts,
                        mlp=MLP, tracker=PathDistanceTracker(x[:64]))
    assert out["glai"]["reduced_epochs"] < 6
