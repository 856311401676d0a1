"""load_embeddings(cfg) on composed experiment configs pointed at the tiny fixtures."""

from __future__ import annotations

import pytest
import torch
from tiny_fixtures import EFFNET_DIM, N_CLASSES, PER_CLASS, TEXT_DIM

from glai.data.embeddings import load_embeddings

N = N_CLASSES * PER_CLASS


@pytest.mark.parametrize("experiment", ["A1", "B1", "C1", "offline/A2", "offline/B2", "offline/C2"])
def test_family_splits(compose_cfg, tiny_experiment_overrides, experiment):
    cfg = compose_cfg(tiny_experiment_overrides(experiment))
    splits = load_embeddings(cfg)
    family = cfg.experiment.family
    dim = EFFNET_DIM if experiment.endswith("1") else TEXT_DIM
    if family == "C":
        assert set(splits) == {"pool"}
        pool = splits["pool"]
        assert pool.x.shape == (N, dim) and pool.y.dtype == torch.int64
        per_class = torch.bincount(pool.y)
        need = cfg.experiment.k_shot + cfg.experiment.q_query
        assert (per_class >= need).sum() >= cfg.experiment.n_way
    else:
        assert set(splits) == {"train", "val"}
        for s in splits.values():
            assert s.x.shape == (N, dim) and s.x.dtype == torch.float32
            assert (s.y is None) == (family == "B")
            if s.y is not None:
                assert s.y.dtype == torch.int64 and int(s.y.max()) < cfg.experiment.arch[-1]


def test_arch_mismatch_is_reported(compose_cfg, tiny_experiment_overrides):
    from glai.data.loading import load_data  # the fit with the head is checked for every data source there

    cfg = compose_cfg(tiny_experiment_overrides("A1") + ["experiment.arch=[7,16,6]"])
    with pytest.raises(ValueError, match=r"experiment.arch\[0\]=7"):
        load_data(cfg)


def test_modality_mismatch_is_reported(compose_cfg, tiny_experiment_overrides, tiny_assets):
    cfg = compose_cfg(tiny_experiment_overrides("A1") + [f"backbone.path='{tiny_assets.bert}'",
                                                         "backbone.library=transformers"])
    with pytest.raises(ValueError, match="pair image backbones with image datasets"):
        load_embeddings(cfg)


def test_load_data_routes_here(compose_cfg, tiny_experiment_overrides):
    from glai.data.loading import load_data

    cfg = compose_cfg(tiny_experiment_overrides("offline/C2"))
    assert set(load_data(cfg)) == {"pool"}
