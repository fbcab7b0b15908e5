"""End to end on a small embedded setting: data, filtering methods, training, soups, merge CLI."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from affectkit.tasks.vc_soup.config import Config  # noqa: E402
from affectkit.tasks.vc_soup.data import load_setting  # noqa: E402
from affectkit.tasks.vc_soup.soup_eval import evaluate_policies  # noqa: E402
from affectkit.tasks.vc_soup.synth import SynthConfig, make_setting  # noqa: E402
from affectkit.tasks.vc_soup.train import select_pairs, train_policies  # noqa: E402


@pytest.fixture(scope="module")
def setting_dir(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("vc") / "conflicting"
    make_setting(d, 0, SynthConfig(rho=-0.7, n_pairs=80, n_sft=200))
    return d


def _small_cfg(**kw):
    cfg = Config(**kw)
    cfg.sft.steps = 20
    cfg.dpo.steps = 6
    cfg.dpo.batch_size = 16
    cfg.dpo.trainer = "native"
    return cfg


def test_generator_ground_truth(setting_dir):
    truth = json.loads((setting_dir / "truth.json").read_text())
    assert truth["reward_correlation"] < -0.2  # the conflicting setting conflicts
    rows = [json.loads(x) for x in (setting_dir / "positivity_train.jsonl").read_text().splitlines()]
    assert len(rows) == 80 and {"prompt", "chosen", "rejected", "value", "rewards_chosen", "rewards_rejected"} <= set(rows[0])
    # labels follow the value's reward except for the flipped pairs
    for r in rows:
        better = r["rewards_chosen"]["positivity"] > r["rewards_rejected"]["positivity"]
        assert better != r["label_flipped"]
    # relevance is a real MiniLM cosine: on-topic beats off-topic for the same tone phrase
    ev = json.loads((setting_dir / "eval_prompts.jsonl").read_text().splitlines()[0])
    rel = ev["rewards"]["relevance"]
    assert rel[0] > rel[2] and rel[1] > rel[3]


def test_select_pairs_methods(setting_dir):
    cfg = Config()
    setting = load_setting(setting_dir, cfg.values)
    sel = {m: select_pairs(setting["rows"], cfg, m, seed=0) for m in ("vc", "unfiltered", "random", "denoise")}
    for v in cfg.values:
        n_vc = len(sel["vc"][0][v])
        assert len(sel["unfiltered"][0][v]) == 80
        assert len(sel["random"][0][v]) == n_vc
        assert len(sel["denoise"][0][v]) <= n_vc
        assert all(r["consistency"] >= 0 for r in sel["vc"][0][v])
        assert all(r["gap_z"][v] > 0 for r in sel["denoise"][0][v])
        # flipped labels have both gaps negative in a conflicting pair only rarely; VC removes most
        assert sel["vc"][1][v]["flipped_in_train"] <= sel["unfiltered"][1][v]["flipped_in_train"]


def test_train_evaluate_and_merge(setting_dir, tmp_path, cli):
    cfg = _small_cfg()
    summary = train_policies(cfg, setting_dir, tmp_path / "run", seed=0)
    for v in cfg.values:
        assert (tmp_path / "run" / "policies" / v / "model.safetensors").is_file()
        assert summary["values"][v]["loss_first"] == pytest.approx(math.log(2), abs=1e-4)
    res = evaluate_policies(cfg, setting_dir, tmp_path / "run", tmp_path / "run")
    assert len(res["grid"]) == 11 and res["hv_ref_policy"] >= 0 and (tmp_path / "run" / "front.png").is_file()
    assert sum(g["pareto"] for g in res["grid"]) == res["n_pareto"] >= 1

    pos, rel = tmp_path / "run" / "policies" / "positivity", tmp_path / "run" / "policies" / "relevance"
    args = ["merge", str(pos), str(rel), "--weights", "0.3,0.7"]
    code, _, err = cli([*args, "--out", str(tmp_path / "m1")])
    assert code == 0, err
    code, _, _ = cli([*args, "--out", str(tmp_path / "m2")])
    assert (tmp_path / "m1" / "model.safetensors").read_bytes() == (tmp_path / "m2" / "model.safetensors").read_bytes()
    assert (tmp_path / "m1" / "config.json").is_file() and (tmp_path / "m1" / "tokenizer.json").is_file()
    # the written mergekit YAML reproduces the merge
    code, _, err = cli(["merge", "--config", str(tmp_path / "m1" / "mergekit_config.yml"), "--out", str(tmp_path / "m3")])
    assert code == 0, err
    assert (tmp_path / "m3" / "model.safetensors").read_bytes() == (tmp_path / "m1" / "model.safetensors").read_bytes()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m1")).state_dict()
    a = AutoModelForCausalLM.from_pretrained(str(pos)).state_dict()
    b = AutoModelForCausalLM.from_pretrained(str(rel)).state_dict()
    for k in a:
        torch.testing.assert_close(merged[k], 0.3 * a[k] + 0.7 * b[k])
    # bad inputs exit 2 with one Error line
    code, _, err = cli(["merge", str(pos), str(tmp_path / "nope"), "--weights", "0.5,0.5", "--out", str(tmp_path / "m4")])
    assert code == 2 and "Error:" in err and "not found" in err
    code, _, err = cli(["merge", str(pos), str(rel), "--weights", "0.5,x", "--out", str(tmp_path / "m5")])
    assert code == 2 and "--weights" in err
    code, _, err = cli([*args, "--out", str(tmp_path / "m1")])
    assert code == 2 and "not empty" in err
    # a vc-soup recipe sets the space
    recipe = tmp_path / "r.yaml"
    recipe.write_text("merge_space: delta\n")
    code, _, err = cli([*args, "--config", str(recipe), "--out", str(tmp_path / "m6")])
    assert code == 2 and "--base" in err
    code, _, err = cli([*args, "--config", str(recipe), "--base", str(tmp_path / "run" / "reference"), "--out", str(tmp_path / "m6")])
    assert code == 0, err


def test_recipes_resolve():
    from affectkit.core.config import resolve
    from affectkit.tasks.vc_soup.merge_io import read_mergekit_yaml

    root = Path(__file__).resolve().parents[2] / "commands"
    resolve(Config, root / "train" / "vc-soup.yaml")
    resolve(Config, root / "filter-prefs" / "vc-soup.yaml")
    resolve(Config, root / "merge" / "vc-soup.yaml")
    mk = read_mergekit_yaml(root.parent / "examples" / "vc_soup_mergekit.yml")
    assert mk["weights"] == [0.5, 0.5] and mk["normalize"] is True


def test_minilm_backend_scores_relevance():
    from affectkit.tasks.vc_soup.rewards import make_scorer

    s = make_scorer("minilm-relevance")
    r = s(["how do I bake bread?", "how do I bake bread?"], ["Mix flour, water and yeast, then bake the dough.", "The football match ended two to one."])
    assert r[0] > r[1] + 0.2 and np.all(np.abs(r) <= 1.0 + 1e-6)


def test_train_resume_skips_finished_policies(setting_dir, tmp_path):
    cfg = _small_cfg()
    first = train_policies(cfg, setting_dir, tmp_path / "run", seed=0)
    pos = tmp_path / "run" / "policies" / "positivity" / "model.safetensors"
    rel = tmp_path / "run" / "policies" / "relevance" / "model.safetensors"
    before = pos.read_bytes()
    rel.unlink()  # as if the run was killed while training the second value
    again = train_policies(cfg, setting_dir, tmp_path / "run", seed=0, resume=True)
    assert pos.read_bytes() == before and rel.is_file()
    assert again["values"]["relevance"]["loss_last"] == pytest.approx(first["values"]["relevance"]["loss_last"], rel=1e-5)


def test_cli_train_max_steps_then_evaluate(setting_dir, tmp_path):
    """``train vc-soup --max-steps N`` is ``dpo.steps: N``: in config.yaml and in the steps each policy
    ran; ``evaluate vc-soup --run`` then scores the run's soup grid."""
    from tests.cli.helpers import invoke, json_lines

    from affectkit.core.config import load_yaml

    run = tmp_path / "run"
    res = invoke("--json", "train", "vc-soup", "--data", str(setting_dir), "--out", str(run), "--max-steps", "3",
                 "--set", "sft.steps=0", "--set", "dpo.trainer=native", "--set", "dpo.batch_size=8", "--set", "policy.n_embd=16")
    assert res.exit_code == 0, res.stderr
    assert load_yaml(run / "config.yaml")["dpo"]["steps"] == 3
    result = json_lines(res.stdout)[-1]
    assert [result["values"][v]["steps"] for v in Config().values] == [3, 3]
    res = invoke("--json", "evaluate", "vc-soup", "--run", str(run))
    assert res.exit_code == 0, res.stderr
    ev = json_lines(res.stdout)[-1]
    assert set(ev["metrics"]) == {"hv_ref_policy", "n_pareto", "barrier_worst"} and len(ev["grid"]) == 11
    assert (run / "soup_eval.json").is_file() and (run / "front.png").is_file()
