"""The documentation site (issue 30): ``mkdocs build --strict`` of ``mkdocs.yml`` passes, the API reference is
generated from the docstrings, and the strict build fails on a broken link and on a missing API reference."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")


def _build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"),
                           "-d", str(site)], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", root)
    shutil.copytree(ROOT / "docs", root / "docs")
    (root / "glai").symlink_to(ROOT / "glai")  # mkdocstrings reads the package from the config's folder
    return root


def test_the_site_builds_strictly_with_the_api_reference(tmp_path):
    done = _build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("train_ffn_head", "read_ffn_blocks", "paired_contrast", "convert"):
        assert name in api
    assert (tmp_path / "site" / "transformer" / "index.html").is_file()


@pytest.mark.parametrize(("page", "text"), [
    ("index.md", "\n[a page that is not there](missing.md)\n"),
    ("api.md", "\n::: glai.no_such_module\n"),
])
def test_a_broken_link_or_reference_fails_the_build(page, text, tmp_path):
    root = _copy(tmp_path)
    with open(root / "docs" / page, "a") as f:
        f.write(text)
    done = _build(root, tmp_path / "site")
    assert done.returncode != 0
