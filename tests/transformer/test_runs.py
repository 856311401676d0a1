"""Family T end to end (SPEC 13, issue 28): every head of ``experiment=ffn/...`` runs through ``glai.runner.run`` on
a tiny random BERT written in the hub's format, with the cached tokens being exactly what enters the model's last
feed-forward block, equal trainable budgets where SPEC 13 says so, and the refusals before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from glai.config import compose_config
from glai.errors import ConfigError
from glai.runner import run
from glai.transformer import block_parameters

HEADS = ["ffn_mlp", "ffn_relu", "ffn_lora", "ffn_glai", "linear"]
D, D_FF, CLASSES = 32, 64, 6  # the tiny BERT of tests/data/tiny_fixtures.py; its text data's classes


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from tests.data.tiny_fixtures import build_tiny_assets

    return build_tiny_assets(tmp_path_factory.mktemp("tiny_t"))


def _overrides(assets, tmp_path: Path, backbone: str = "bert") -> list[str]:
    from tests.data.tiny_fixtures import group_overrides, tiny_backbone, tiny_dataset

    return ["experiment=ffn/dbpedia", *group_overrides("dataset", tiny_dataset("text", assets)),
            *group_overrides("backbone", tiny_backbone(backbone, assets)), f"experiment.arch=[{D},{D_FF},{CLASSES}]",
            f"data_root={assets.root}", f"cache_dir={tmp_path}/cache", f"results_dir={tmp_path}/runs",
            "experiment.max_epochs=3", "experiment.patience=2", "experiment.lr=0.003", "verbose=false"]


@pytest.mark.parametrize("head", HEADS + ["ffn_glai-random"])
def test_every_head_runs_and_reports_its_budget(head, assets, tmp_path):
    name, *variant = head.split("-")
    extra = ["head.selector=random"] if variant else []
    rec = run(compose_config(_overrides(assets, tmp_path) + [f"head={name}", *extra]))
    assert rec["status"] == "done", rec.get("error")
    m, cost = rec["metrics"], rec["cost"]
    assert 0 <= m["bvs"] <= 100 and m["epochs"] >= 1 and m["tokens_per_s"] > 0
    classifier = D * CLASSES + CLASSES
    trainable = cost["params"]["trainable"]
    expected = {"ffn_mlp": block_parameters(D, D_FF) + classifier, "ffn_relu": block_parameters(D, D_FF) + classifier,
                # SPEC 13: GLAI's estimator is pruned to exactly the block's own parameter count
                "ffn_glai": block_parameters(D, D_FF) + classifier,
                "ffn_lora": 8 * (D + D_FF) * 2 + classifier, "linear": classifier}[name]
    assert trainable == expected
    if name == "ffn_glai":
        assert m["kept_paths"] == block_parameters(D, D_FF) - D
        assert 0 <= m["active_paths_per_token"] <= m["kept_paths"]
        assert 0 < m["firing_ratio"][0] < 1 and 0 <= m["converted_bvs"] <= 100
        # pruned to the block's budget from 2 d d_ff + d_ff + d_ff d paths: some of the function is lost, not all
        assert 0 < m["conversion_error"] < 1
        assert set(cost["time_s"]) == {"selector", "conversion", "estimator"}
        assert cost["total_s"] == pytest.approx(sum(cost["time_s"].values()))
        assert rec["config"]["head"]["backend"] in ("cpp", "torch")  # the backend that ran is the one recorded


def test_the_cached_tokens_are_what_enters_the_last_block(assets, tmp_path):
    """LN(a + W2 GELU(W1 a + b1) + b2) over the cached a is the model's own last hidden state at every token."""
    from transformers import AutoModel, AutoTokenizer

    from glai.data.loading import load_data
    from glai.transformer import ResidualFFN, read_ffn_blocks
    from glai.transformer.model import _gelu_block

    cfg = compose_config(_overrides(assets, tmp_path) + ["head=ffn_mlp"])
    splits = load_data(cfg)
    val = splits["val"]
    assert val.x.ndim == 3 and val.mask.dtype == torch.bool and val.mask[:, 0].all()
    model = AutoModel.from_pretrained(str(assets.bert)).eval()
    tok = AutoTokenizer.from_pretrained(str(assets.bert))
    texts = pd.read_csv(assets.text_csv / "val.csv")["text"].astype(str).tolist()
    (block,) = read_ffn_blocks(model, 1)
    ffn = ResidualFFN(_gelu_block(block), block).eval()
    for i in (0, 7, len(texts) - 1):
        batch = tok([texts[i]], return_tensors="pt", truncation=True, max_length=32)
        with torch.no_grad():
            theirs = model(**batch).last_hidden_state[0]  # [L_i, d]
            ours = ffn(val.x[i][val.mask[i]])
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    # a second head reads the cache: the tokens are extracted once per split
    again = load_data(compose_config(_overrides(assets, tmp_path) + ["head=ffn_glai"]))
    assert torch.equal(again["val"].x, val.x)
    manifests = list((tmp_path / "cache" / "embeddings").rglob("*.json"))
    assert len(manifests) == 2 and all(json.loads(p.read_text())["key"]["tokens"] for p in manifests)


