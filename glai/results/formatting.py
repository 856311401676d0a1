"""Table cells and table files shared by every table module: compact numbers, ``mean ± std`` cells, and
``write_table`` (Markdown, LaTeX and CSV, written atomically)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from glai.results.records import atomic_write_text

__all__ = ["NO_RUNS", "fmt_mean_std", "fmt_num", "mean_std_cell", "slug", "write_table"]

NO_RUNS = "no runs"


def fmt_num(x: float | None, like: float | None = None) -> str:
    """Compact number in the scale of ``like`` (default ``x``): 2 decimals from 1 up, 3 below 1,
    scientific below 0.01 (so a std prints with the decimals of its mean)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    ref = abs(x if like is None else like)
    if ref == 0 and x == 0:
        return "0"
    if 0 < ref < 1e-2:
        return f"{x:.2e}"
    if ref < 1:
        return f"{x:.3f}"
    return f"{x:.2f}"


def fmt_mean_std(mean: float, std: float, suffix: str = "") -> str:
    """``mean ± std`` with both in the mean's scale (:func:`fmt_num`)."""
    return f"{fmt_num(mean)} ± {fmt_num(std, like=mean)}{suffix}"


def mean_std_cell(values: Sequence[float], suffix: str = "") -> str:
    """``mean ± std`` (ddof 1) over seeds; one value: ``v (n=1, need >= 2 for std)``; none: ``no runs``."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return NO_RUNS
    if len(vals) == 1:
        return f"{fmt_num(vals[0])}{suffix} (n=1, need >= 2 for std)"
    arr = np.asarray(vals)
    return fmt_mean_std(float(arr.mean()), float(arr.std(ddof=1)), suffix)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(c, c) for c in text)


def _latex(df: pd.DataFrame, caption: str, label: str) -> str:
    # cells are escaped by pandas; the caption is not
    tex = df.to_latex(index=False, escape=True, caption=_tex_escape(caption), label=label)
    return tex.replace("±", r"$\pm$").replace("×", r"$\times$").replace("–", "--")


def markdown(df: pd.DataFrame) -> str:
    """``df`` as a Markdown table, a ``|`` inside a cell escaped (a data set named ``a|b`` broke its row)."""
    return df.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v).to_markdown(index=False)


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, caption: str) -> list[Path]:
    """Write ``<name>.md``, ``<name>.tex`` and ``<name>.csv`` atomically; returns the paths."""
    out_dir = Path(out_dir)
    md = f"{caption}\n\n" + (markdown(df) if len(df) else "(no rows: no matching runs)") + "\n"
    paths = [out_dir / f"{name}.md", out_dir / f"{name}.tex", out_dir / f"{name}.csv"]
    atomic_write_text(paths[0], md)
    atomic_write_text(paths[1], _latex(df, caption, f"tab:{name}") if len(df) else f"% {caption}: no rows\n")
    atomic_write_text(paths[2], df.to_csv(index=False))
    return paths


def slug(label: str) -> str:
    """File-name form of a group label: letters, digits, ``.``, ``_`` and ``-`` only.

    ``offline/A1`` -> ``offline-A1``; a label with settings keeps a readable prefix of them and a hash of the
    whole label, so two groups never share a file: ``offline/A1 [dataset=photos3, experiment.arch=[1280,256,3]]``
    -> ``offline-A1__dataset-photos3-experiment.arch-1280-256-3__<6 hex>``. The full label is inside the file
    and in ``README.md`` of the tables folder.
    """
    label = str(label)
    base, _, rest = label.partition(" ")
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", base.replace("/", "-"))
    if rest:
        readable = re.sub(r"[^A-Za-z0-9.]+", "-", rest).strip("-")[:48].strip("-")
        out += f"__{readable}__{hashlib.sha1(label.encode()).hexdigest()[:6]}"
    return out
