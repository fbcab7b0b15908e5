import math

import pytest
import torch

from affectkit.tasks.vc_soup.method_dpo import dpo_loss
from affectkit.tasks.vc_soup.model import build_policy, build_tokenizer, encode_pairs, sequence_logprob
from affectkit.tasks.vc_soup.train import train_dpo_native


def _setup():
    tok = build_tokenizer(["a", "b", "c", "d", "good", "bad", "tell", "me"])
    ref = build_policy(len(tok), n_embd=32, seed=0)
    return tok, ref


def test_dpo_loss_is_ln2_at_init():
    tok, ref = _setup()
    import copy

    policy = copy.deepcopy(ref)
    b_c = encode_pairs(tok, ["tell me", "tell me a"], ["good a", "good b c"])
    b_r = encode_pairs(tok, ["tell me", "tell me a"], ["bad a", "bad"])
    with torch.no_grad():
        loss, logits = dpo_loss(sequence_logprob(policy, b_c), sequence_logprob(policy, b_r), sequence_logprob(ref, b_c), sequence_logprob(ref, b_r), beta=0.1)
    assert loss.mean().item() == pytest.approx(math.log(2), abs=1e-6)
    assert torch.all(logits == 0)


def test_dpo_loss_formula():
    loss, logits = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    assert logits.item() == pytest.approx(1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)))


def test_sequence_logprob_counts_response_tokens_only():
    tok, ref = _setup()
    b = encode_pairs(tok, ["tell me", "a b c d a b"], ["good", "good"])
    # the response mask covers "good" and [EOS]
    assert b["response_mask"].sum(1).tolist() == [2, 2]
    lp = sequence_logprob(ref, b)
    logits = ref(input_ids=b["input_ids"][:1, :5]).logits[0].log_softmax(-1)
    ids = b["input_ids"][0]
    expect = logits[2, ids[3]] + logits[3, ids[4]]
    assert lp[0].item() == pytest.approx(expect.item(), abs=1e-5)


def test_native_dpo_learns_preference():
    tok, ref = _setup()
    import copy

    policy = copy.deepcopy(ref)
    rows = [{"prompt": "tell me", "chosen": "good a", "rejected": "bad a"}] * 8
    info = train_dpo_native(policy, ref, tok, rows, steps=30, lr=3e-3, batch_size=8, beta=0.1, seed=0)
    assert info["loss_first"] == pytest.approx(math.log(2), abs=1e-5)
    assert info["loss_last"] < 0.5 and info["reward_acc_last"] == 1.0


def test_trl_dpo_trainer_cpu(tmp_path):
    pytest.importorskip("trl")
    import copy

    from affectkit.tasks.vc_soup.train import train_dpo_trl

    tok, ref = _setup()
    rows = [{"prompt": "tell me", "chosen": "good a", "rejected": "bad a"}] * 16
    # the token sequences TRL builds are the native ones: prompt [SEP] response [EOS]
    info = train_dpo_trl(copy.deepcopy(ref), copy.deepcopy(ref), tok, rows, steps=6, lr=3e-3, batch_size=8, beta=0.1, seed=0, out_dir=tmp_path)
    assert info["loss_first"] == pytest.approx(math.log(2), abs=1e-4)
    assert info["loss_last"] < info["loss_first"] and info["steps"] == 6
    b_c = encode_pairs(tok, ["tell me"], ["good a"])
    b_r = encode_pairs(tok, ["tell me"], ["bad a"])
    m = info["model"]
    with torch.no_grad():
        margin = (sequence_logprob(m, b_c) - sequence_logprob(ref, b_c)) - (sequence_logprob(m, b_r) - sequence_logprob(ref, b_r))
    assert margin.item() > 0
    lora = train_dpo_trl(copy.deepcopy(ref), None, tok, rows, steps=4, lr=3e-3, batch_size=8, beta=0.1, seed=0, out_dir=tmp_path / "l", lora={"r": 4, "alpha": 8})
    assert lora["loss_first"] == pytest.approx(math.log(2), abs=1e-4) and lora["loss_last"] < lora["loss_first"]