def test_a_users_csv_runs_every_head(assets, tmp_path):
    """dataset=csv with class names as labels (a user's own text), as the README shows it."""
    rows = pd.read_csv(assets.text_csv / "train.csv")
    names = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review": rows["text"], "kind": [names[c] for c in rows["label"]]}).to_csv(path, index=False)
    base = [o for o in _overrides(assets, tmp_path) if not o.startswith("dataset.")]
    for head in ("ffn_glai", "ffn_mlp"):
        rec = run(compose_config(base + ["dataset=csv", f"dataset.path={path}", "dataset.name=reviews",
                                         "dataset.text_columns=[review]", "dataset.label_column=kind", f"head={head}",
                                         "dataset.max_per_class=null", "dataset.max_val=null"]))
        assert rec["status"] == "done", rec.get("error")


def test_a_model_whose_blocks_cannot_be_read_is_refused_before_any_record(assets, tmp_path):
    overrides = _overrides(assets, tmp_path, backbone="gpt2") + ["head=ffn_glai"]
    with pytest.raises(ConfigError, match=r"GPT2Model.*encoder\.layer\[i\]\.intermediate"):
        run(compose_config(overrides))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("override", "key"), [
    ("head=glai", "head"), ("ffn.blocks=2", "ffn.blocks"), ("ffn.lora_rank=0", "ffn.lora_rank"),
    ("ffn.activation=tanh", "ffn.activation"),
    ("experiment.reduced_epochs_mode=structure", "experiment.reduced_epochs_mode"),
])
def test_bad_family_t_settings_name_their_key(override, key, assets, tmp_path):
    head = [] if override.startswith("head=") else ["head=ffn_glai"]
    with pytest.raises(ConfigError, match=rf"^{key}="):
        run(compose_config(_overrides(assets, tmp_path) + head + [override]))


def test_the_auto_selector_phase_reads_the_relu_blocks_epochs(assets, tmp_path):
    """experiment.reduced_epochs_mode=auto (SPEC 12 through SPEC 13): ffn_glai fine-tunes the ReLU-switched block for
    ceil(0.2 x the same-seed ffn_relu run's epochs) before the conversion; that run is recorded as its own."""
    import math

    rec = run(compose_config(_overrides(assets, tmp_path) + ["head=ffn_glai", "experiment.reduced_epochs_mode=auto",
                                                            "experiment.max_epochs=6"]))
    assert rec["status"] == "done", rec.get("error")
    rule = rec["metrics"]["reduced_epochs_rule"]
    partner = json.loads(Path(rule["mlp_record"]).read_text())
    assert partner["head"] == "ffn_relu" and partner["status"] == "done"
    assert rule["reduced_epochs"] == max(1, math.ceil(0.2 * partner["metrics"]["epochs"] - 1e-9))
    assert rec["metrics"]["selector_epochs"] == rule["reduced_epochs"] and rec["cost"]["time_s"]["selector"] > 0


