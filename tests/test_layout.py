"""The package layout (docs/code-map.md, STYLE "Layout"): every module imports, no import cycles, and each
package depends only on the packages below it.

The module graph is read from the source (every ``import`` statement, function-level ones included), so a
cycle hidden behind a lazy import fails here too.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "glai"

# What each part of glai may import (besides itself). The runner orchestrates and may import anything.
ALLOWED = {
    "glai.errors": set(),
    "glai.names": {"glai.errors"},
    "glai.cluster": set(),
    "glai.search_space": set(),
    "glai.search": {"glai.training", "glai.errors"},
    "glai.kernels": set(),
    "glai.training": {"glai.errors"},
    "glai.data": {"glai.errors", "glai.names"},
    "glai.results": {"glai.errors", "glai.names"},
    "glai.method": {"glai.kernels", "glai.training", "glai.errors"},
    "glai.config": {"glai.data", "glai.training", "glai.errors", "glai.names"},
    "glai.options": {"glai.method", "glai.training"},
    "glai.tuned": {"glai.config", "glai.data", "glai.results", "glai.errors", "glai.names"},
    "glai.transformer": {"glai.method", "glai.training", "glai.errors"},
    "glai": {"glai.method", "glai.training"},
}
PARTS = sorted(ALLOWED, key=len, reverse=True)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """The glai modules that ``name`` imports (a ``from pkg import sub`` counts as importing ``pkg.sub``)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _part(module: str) -> str | None:
    """The part of the code map a module belongs to ("glai" is the top-level ``__init__`` alone)."""
    return next((p for p in PARTS if module == p or (p != "glai" and module.startswith(p + "."))), None)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_module_graph_has_no_cycles():
    # iterative DFS with colours; a grey node reached again closes a cycle
    colour, stack_path, cycles = {}, [], []

    def visit(node):
        colour[node] = "grey"
        stack_path.append(node)
        for nxt in sorted(GRAPH[node]):
            if colour.get(nxt) == "grey":
                cycles.append(stack_path[stack_path.index(nxt):] + [nxt])
            elif nxt not in colour:
                visit(nxt)
        stack_path.pop()
        colour[node] = "black"

    for node in sorted(GRAPH):
        if node not in colour:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_cycle_detection_sees_function_level_imports(tmp_path):
    """The reader must see imports inside functions, or a lazy import could hide a cycle."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from glai.results import stats\n    import glai.errors\n")
    assert _imports("glai.method.fake", src) == {"glai.results.stats", "glai.errors"}


def test_packages_depend_only_on_the_layers_below():
    bad = []
    for module, targets in GRAPH.items():
        part = _part(module)
        if part is None:  # glai.runner: orchestration, may import anything
            continue
        for target in targets:
            tpart = _part(target)
            if tpart != part and tpart not in ALLOWED[part]:
                bad.append(f"{module} imports {target} ({part} may import {sorted(ALLOWED[part]) or 'nothing'})")
    assert not bad, "\n".join(bad)


def test_every_module_is_in_a_known_part():
    unknown = [m for m in MODULES if _part(m) is None and m != "glai.runner"]
    assert not unknown, f"modules outside the code map: {unknown} (add them to ALLOWED and docs/code-map.md)"
