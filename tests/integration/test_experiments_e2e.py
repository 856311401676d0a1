"""Every paper experiment end to end through the runner on tiny local fixtures in the real formats.

The experiment's own loading code runs (HF ``datasets`` readers, timm / transformers backbones loaded from
local files, the embedding cache); only the dataset and backbone are swapped for tiny ones of the same
modality (``tests/data/tiny_fixtures.py``).
"""

import json
import subprocess
import sys

import pytest

import glai.data.embeddings
from glai.config import compose_config
from glai.runner import run
from tests.data.tiny_fixtures import build_tiny_assets, tiny_experiment_overrides


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return build_tiny_assets(tmp_path_factory.mktemp("tiny"))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["A1", "A2", "B1", "B2", "C1", "C2"])
def test_experiment_runs_end_to_end(experiment, assets, tmp_path):
    overrides = tiny_experiment_overrides(experiment, assets) + [f"results_dir={tmp_path}", "structure_samples=32"]
    rec = run(compose_config(overrides + ["head=glai"]))
    assert rec["status"] == "done", rec["error"]
    m = rec["metrics"]
    assert m["monitor"] == ("val_loss" if experiment.startswith("B") else "val_acc")
    assert set(rec["cost"]["time_s"]) == {"reduced_mlp", "conversion", "estimator"}
    assert rec["data_s"] > 0 and rec["cost"]["total_s"] > 0

    # The second head reuses the cached embeddings: no backbone is built, no forward pass runs.
    def no_backbone(*args, **kwargs):
        raise AssertionError("the embedding cache should have been hit")

    original = glai.data.embeddings.build_backbone
    glai.data.embeddings.build_backbone = no_backbone
    try:
        rec2 = run(compose_config(overrides + ["head=mlp"]))
    finally:
        glai.data.embeddings.build_backbone = original
    assert rec2["status"] == "done"


@pytest.mark.slow
def test_run_py_on_a_stand_in_config(assets, tmp_path, repo_root):
    overrides = tiny_experiment_overrides("offline/C1", assets) + [f"results_dir={tmp_path}", "head=linear",
                                                                     "episodes=2", f"hydra.run.dir={tmp_path}/h"]
    out = subprocess.run([sys.executable, "run.py", *overrides], cwd=repo_root, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # the tiny images are not the stand-in's data, so the record sits apart under @<dataset.name>; no rho
    rec = json.loads(next((tmp_path / "offline/C1" / "@tiny_images" / "linear").glob("seed0-*.json")).read_text())
    assert rec["status"] == "done" and rec["metrics"]["episodes"]["n"] == 2
    assert rec["config"]["dataset"]["name"] == "tiny_images"


@pytest.mark.slow
def test_your_own_class_folders_run_with_the_readme_line_and_are_labelled_as_yours(assets, tmp_path):
    """README "Your own data": `experiment=A1 dataset=folder dataset.path=... dataset.name=...` on class folders
    with no train/ level; the record carries the user's dataset name and the tables never call it A1."""
    import shutil

    from glai.results.tables import write_all
    from tests.data.tiny_fixtures import EFFNET_DIM, group_overrides, tiny_backbone

    own = tmp_path / "my_photos"
    shutil.copytree(assets.images / "train", own)  # <class>/*.png, no split level
    n_classes = len([d for d in own.iterdir() if d.is_dir()])
    overrides = ["experiment=A1", "dataset=folder", f"dataset.path={own}", "dataset.name=my_photos",
                 *group_overrides("backbone", tiny_backbone("effnet", assets)),
                 f"experiment.arch=[{EFFNET_DIM},16,{n_classes}]", "experiment.max_epochs=2",
                 "experiment.reduced_epochs_mode=fixed",
                 "experiment.reduced_epochs=1", f"cache_dir={tmp_path}/cache", f"results_dir={tmp_path}/runs",
                 "structure_samples=0", "head=mlp"]
    rec = run(compose_config(overrides))
    assert rec["status"] == "done", rec["error"]
    assert rec["config"]["dataset"]["name"] == "my_photos" and rec["config"]["dataset"]["val_split"] is None
    from glai.config import reference_configs

    write_all(tmp_path / "runs", tmp_path / "tables", figures=False, references=reference_configs([("A1", "mlp")]))
    table3 = (tmp_path / "tables" / "table3.md").read_text()
    assert f"A1 [backbone=tiny_effnet, dataset=my_photos, experiment.arch=[{EFFNET_DIM},16,{n_classes}]" in table3
    comparison = (tmp_path / "tables" / "comparison.md").read_text()
    assert all("no runs" in line for line in comparison.splitlines() if line.startswith("| ours: A1 "))