def test_an_arch_that_is_not_the_blocks_names_the_fix(assets, tmp_path):
    overrides = _overrides(assets, tmp_path) + ["head=ffn_mlp", f"experiment.arch=[{D},{D_FF + 1},{CLASSES}]"]
    with pytest.raises(ConfigError, match=rf"Fix: experiment.arch=\[{D},{D_FF},{CLASSES}\]"):
        run(compose_config(overrides))


def test_family_t_keys_leave_the_other_families_fingerprints():
    """Adding family T re-runs nothing: ffn.* counts for family T runs only, and LoRA's keys for ffn_lora only."""
    from glai.runner import run_identity

    a = run_identity(compose_config(["head=glai"]))[1]
    assert run_identity(compose_config(["head=glai", "ffn.lora_rank=4"]))[1] == a
    t = ["experiment=ffn/dbpedia", "data_root=/nonexistent"]
    mlp = run_identity(compose_config(t + ["head=ffn_mlp"]))[1]
    assert run_identity(compose_config(t + ["head=ffn_mlp", "ffn.lora_rank=4"]))[1] == mlp
    lora = run_identity(compose_config(t + ["head=ffn_lora"]))[1]
    assert run_identity(compose_config(t + ["head=ffn_lora", "ffn.lora_rank=4"]))[1] != lora


def test_make_tables_gives_the_family_its_own_table(assets, tmp_path):
    """Family T's records make transformer.md (a row per head and tagged variant, the budgets, the converted score)
    and transformer_tests.md, and never a row of the paper's tables."""
    from glai.results.tables import write_all

    for seed in (0, 1):
        for head, extra in (("ffn_mlp", []), ("ffn_lora", []), ("ffn_glai", []),
                            ("ffn_glai", ["head.selector=random", "tag=random"]),
                            ("linear", ["ffn.activation=relu", "tag=relu_switch"])):
            rec = run(compose_config(_overrides(assets, tmp_path) + [f"head={head}", f"seed={seed}", *extra]))
            assert rec["status"] == "done", rec.get("error")
    out = tmp_path / "tables"
    write_all(tmp_path / "runs", out, figures=False)
    table = pd.read_csv(out / "transformer.csv")
    assert list(table["Head"]) == ["ffn_mlp", "ffn_lora", "ffn_glai", "ffn_glai [random]", "linear [relu_switch]"]
    assert set(table["n"]) == {2}
    glai = table[table["Head"] == "ffn_glai"].iloc[0]
    assert glai["Trainable params"] == table[table["Head"] == "ffn_mlp"].iloc[0]["Trainable params"]
    assert "±" in glai["Converted BVS (%)"] and "±" in glai["Active paths/token"]
    tests = pd.read_csv(out / "transformer_tests.csv")
    assert set(tests["Comparison"]) == {"ffn_glai vs ffn_mlp", "ffn_glai vs ffn_lora", "ffn_glai vs ffn_glai [random]"}
    assert set(tests["n pairs"]) == {2} and all("too few pairs" in c for c in tests["BVS p-value"])
    # the BVS difference is in percentage points, the same-seed records' BVS subtracted (not the relative d_score)
    recs = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("*.json")]
    bvs = {(r["head"], r["seed"]): r["metrics"]["bvs"] for r in recs if not r.get("tag")}
    lora = tests[tests["Comparison"] == "ffn_glai vs ffn_lora"].iloc[0]
    expected = sum(bvs[("ffn_glai", s)] - bvs[("ffn_lora", s)] for s in (0, 1)) / 2
    assert float(lora["mean BVS difference (pp)"]) == pytest.approx(expected, abs=0.006)
    # the trained selector against its random-gates control: the same seeds' ffn_glai records, tag random vs none
    rand = {r["seed"]: r["metrics"]["bvs"] for r in recs if r["head"] == "ffn_glai" and r.get("tag") == "random"}
    control = tests[tests["Comparison"] == "ffn_glai vs ffn_glai [random]"].iloc[0]
    expected = sum(bvs[("ffn_glai", s)] - rand[s] for s in (0, 1)) / 2
    assert control["Unpaired"] == 0
    assert float(control["mean BVS difference (pp)"]) == pytest.approx(expected, abs=0.006)
    assert "ffn/" not in (out / "table3.md").read_text()


