import gzip
import json
import math

import numpy as np
import pytest

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.vc_soup.data import read_rows, split_hh, to_canonical
from affectkit.tasks.vc_soup.filtering import FilterSpec, filter_prefs


def _rows():
    # value 'a' dataset: chosen/rejected scores for values a and b
    return [
        {"id": "p0", "prompt": "q0", "chosen": "c0", "rejected": "r0", "value": "a", "rewards_chosen": {"a": 1.0, "b": 1.0}, "rewards_rejected": {"a": 0.0, "b": 2.0}},
        {"id": "p1", "prompt": "q1", "chosen": "c1", "rejected": "r1", "value": "a", "rewards_chosen": {"a": 3.0, "b": 3.0}, "rewards_rejected": {"a": 2.0, "b": 0.0}},
        {"id": "p2", "prompt": "q2", "chosen": "c2", "rejected": "r2", "value": "a", "rewards_chosen": {"a": 2.0, "b": 0.5}, "rewards_rejected": {"a": 1.0, "b": 0.5}},
    ]


def _expected_consistency(rows):
    rc = np.array([[r["rewards_chosen"]["a"], r["rewards_chosen"]["b"]] for r in rows])
    rr = np.array([[r["rewards_rejected"]["a"], r["rewards_rejected"]["b"]] for r in rows])
    g = []
    for k in range(2):
        pooled = np.concatenate([rc[:, k], rr[:, k]])
        mu, sd = pooled.mean(), pooled.std(ddof=1)
        g.append((rc[:, k] - mu) / (sd + 1e-12) - (rr[:, k] - mu) / (sd + 1e-12))
    g = np.stack(g, 1)
    return (g[:, 0] + g[:, 1]) / (np.sqrt(g[:, 0] ** 2 + g[:, 1] ** 2) * math.sqrt(2) + 1e-12)


def test_precomputed_pipeline_by_hand():
    rows = _rows()
    out, stats = filter_prefs(rows, FilterSpec(values=("a", "b"), keep_all=True))
    c = _expected_consistency(rows)
    np.testing.assert_allclose([r["consistency"] for r in out], c)
    assert [r["kept"] for r in out] == list(c >= 0)
    assert stats["n_rows"] == 3 and stats["kept"] == int((c >= 0).sum())
    assert stats["datasets"]["a"]["reward_models"]["a"]["mean"] == pytest.approx(1.5)
    assert out[0]["id"] == "p0" and "gap_z" in out[0] and set(out[0]["z_chosen"]) == {"a", "b"}
    # default: only kept rows
    kept, _ = filter_prefs(rows, FilterSpec(values=("a", "b")))
    assert [r["id"] for r in kept] == [r["id"] for r, k in zip(rows, c >= 0, strict=True) if k]


def test_cost_model_flag_equivalent_to_negated_column():
    rows = _rows()
    flagged, _ = filter_prefs(rows, FilterSpec(values=("a", "b"), cost_models=("b",), keep_all=True))
    neg = json.loads(json.dumps(rows))
    for r in neg:
        r["rewards_chosen"]["b"] *= -1
        r["rewards_rejected"]["b"] *= -1
    plain, _ = filter_prefs(neg, FilterSpec(values=("a", "b"), keep_all=True))
    np.testing.assert_allclose([r["consistency"] for r in flagged], [r["consistency"] for r in plain])


def test_keep_ratio_and_threshold_per_dataset():
    rows = _rows()
    out, stats = filter_prefs(rows, FilterSpec(values=("a", "b"), threshold=None, keep_ratio=0.34))
    assert len(out) == 2  # ceil(0.34 * 3)
    out, _ = filter_prefs(rows, FilterSpec(values=("a", "b"), threshold=1.0))
    assert len(out) == 0


def test_invalid_rows_counted():
    rows = _rows() + [
        {"prompt": "x", "chosen": "", "rejected": "r", "value": "a", "rewards_chosen": {"a": 1, "b": 1}, "rewards_rejected": {"a": 0, "b": 0}},
        {"prompt": "x", "chosen": "c", "rejected": "r", "value": "a", "rewards_chosen": {"a": "high", "b": 1}, "rewards_rejected": {"a": 0, "b": 0}},
        {"prompt": "x", "chosen": "c", "rejected": "r", "value": "a", "rewards_chosen": {"a": float("nan"), "b": 1}, "rewards_rejected": {"a": 0, "b": 0}},
        {"prompt": "x", "chosen": "c", "rejected": "r", "value": "a", "rewards_chosen": {"b": 1}, "rewards_rejected": {"a": 0, "b": 0}},
        {"prompt": "x", "rejected": "r", "value": "a"},
    ]
    out, stats = filter_prefs(rows, FilterSpec(values=("a", "b"), keep_all=True))
    assert stats["n_dropped_invalid"] == 5
    assert stats["invalid_reasons"] == {"missing_chosen_or_rejected": 2, "missing_reward": 1, "nan_reward": 1, "non_numeric_reward": 1}
    assert len(out) == 3
    np.testing.assert_allclose([r["consistency"] for r in out], _expected_consistency(_rows()))
    with pytest.raises(DataError, match="5 invalid rows"):
        filter_prefs(rows, FilterSpec(values=("a", "b"), strict=True))


