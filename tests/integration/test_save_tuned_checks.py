"""scripts/save_tuned.py as a user meets it after a search: the group of the saved file is the group the chosen trial
ran (its record), a cut or edited ``search.yaml`` is refused naming the file, and an ``--out`` that cannot be
written is one line naming ``--out``; each refusal exits 2 with one ``[glai] ...Error:`` line and writes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
#: A search of another group than digits' own (a protocol change): two trials of the linear head, a few seconds.
OWN = ["experiment.max_epochs=3", "structure_samples=0"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("search")
    done = subprocess.run([sys.executable, "run.py", "-m", "tuning=search", "head=linear", *OWN, "verbose=false",
                           f"results_dir={tmp}/runs", f"hydra.sweep.dir={tmp}/sweep", "hydra.sweeper.n_jobs=1",
                           "hydra.sweeper.n_trials=2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "sweep"


def _save(sweep: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/save_tuned.py", str(sweep), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"})


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("[glai] ") and "Error: " in ln]
    assert len(errors) == 1 and "Fix:" in errors[0], done.stderr[-2000:]
    return errors[0]


def _cut(sweep: Path, tmp: Path, at: str, keep: int = 0) -> Path:
    """A copy of the sweep whose search.yaml ends ``keep`` characters into the line that starts with ``at``."""
    copy = tmp / "cut"
    shutil.copytree(sweep, copy)
    text = (copy / "search.yaml").read_text()
    (copy / "search.yaml").write_text(text[:text.index(at) + keep])
    return copy


def test_the_saved_group_is_the_group_the_chosen_trial_ran(sweep, tmp_path):
    done = _save(sweep, tmp_path / "tuned")
    assert done.returncode == 0, done.stderr[-2000:]
    (saved,) = (tmp_path / "tuned" / "digits" / "linear").glob("*.yaml")
    assert saved.stem != "protocol" and yaml.safe_load(saved.read_text())["group"] == {"experiment.max_epochs": 3}


@pytest.mark.parametrize("keep", [0, len("- experiment.max")], ids=["at a line's end", "inside a line"])
def test_a_search_yaml_cut_inside_its_fixed_list_is_refused_naming_the_file(sweep, tmp_path, keep):
    """Cut before ``- experiment.max_epochs=3``, the file still parses and names the protocol group: the trial's
    settings (trained for 3 epochs) were filed as the protocol's, exit 0."""
    cut = _cut(sweep, tmp_path, "- experiment.max_epochs=3", keep)
    line = _one_error_line(_save(cut, tmp_path / "tuned"))
    assert f"{cut / 'search.yaml'} is cut or edited" in line and "run the search's command again" in line, line
    assert not (tmp_path / "tuned").exists()


def test_an_out_folder_that_cannot_be_written_is_one_line_naming_out(sweep, tmp_path):
    # a file where the folder should be: refused as a read-only folder is, for root too
    (tmp_path / "blocked").write_text("")
    line = _one_error_line(_save(sweep, tmp_path / "blocked" / "tuned"))
    assert f"--out {tmp_path / 'blocked' / 'tuned'}" in line and "GLAI_TUNED_DIR" in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["blocked"]