def test_the_suite_script_runs_every_head_and_view(assets, tmp_path):
    """experiments/transformer.sh as a user runs it (one seed, one experiment, the tiny BERT through the extra
    overrides; RELU_SWITCH=1 adds the switch's own view): seven records, one per head and tagged view."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    extra = [o for o in _overrides(assets, tmp_path) if not o.startswith("experiment=")]
    env = {**os.environ, "PYTHON": sys.executable, "SEEDS": "0", "EXPERIMENTS": "ffn/dbpedia", "TUNE": "0",
           "RELU_SWITCH": "1"}
    done = subprocess.run(["bash", "experiments/transformer.sh", "basic", *extra,
                           f"hydra.sweep.dir={tmp_path}/multirun"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("*.json")]
    assert sorted((r["head"], r["tag"]) for r in records if r["status"] == "done") == sorted(
        [("ffn_mlp", ""), ("ffn_glai", ""), ("ffn_lora", ""), ("ffn_relu", ""), ("linear", ""),
         ("ffn_glai", "random"), ("linear", "relu_switch")])


@pytest.fixture(scope="module")
def deep_bert(assets, tmp_path_factory):
    """A 3-layer tiny BERT in the hub's format (the fixtures' tokenizer): ffn.blocks=2 trains its last two blocks."""
    import shutil

    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("deep") / "tiny_bert3"
    torch.manual_seed(1)
    vocab = json.loads((assets.bert / "tokenizer.json").read_text())["model"]["vocab"]
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=D, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=D_FF, max_position_embeddings=64)).save_pretrained(folder)
    for f in assets.bert.iterdir():
        if "token" in f.name or f.name == "special_tokens_map.json":
            shutil.copy(f, folder / f.name)
    return folder


def _deep(assets, tmp_path, deep_bert) -> list[str]:
    return [o for o in _overrides(assets, tmp_path) if not o.startswith("backbone.path=")] + [
        f"backbone.path={deep_bert}", "ffn.blocks=2"]


def test_two_blocks_with_the_frozen_attention_between_them_are_the_model(assets, tmp_path, deep_bert):
    """ffn.blocks=2: the cached tokens enter layer 1's block; block 1, layer 2's frozen attention and block 2 (GELU,
    as pretrained) give the model's own last hidden state at every token."""
    from transformers import AutoModel, AutoTokenizer

    from glai.data.loading import load_data
    from glai.transformer import ResidualFFN, TokenClassifier, read_ffn_blocks
    from glai.transformer.model import FrozenAttention, _gelu_block

    val = load_data(compose_config(_deep(assets, tmp_path, deep_bert) + ["head=ffn_mlp"]))["val"]
    model = AutoModel.from_pretrained(str(deep_bert)).eval()
    tok = AutoTokenizer.from_pretrained(str(deep_bert))
    blocks = read_ffn_blocks(model, 2)
    stack = TokenClassifier([ResidualFFN(_gelu_block(b), b) for b in blocks], D, CLASSES,
                            [FrozenAttention(blocks[1].attention, model.config)]).eval()
    texts = pd.read_csv(assets.text_csv / "val.csv")["text"].astype(str).tolist()
    rows = torch.tensor([0, 5, len(texts) - 1])
    with torch.no_grad():
        ours = stack.blocks_output(val.x[rows], val.mask[rows])
        for k, i in enumerate(rows.tolist()):
            theirs = model(**tok([texts[i]], return_tensors="pt", truncation=True, max_length=32)).last_hidden_state[0]
            torch.testing.assert_close(ours[k][val.mask[i]], theirs, rtol=1e-4, atol=1e-4)


