"""scripts/prefetch.py (issue 11): fetch through the run's own loaders, then print the offline command."""

import pytest

from tests.conftest import load_script
from tests.data.tiny_fixtures import build_tiny_assets, tiny_experiment_overrides


@pytest.fixture(scope="module")
def prefetch_module():
    return load_script("prefetch")


def test_prefetch_runs_the_loaders_and_prints_the_offline_command(prefetch_module, tmp_path):
    assets = build_tiny_assets(tmp_path / "tiny")
    overrides = tiny_experiment_overrides("A2", assets)
    lines = []
    assert prefetch_module.prefetch(overrides, echo=lines.append) == 0
    assert lines[0].startswith("[prefetch] ok backbone tiny_bert") and lines[1].startswith("[prefetch] ok dataset")
    assert lines[-1].startswith("HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python run.py ")
    assert "experiment=A2" in lines[-1]


def test_prefetch_names_what_failed(prefetch_module, tmp_path):
    lines = []
    code = prefetch_module.prefetch(["experiment=offline/A1", f"data_root={tmp_path}/nothing-here"],
                                    echo=lines.append)
    assert code == 1 and lines[-1].startswith("[prefetch] FAILED backbone efficientnet_lite0")