def test_no_usable_rewards_and_bad_specs():
    rows = [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    with pytest.raises(DataError, match="no usable"):
        filter_prefs(rows, FilterSpec(values=("a",)))
    with pytest.raises(UsageError, match="unknown reward backend"):
        filter_prefs(rows, FilterSpec(values=("a",), rewards={"a": "vadr"}))
    with pytest.raises(DataError, match="reward model path not found"):
        filter_prefs(rows, FilterSpec(values=("a",), rewards={"a": "hf-seqcls:/no/such/model"}))
    with pytest.raises(UsageError, match="not one of"):
        filter_prefs(rows, FilterSpec(values=("a",), cost_models=("b",)))


def test_offline_backends():
    rows = [
        {"prompt": "tell me about cooking", "chosen": "I love cooking, it is wonderful and fun.", "rejected": "Cooking is a damn terrible chore."},
        {"prompt": "tell me about music", "chosen": "Music is great.", "rejected": "I hate this stupid awful thing."},
    ]
    out, stats = filter_prefs(rows, FilterSpec(values=("pos", "clean", "short"), rewards={"pos": "vader", "clean": "profanity", "short": "brevity:3"}, keep_all=True))
    assert out[0]["rewards_chosen"]["pos"] > 0.5 and out[0]["rewards_rejected"]["pos"] < 0
    assert out[0]["rewards_rejected"]["clean"] == -1.0 and out[1]["rewards_rejected"]["clean"] == -1.0
    assert out[1]["rewards_chosen"]["short"] == 0.0
    assert stats["backends"] == {"pos": "vader", "clean": "profanity", "short": "brevity:3"}


def test_python_backend(tmp_path, monkeypatch):
    (tmp_path / "myrm.py").write_text("def score(prompts, responses):\n    return [float(len(r)) for r in responses]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = [{"prompt": "p", "chosen": "long answer", "rejected": "no"}, {"prompt": "p", "chosen": "a", "rejected": "bbbb"}]
    out, _ = filter_prefs(rows, FilterSpec(values=("len",), rewards={"len": "python:myrm:score"}, keep_all=True))
    assert out[0]["rewards_chosen"]["len"] == 11.0 and out[0]["consistency"] == pytest.approx(1.0)
    assert out[1]["consistency"] == pytest.approx(-1.0)


def test_readers_jsonl_gz_parquet_hfdir(tmp_path):
    rows = _rows()
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "hf"))
    for src in ("a.jsonl", "a.jsonl.gz", "a.parquet", "hf"):
        got = read_rows(tmp_path / src)
        assert [r["id"] for r in got] == ["p0", "p1", "p2"], src
        assert got[1]["rewards_chosen"]["b"] == 3.0
    snap = tmp_path / "snap" / "data"
    snap.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:2]), snap / "train-00000.parquet")
    pq.write_table(pa.Table.from_pylist(rows[2:]), snap / "test-00000.parquet")
    assert len(read_rows(tmp_path / "snap", split="train")) == 2
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(DataError, match="line 2"):
        read_rows(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="not found"):
        read_rows(tmp_path / "missing.jsonl")


def test_hh_rlhf_import():
    c = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Fine, thanks!"
    r = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Go away."
    assert split_hh(c, r) == ("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:", "Fine, thanks!", "Go away.")
    # common prefix running into the responses ("F..."/"F...") is cut at the last Assistant marker
    p, a, b = split_hh(c, c.replace("Fine, thanks!", "Fine."))
    assert p.endswith("Assistant:") and a == "Fine, thanks!" and b == "Fine."
    rows, fmt = to_canonical([{"chosen": c, "rejected": r}], values=("helpful",))
    assert fmt == "hh-rlhf" and rows[0]["chosen"] == "Fine, thanks!" and rows[0]["value"] == "helpful"


