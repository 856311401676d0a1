"""The documentation site: ``mkdocs build --strict`` of ``mkdocs.yml`` passes with the site's own checks
(``scripts/docs_checks.py``, a hook: lists that render as lists, code lines of at most 100 characters, no link or
name that leaves the repository, pages that open with what they are for), the API reference is generated from the
docstrings, and the reference pages agree with the code they describe."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

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
    shutil.copy(ROOT / "README.md", root)
    shutil.copytree(ROOT / "docs", root / "docs")
    (root / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "docs_checks.py", root / "scripts")
    (root / "glai").symlink_to(ROOT / "glai")  # mkdocstrings reads the package from the config's folder
    return root


@pytest.fixture(scope="module")
def checks():
    return load_script("docs_checks")


def test_the_site_builds_strictly_with_its_checks_and_the_api_reference(tmp_path):
    done = _build(ROOT, tmp_path / "site")
    assert done.returncode == 0, "\n".join(line for line in done.stderr.splitlines() if "WARNING" in line)[-6000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("train_ffn_head", "read_ffn_blocks", "paired_contrast", "convert", "build_standin"):
        assert name in api
    for page in ("transformer", "views", "running", "method"):
        html = (tmp_path / "site" / page / "index.html").read_text()
        assert html.count("<h2") >= 2 and "<ul>" in html


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


def test_the_checks_run_in_the_build_and_name_each_fault(tmp_path):
    """One build of a copy with one fault of each kind: each is reported, naming its page, and the build fails."""
    root = _copy(tmp_path)
    with open(root / "docs" / "cluster.md", "a") as f:
        f.write("\n## Faults\n\nA sentence right above a list:\n- **glued** item\n- another\n\n"
                "```bash\n" + "x" * 101 + "\n```\n\nSee [the spec](../../shared/SPEC.md), and SPEC 12 of it.\n")
    (root / "docs" / "own-data.md").write_text("# Your own data\n\n```bash\necho opens with code\n```\n")
    with open(root / "README.md", "a") as f:
        f.write("\nAs issue 40 asked.\n")
    done = _build(root, tmp_path / "site")
    assert done.returncode != 0
    warnings = done.stderr
    assert "docs/cluster.md: a list rendered as a paragraph" in warnings
    assert "docs/cluster.md: a code line of 101 characters" in warnings
    assert "'../shared' names something outside the repository" in warnings
    assert "'SPEC 12' names something outside the repository" in warnings
    assert "docs/cluster.md: the link '../../shared/SPEC.md' leaves the repository" in warnings
    assert "docs/own-data.md: the page opens with a div under its title" in warnings  # the code block
    assert "README.md:" in warnings and "'issue 40'" in warnings


@pytest.mark.parametrize(("html", "fault"), [
    ("<h1>T</h1><p>For this.</p><p>so <code>x</code> runs just those. - <strong>A</strong> b</p>", "list"),
    ("<h1>T</h1><p>For this.</p><p>Items:\n- one\n- two</p>", "list"),
    ("<h1>T</h1><p>For this.</p><p>Steps:\n1. first\n2. second</p>", "list"),
    ("<h1>T</h1><p>For this.</p><pre><code>" + "y" * 101 + "</code></pre>", "code line"),
    ("<h1>T</h1><p>For this.</p><p><a href='../../shared/SPEC.md'>spec</a></p>", "leaves the repository"),
    ("<h1>T</h1><ul><li>no opening sentence</li></ul>", "opens with a ul"),
    ("<h1>T</h1><p>" + "word " * 81 + "</p>", "opening paragraph of 81 words"),
    ("<h1>T</h1><p>For this.</p>" + "<p>" + "word " * 301 + "</p><h2>only one</h2>", "section heading"),
])
def test_each_fault_of_a_built_page_is_found(checks, html, fault):
    found = checks.html_findings(html, "docs/page.md")
    assert len(found) == 1 and fault in found[0], found


def test_a_clean_page_and_its_own_dashes_pass(checks):
    html = ("<h1>T</h1><p>What the page is for.</p><h2>A</h2><p>A range 0.86 - 0.98x, a dash - like this.</p>"
            "<ul><li>a list</li></ul><pre><code>" + "z" * 100 + "</code></pre><h2>B</h2>")
    assert checks.html_findings(html, "docs/page.md") == []


def test_run_notes_of_findings_may_name_issues_and_nothing_else_may(checks):
    text = ("# Findings\n\n## A result\n\nIt holds (issue 10).\n\n## Run notes\n\n- issue 29: rerun\n### Detail\n"
            "issue 30 too\n\n## Next result\n\nSPEC 13 says.\n```\nissue 5 in code\n```\n")
    found = checks.reference_findings(text, "docs/FINDINGS.md")
    assert [f.split(":")[1] for f in found] == ["5", "15", "17"]
    assert len(checks.reference_findings(text, "docs/views.md")) == 5  # run notes belong to FINDINGS only


def test_every_standin_is_listed_with_its_source_where_a_reader_gets_the_data():
    from glai.data.standins import STANDINS

    running = (ROOT / "docs" / "running.md").read_text()
    for standin in STANDINS:
        row = next((line for line in running.splitlines() if line.startswith(f"| `{standin.path}` |")), None)
        assert row is not None, f"docs/running.md has no row for the stand-in {standin.path}"
        assert standin.source.split(":")[-1] in row
    readme = (ROOT / "README.md").read_text()
    assert "make prefetch EXP=ffn/dbpedia" in readme and "docs/running.md" in readme


def _schema_defaults() -> dict[str, object]:
    from glai.config import Config

    out = {}

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            if dataclasses.is_dataclass(default):
                walk(type(default), f"{prefix}{f.name}.")
            else:
                out[prefix + f.name] = default
    walk(Config, "")
    return out


def test_the_configuration_reference_gives_the_schemas_keys_and_defaults():
    """Every key in docs/configuration.md's tables exists, with the default the page gives (where it gives one)."""
    import yaml

    schema = _schema_defaults()
    rows = re.findall(r"^\| `([\w.]+)` \| ([^|]+) \|", (ROOT / "docs" / "configuration.md").read_text(), re.M)
    assert len(rows) > 80
    for key, cell in rows:
        assert key in schema, f"docs/configuration.md names {key}, which the schema does not have"
        literal = re.fullmatch(r"`([^`]*)`", cell.strip())
        if literal and not literal.group(1).isupper():  # `GLAI_DATA_ROOT`: an environment variable
            value = yaml.safe_load(literal.group(1))
            assert value == schema[key] or (value == "" and schema[key] == ""), (key, value, schema[key])


def test_the_quick_tour_prints_what_the_page_says():
    page = (ROOT / "docs" / "getting-started.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    printed = re.search(r"It prints `([^`]+)`", page).group(1)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == printed


#: (file, text) that the check of the code leaves alone, each with its reason (none: data_root's default is data/ in
#: the clone, which make prefetch fills)
CODE_EXCEPTIONS: set[tuple[str, str]] = set()


def test_the_code_names_nothing_outside_the_repository(checks):
    """Comments, docstrings and messages of glai/, scripts/ and hydra_plugins/ say what is and why: no spec section,
    issue number or path beside the clone (the history is in the commit messages and FINDINGS' run notes)."""
    found = []
    for folder in ("glai", "scripts", "hydra_plugins"):
        for file in sorted((ROOT / folder).rglob("*")):
            if file.suffix not in (".py", ".cpp", ".sh") or "__pycache__" in file.parts:
                continue
            where = file.relative_to(ROOT).as_posix()
            for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
                if checks.UNREACHABLE.search(line) and not any(
                        where == f and text in line for f, text in CODE_EXCEPTIONS):
                    found.append(f"{where}:{number}: {line.strip()[:100]}")
    assert not found, "\n".join(found)
