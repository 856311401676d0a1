"""Family T's tables (docs/method.md, Family T): GLAI inside a Transformer's feed-forward block against fine-tuning the
block, its ReLU switch and LoRA, from the run records.

- ``transformer.md``: per experiment and head (a tagged variant its own row: ``ffn_glai [random]``, ``linear
  [relu_switch]``), the BVS, the seconds to early stop, the seconds to the same-seed fine-tuned block's
  (``ffn_mlp``'s) BVS (time to target, docs/method.md; GLAI's selector phase and conversion on its clock), the trainable
  parameters, the training tokens per second, and for ``ffn_glai`` the converted block's score before any
  estimator step and the active paths per token; mean ± std over seeds.
- ``transformer_tests.md``: ``ffn_glai`` against each other head of the same view (protocol, tuned) and against
  ``ffn_glai [random]`` (random gates, tag random: the pretrained selector's worth), paired by
  (experiment, seed) over the family's experiments: one-sided Wilcoxon p-values of the time to early stop, the BVS
  and the time to target (no p-value below :data:`glai.results.stats.MIN_PAIRS` pairs). A tuned row's time to
  target is against the tuned ``ffn_mlp``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from glai.results import stats as st
from glai.results.formatting import mean_std_cell, write_table

__all__ = ["T_HEADS", "is_family_t", "transformer_table", "transformer_tests", "write_transformer"]

#: Rows of the family's table in order: (head, tag); the tags are those of experiments/transformer.sh.
T_HEADS = (("ffn_mlp", ""), ("ffn_relu", ""), ("ffn_lora", ""), ("ffn_glai", ""), ("ffn_glai", "random"),
           ("linear", ""), ("linear", "relu_switch"),
           ("ffn_mlp", "tuned"), ("ffn_relu", "tuned"), ("ffn_lora", "tuned"), ("ffn_glai", "tuned"),
           ("linear", "tuned"))
#: What each row is, in the table's words.
T_LABELS = {"ffn_mlp": "fine-tuned block (GELU)", "ffn_relu": "fine-tuned block, ReLU", "ffn_lora": "LoRA",
            "ffn_glai": "GLAI", "linear": "classifier only"}


def is_family_t(rec: Mapping) -> bool:
    """A family T record: its table is :func:`transformer_table`, never the paper's."""
    return rec.get("family") == "T"


def _done(records) -> list[Mapping]:
    return [r for r in records if is_family_t(r) and r.get("status") == "done" and not r.get("metrics", {}).get(
        "study")]


def _label(head: str, tag: str) -> str:
    return f"{head} [{tag}]" if tag else head


def _ttt(rec: Mapping, ref: Mapping | None) -> float | None:
    if ref is None:
        return None
    try:
        return st.time_to_target(rec, float(ref["metrics"]["bvs"])).seconds
    except (ValueError, KeyError, TypeError):
        return None


def _ttt_cell(reached: list[float], never: int, no_ref: int) -> str:
    """Seconds to the reference's BVS over the seeds that reached it; "never" for seeds whose reference ran and was
    never reached, "no reference" for seeds whose same-setting ffn_mlp did not run (nothing to reach)."""
    if not reached and not never:
        return "no reference"
    cell = mean_std_cell(reached) if reached else "never"
    notes = ([f"{never} never"] if reached and never else []) + ([f"{no_ref} no reference"] if no_ref else [])
    return cell + (f" ({', '.join(notes)})" if notes else "")


def transformer_table(records: Sequence[Mapping]) -> pd.DataFrame:
    """The family's table (see the module docstring); rows with no run are left out."""
    done = _done(records)
    by = defaultdict(list)
    for r in done:
        by[(r["experiment"], r["head"], r.get("tag") or "")].append(r)
    # the reference: the same-seed fine-tuned block of the same view (a tuned row races the tuned ffn_mlp)
    ref = {(r["experiment"], r["seed"], r.get("tag") or ""): r for r in done if r["head"] == "ffn_mlp"
           and (r.get("tag") or "") in ("", "tuned")}
    known = [(h, t) for h, t in T_HEADS]
    extra = sorted({(h, t) for (_, h, t) in by} - set(known))
    rows = []
    for exp in sorted({e for e, _, _ in by}, key=st.experiment_order):
        for head, tag in known + extra:
            recs = sorted(by.get((exp, head, tag), []), key=lambda r: r["seed"])
            if not recs:
                continue
            view = "tuned" if tag == "tuned" else ""
            refs = [ref.get((exp, r["seed"], view)) for r in recs]
            ttt = [_ttt(r, f) for r, f in zip(recs, refs, strict=True)]
            reached = [t for t in ttt if t is not None]
            never = sum(1 for f, t in zip(refs, ttt, strict=True) if t is None and f is not None)
            no_ref = sum(1 for f in refs if f is None)
            m = [r["metrics"] for r in recs]
            glai = head == "ffn_glai"
            rows.append({
                "Exp": exp, "Head": _label(head, tag), "What": T_LABELS.get(head, head), "n": len(recs),
                "BVS (%)": mean_std_cell([x["bvs"] for x in m]),
                "Time to early stop (s)": mean_std_cell([r["cost"]["total_s"] for r in recs]),
                "Time to ffn_mlp's BVS (s)": _ttt_cell(reached, never, no_ref),
                "Trainable params": f"{int(np.median([r['cost']['params']['trainable'] for r in recs])):,}",
                "Tokens/s": mean_std_cell([x.get("tokens_per_s") for x in m]),
                "Converted BVS (%)": mean_std_cell([x.get("converted_bvs") for x in m]) if glai else "",
                # the pruned conversion's relative output error against the ReLU block it converts (validation tokens)
                "Conversion error (%)": mean_std_cell([100 * x["conversion_error"] if x.get("conversion_error")
                                                       is not None else None for x in m]) if glai else "",
                "Active paths/token": mean_std_cell([x.get("active_paths_per_token") for x in m]) if glai else "",
            })
    return pd.DataFrame(rows)