def test_two_blocks_of_glai_are_refused_naming_why(assets, tmp_path, deep_bert):
    """The sparse estimator has no input gradient, which a GLAI block above another trained one needs."""
    with pytest.raises(ConfigError, match=r"^ffn.blocks=2: ffn_glai trains one block.*Fix: ffn.blocks=1"):
        run(compose_config(_deep(assets, tmp_path, deep_bert) + ["head=ffn_glai"]))


@pytest.mark.parametrize("head", ["ffn_mlp", "ffn_relu", "ffn_lora", "linear"])
def test_two_blocks_train_every_head_at_twice_the_budget(head, assets, tmp_path, deep_bert):
    rec = run(compose_config(_deep(assets, tmp_path, deep_bert) + [f"head={head}"]))
    assert rec["status"] == "done", rec.get("error")
    classifier = D * CLASSES + CLASSES
    expected = {"ffn_mlp": 2 * block_parameters(D, D_FF), "ffn_relu": 2 * block_parameters(D, D_FF),
                "ffn_lora": 2 * 8 * (D + D_FF) * 2, "linear": 0}[head] + classifier
    assert rec["cost"]["params"]["trainable"] == expected


@pytest.mark.parametrize("head", ["ffn_glai", "ffn_lora"])
def test_the_tuned_view_searches_saves_and_applies_what_ran(head, assets, tmp_path):
    """Family T's tuned view (issue 28 item 5, through issue 27's search): a search of the head on k-fold tuning
    splits of the training rows (tokens and masks carried), scripts/save_tuned.py, then tuning=best runs the chosen
    trial's settings (ffn_glai: its selector and selector phase as an epoch count; ffn_lora: its rank)."""
    import subprocess
    import sys

    import yaml

    from glai.tuned import apply_tuned

    root = Path(__file__).resolve().parents[2]
    sweep, tuned = tmp_path / "sweep", tmp_path / "tuned"
    base = [o for o in _overrides(assets, tmp_path) if not o.startswith("results_dir=")]
    done = subprocess.run([sys.executable, "run.py", "-m", "tuning=search", f"head={head}", *base,
                           "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=1", f"hydra.sweep.dir={sweep}",
                           f"results_dir={tmp_path}/runs", "tuning.max_reduced_epochs=2"], cwd=root,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("*.json")]
    # family T scores a trial on 2 folds; a trial the search's pruner stopped is recorded as pruned
    assert trials and all(t["status"] in ("done", "pruned") for t in trials)
    assert all(t["metrics"]["folds"]["k"] == 2 for t in trials if t["status"] == "done")
    saved = subprocess.run([sys.executable, "scripts/save_tuned.py", str(sweep), "--out", str(tuned)], cwd=root,
                           capture_output=True, text=True, timeout=300)
    assert saved.returncode == 0, saved.stderr
    (path,) = (tuned / "ffn" / "dbpedia" / head).glob("*.yaml")
    settings = yaml.safe_load(path.read_text())["settings"]
    assert "head.lr" in settings and "head.optimizer" in settings
    if head == "ffn_lora":
        assert settings.get("ffn.lora_rank") in (4, 8, 16, 32) and settings.get("ffn.lora_alpha") in (8, 16, 32)
    elif settings.get("head.selector") != "random":
        assert settings["experiment.reduced_epochs_mode"] == "fixed"
    cfg = apply_tuned(compose_config(["tuning=best", f"head={head}", *base, f"results_dir={tmp_path}/best",
                                      f"tuned_dir={tuned}", "tuning.shipped=false"]))
    for key, value in settings.items():
        assert OmegaConf.select(cfg, key) == value, key
    rec = run(cfg)
    assert rec["status"] == "done" and rec["tag"] == "tuned"