def test_pku_ultrafeedback_helpsteer2_import():
    pku = [{"prompt": "p", "response_0": "A", "response_1": "B", "better_response_id": 1, "safer_response_id": 0, "is_response_0_safe": True, "is_response_1_safe": False}]
    rows, fmt = to_canonical(pku, values=("helpful", "harmless"))
    assert fmt == "pku-saferlhf"
    assert [(r["value"], r["chosen"], r["rejected"]) for r in rows] == [("helpful", "B", "A"), ("harmless", "A", "B")]
    uf = [{"instruction": "q", "completions": [
        {"response": "x", "annotations": {"helpfulness": {"Rating": "2"}, "honesty": {"Rating": "5"}, "instruction_following": {"Rating": "3"}, "truthfulness": {"Rating": "N/A"}}},
        {"response": "y", "annotations": {"helpfulness": {"Rating": "5"}, "honesty": {"Rating": "4"}, "instruction_following": {"Rating": "3"}, "truthfulness": {"Rating": "3"}}},
    ]}]
    rows, fmt = to_canonical(uf, values=("helpfulness", "honesty", "instruction_following"))
    assert fmt == "ultrafeedback"
    assert [(r["value"], r["chosen"]) for r in rows] == [("helpfulness", "y"), ("honesty", "x")]  # instruction_following tie dropped
    assert rows[0]["rewards_chosen"]["helpfulness"] == 5.0 and rows[0]["rewards_chosen"]["truthfulness"] == 3.0
    hs = [
        {"prompt": "q", "response": "r1", "helpfulness": 3, "correctness": 3, "coherence": 4, "complexity": 1, "verbosity": 1},
        {"prompt": "q", "response": "r2", "helpfulness": 1, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 2},
        {"prompt": "q2", "response": "r3", "helpfulness": 1, "correctness": 1, "coherence": 1, "complexity": 1, "verbosity": 1},
    ]
    rows, fmt = to_canonical(hs, values=("helpfulness", "correctness"))
    assert fmt == "helpsteer2"
    assert [(r["value"], r["chosen"], r["rejected"]) for r in rows] == [("helpfulness", "r1", "r2"), ("correctness", "r2", "r1")]
    # the ratings themselves serve as precomputed rewards: the two pairs conflict
    out, st = filter_prefs(rows, FilterSpec(values=("helpfulness", "correctness"), keep_all=True))
    assert st["n_valid"] == 2


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_cli_byte_identical_stats_and_stdin(tmp_path, cli):
    _write_jsonl(tmp_path / "in.jsonl", _rows())
    args = ["filter-prefs", str(tmp_path / "in.jsonl"), "--values", "a,b", "--stats", str(tmp_path / "s.json")]
    code, _, err = cli([*args, "--out", str(tmp_path / "o1.jsonl")])
    assert code == 0, err
    code, _, _ = cli([*args, "--out", str(tmp_path / "o2.jsonl")])
    assert (tmp_path / "o1.jsonl").read_bytes() == (tmp_path / "o2.jsonl").read_bytes()
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["n_rows"] == 3 and "sign_agreement_rate" in stats and "consistency_median" in stats
    code, out, _ = cli(["filter-prefs", "-", "--values", "a,b"], input=(tmp_path / "in.jsonl").read_text())
    assert code == 0 and out == (tmp_path / "o1.jsonl").read_text()
    # the output feeds itself (rewards are carried): same rows again
    code, out2, _ = cli(["filter-prefs", "-", "--values", "a,b", "--threshold", "-1"], input=out)
    assert [json.loads(x)["id"] for x in out2.splitlines()] == [json.loads(x)["id"] for x in out.splitlines()]


@pytest.mark.parametrize(
    "extra, content, message",
    [
        (["--reward", "a=nosuch"], None, "unknown reward backend"),
        (["--reward", "a=hf-seqcls:/no/model"], None, "reward model path not found"),
        (["--threshold", "0", "--keep-ratio", "0.5"], None, "exclude each other"),
        (["--reward", "abc"], None, "expected VALUE=BACKEND"),
        ([], '{"prompt": "p", "chosen": "c", "rejected": "r", "rewards_chosen": {"a": "x", "b": 1}, "rewards_rejected": {"a": 1, "b": 1}}\n', "no usable"),
        ([], "not json\n", "invalid JSON"),
    ],
)
def test_cli_bad_input_exit_2(tmp_path, cli, extra, content, message):
    p = tmp_path / "in.jsonl"
    if content is None:
        _write_jsonl(p, _rows())
    else:
        p.write_text(content)
    code, out, err = cli(["filter-prefs", str(p), "--values", "a,b", *extra, "--out", str(tmp_path / "o.jsonl")])
    assert code == 2, (out, err)
    assert "Error:" in err and message in err and "Traceback" not in err