def _is_own_group(rec: Mapping) -> bool:
    """A record of its experiment's own group (the stand-in as configured; a tagged view of it included), as
    opposed to a variant (other data, another learning rate, ...) labelled ``X [key=value]``."""
    return rec["experiment"] == rec.get("_base", rec["experiment"])


def transformer_tests(records: Sequence[Mapping]) -> pd.DataFrame:
    """``ffn_glai`` against every other head of the family in each view (protocol: untagged; tuned: tag tuned, each
    head with its own search's settings), and against ``ffn_glai [random]`` (its own random-gates control, what the
    pretrained selector is worth).

    A test pairs runs of one setting only: every group (a stand-in as configured, a user's data, a variant such as
    another learning rate: the table's ``Exp`` label) gets rows of its own, paired by seed; the ``pooled`` rows pair
    over the experiments' own groups only (the stand-ins as configured), never over variants."""
    done = _done(records)
    bvs = {r["_path"]: float(r["metrics"]["bvs"]) for r in done}
    labels = sorted({r["experiment"] for r in done}, key=st.experiment_order)
    own = [e for e in labels if any(_is_own_group(r) for r in done if r["experiment"] == e)]
    scopes = [(e, [e]) for e in labels] + ([("pooled: " + ", ".join(own), own)] if len(own) > 1 else [])
    # (view, reference label, records, tags): the reference heads of each view, then the pretrained selector against
    # random gates (protocol view), whose records (tag random) are relabelled as a head of their own to be paired
    control = _label("ffn_glai", "random")
    comparisons = [(view, ref, done, {"ffn_glai": view, ref: view}) for view in ("", "tuned")
                   for ref in ("ffn_mlp", "ffn_lora", "ffn_relu", "linear")]
    comparisons.append(("", control, done + [{**r, "head": control, "tag": ""} for r in done
                                             if r["head"] == "ffn_glai" and r.get("tag") == "random"],
                        {"ffn_glai": "", control: ""}))
    rows = []
    for scope, experiments in scopes:
        for view, ref, recs, tags in comparisons:
            inside = [r for r in recs if r["experiment"] in experiments]
            if not any(r["head"] == ref and (r.get("tag") or "") == tags[ref] for r in inside) or not any(
                    r["head"] == "ffn_glai" and (r.get("tag") or "") == view for r in inside):
                continue
            con = st.paired_contrast(inside, "ffn_glai", ref, experiments=experiments, tag=tags)
            d_time = [p.d_time for p in con.pairs]
            # percentage points (a pair's d_score is relative, paper 4.3): the paired records' BVS subtracted
            d_score = [bvs[p.model_path] - bvs[p.ref_path] for p in con.pairs]
            rows.append({"Data": scope, "View": view or "protocol", "Comparison": f"ffn_glai vs {ref}",
                         "n pairs": len(con.pairs),
                         "mean log(T_ref/T_glai)": f"{np.mean(d_time):+.3f}" if d_time else "n/a",
                         "mean BVS difference (pp)": f"{np.mean(d_score):+.2f}" if d_score else "n/a",
                         "Time p-value": con.time_test.cell(), "BVS p-value": con.score_test.cell(),
                         "Time-to-target p-value": con.ttt_test.cell(), "Never reached": con.ttt_never,
                         "Unpaired": len(con.unpaired)})
    return pd.DataFrame(rows)


def write_transformer(records: Sequence[Mapping], out_dir: str | Path) -> list[Path]:
    """Write ``transformer`` and ``transformer_tests`` (md, tex, csv) under ``out_dir`` when family T ran."""
    if not _done(records):
        return []
    out_dir = Path(out_dir)
    written = write_table(transformer_table(records), out_dir, "transformer",
                          "Family T: the last feed-forward block of a frozen Transformer trained five ways, "
                          "on the same cached tokens, batches and early stopping; mean ± std over seeds. Time to "
                          "ffn_mlp's BVS: seconds until the run first reached the same-seed fine-tuned block's BVS "
                          "within min_delta (ffn_glai: its selector phase and conversion on its clock). linear "
                          "[relu_switch]: the classifier alone on the frozen model with only the block's activation "
                          "switched to ReLU (the switch's own cost); ffn_glai [random]: random gates, the control.")
    written += write_table(transformer_tests(records), out_dir, "transformer_tests",
                           "ffn_glai against each head of family T, paired by seed within one setting (Data: a "
                           "stand-in as configured, a user's data or a variant, each alone; pooled: the stand-ins "
                           "as configured, paired by (experiment, seed)): one-sided Wilcoxon signed-rank p-values "
                           "that GLAI is faster to early stop, scores higher, and reaches the other head's BVS "
                           f"sooner (no p-value below {st.MIN_PAIRS} pairs).")
    return written
