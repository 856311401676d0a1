"""Names built from config values stay inside their root (glai.names.path_part): a dataset or backbone named ``..``
wrote the embedding cache into the parent of GLAI_CACHE_DIR; now it is refused before any work, by the config check
and by the cache itself (a script that builds a cache key without the config's check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_fixtures import group_overrides, tiny_backbone, tiny_dataset

from glai.data.config import BackboneConfig, DatasetConfig
from glai.data.embeddings import extract_embeddings
from glai.errors import ConfigError
from glai.names import path_part

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["..", ".", ""])
def test_a_name_that_would_name_its_root_or_the_parent_is_refused_naming_the_key(name):
    with pytest.raises(ConfigError, match=rf"dataset.name='{name}'.*Fix: dataset.name=my_name"):
        path_part("dataset.name", name)


@pytest.mark.parametrize(("name", "part"), [("org/data", "org_data"), ("../up", ".._up"), ("/etc", "_etc"),
                                            ("a b\\c", "a_b_c"), ("ag_news.v2", "ag_news.v2")])
def test_separators_become_underscores_as_the_cache_always_named_them(name, part):
    assert path_part("dataset.name", name) == part


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../b", ".hidden", "a b", ""])
def test_record_folder_names_are_refused_rather_than_changed(name):
    with pytest.raises(ConfigError, match="experiment.name="):
        path_part("experiment.name", name, exact=True, nested=True)
    assert path_part("experiment.name", "offline/A1", exact=True, nested=True) == "offline/A1"


@pytest.mark.parametrize("names", [("..", ".."), ("tiny_text", ".."), ("..", "tiny_bert")],
                         ids=["both", "backbone", "dataset"])
def test_the_cache_never_writes_outside_its_folder(tiny_assets, tmp_path, names):
    dataset, backbone = names
    with pytest.raises(ConfigError, match=r"(dataset|backbone)\.name='\.\.'"):
        extract_embeddings(DatasetConfig(**{**tiny_dataset("text", tiny_assets), "name": dataset}),
                           BackboneConfig(**{**tiny_backbone("bert", tiny_assets), "name": backbone}),
                           ["train"], data_root=tiny_assets.root, cache_dir=tmp_path / "root" / "cache",
                           progress=False)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in written if not p.is_relative_to(tmp_path / "root" / "cache")], written


@pytest.mark.parametrize("key", ["dataset.name", "backbone.name"])
def test_run_py_refuses_a_name_of_dot_dot_before_any_work(tiny_assets, tmp_path, key):
    """As a user types it, GLAI_CACHE_DIR set: one line naming the key, exit 2, nothing written anywhere."""
    backbone = {**tiny_backbone("bert", tiny_assets), "name": ".." if key == "backbone.name" else "tiny_bert"}
    overrides = ["experiment=A2", *group_overrides("dataset", tiny_dataset("text", tiny_assets)),
                 *group_overrides("backbone", backbone), "experiment.arch=[32,16,6]", f"data_root={tiny_assets.root}",
                 f"results_dir={tmp_path}/root/runs", f"hydra.run.dir={tmp_path}/out"]
    if key == "dataset.name":
        overrides.append("dataset.name=..")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    done = subprocess.run([sys.executable, "run.py", *overrides], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "GLAI_CACHE_DIR": str(tmp_path / "root" / "cache")})
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("[glai] ") and "Error: " in ln]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(errors) == 1 and f"{key}='..'" in errors[0] and f"Fix: {key}=my_" in errors[0], errors
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "out" not in p.relative_to(tmp_path).parts]