def test_hf_seqcls_backend_and_cache(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from affectkit.tasks.vc_soup.model import build_tokenizer
    from affectkit.tasks.vc_soup.rewards import make_scorer

    tok = build_tokenizer(["tell", "me", "good", "bad", "a", "b"])
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=16, num_labels=1, pad_token_id=0))
    model.save_pretrained(str(tmp_path / "rm"))
    tok.save_pretrained(str(tmp_path / "rm"))
    s = make_scorer(f"hf-seqcls:{tmp_path / 'rm'}", template="{prompt} {response}")
    got = s(["tell me", "tell me"], ["good a", "bad b"])
    enc = tok(["tell me good a"], return_tensors="pt")
    with torch.no_grad():
        expect = model.eval()(**enc).logits[0, 0].item()
    assert got[0] == pytest.approx(expect, abs=1e-5) and got[0] != got[1]
    rows = [{"prompt": "tell me", "chosen": "good a", "rejected": "bad b"}, {"prompt": "tell me", "chosen": "a", "rejected": "b"}]
    spec = FilterSpec(values=("q",), rewards={"q": "profanity"}, keep_all=True, cache=tmp_path / "cache.jsonl")
    filter_prefs(rows, spec)
    cached = (tmp_path / "cache.q.jsonl").read_text().splitlines()
    assert len(cached) == 4 and all("score" in json.loads(x) for x in cached)


def test_flat_reward_columns_like_reference_code(tmp_path, cli):
    flat = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "value": "a",
             "reward1_chosen": r["rewards_chosen"]["a"], "reward1_reject": r["rewards_rejected"]["a"],
             "reward2_chosen": str(r["rewards_chosen"]["b"]), "reward2_reject": r["rewards_rejected"]["b"]} for r in _rows()]
    out, _ = filter_prefs(flat, FilterSpec(values=("a", "b"), rewards={"a": "precomputed:reward1_chosen,reward1_reject", "b": "precomputed:reward2_chosen,reward2_reject"}, keep_all=True))
    np.testing.assert_allclose([r["consistency"] for r in out], _expected_consistency(_rows()))
    # a recipe supplies values and the threshold
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    (tmp_path / "r.yaml").write_text("values: [a, b]\nthreshold: 1.0\n")
    code, out_text, err = cli(["filter-prefs", str(tmp_path / "in.jsonl"), "--config", str(tmp_path / "r.yaml")])
    assert code == 0, err
    assert out_text == ""  # nothing reaches consistency 1.0
    (tmp_path / "r.yaml").write_text("values: [a, b]\nthreshhold: 1.0\n")
    code, _, err = cli(["filter-prefs", str(tmp_path / "in.jsonl"), "--config", str(tmp_path / "r.yaml")])
    assert code == 2 and "did you mean 'threshold'" in err


def test_cli_hh_rlhf_directory_layout(tmp_path, cli):
    d = tmp_path / "hh-rlhf" / "harmless-base"
    d.mkdir(parents=True)
    base = "\n\nHuman: tell me about dogs\n\nAssistant:"
    rows = [{"chosen": base + " Dogs are loyal friends.", "rejected": base + " Dogs are damn stupid idiots, honestly."},
            {"chosen": base + " They like walks.", "rejected": base + " Shut up."}]
    for split, rs in (("train", rows), ("test", rows[:1])):
        with gzip.open(d / f"{split}.jsonl.gz", "wt") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in rs))
    code, out, err = cli(["filter-prefs", str(d), "--split", "test", "--values", "harmless,short",
                               "--reward", "harmless=profanity", "--reward", "short=brevity:4", "--keep-all"])
    assert code == 0, err
    got = [json.loads(x) for x in out.splitlines()]
    assert len(got) == 1 and got[0]["prompt"] == base and got[0]["chosen"] == "Dogs are loyal friends."
    assert got[0]["rewards_rejected"]["harmless"] == -2.0  # "damn", "stupid" ("idiots" is not listed) and got[0]["value"] == "harmless"


def test_summarize_from_feedback_import():
    rows = [{"info": {"post": "My cat ate my homework.", "title": "Help", "subreddit": "cats"},
             "summaries": [{"text": " cat ate homework", "policy": "a"}, {"text": " help", "policy": "b"}], "choice": 0, "worker": "w1"},
            {"info": {"post": "p"}, "summaries": [{"text": "x"}], "choice": 0}]
    out, fmt = to_canonical(rows, values=("summary",))
    assert fmt == "summarize-feedback"
    assert out[0]["prompt"].startswith("SUBREDDIT: r/cats\nTITLE: Help\nPOST: My cat") and out[0]["prompt"].endswith("TL;DR:")
    assert (out[0]["chosen"], out[0]["rejected"], out[0]["value"]) == ("cat ate homework", "help", "summary")
    assert out[1]["chosen"] is None  # one summary only: counted as invalid by filter-prefs
    _, stats = filter_prefs(out, FilterSpec(values=("summary",), rewards={"summary": "brevity:3"}))
    assert stats["invalid_reasons"] == {"missing_chosen_or_rejected": 1}
