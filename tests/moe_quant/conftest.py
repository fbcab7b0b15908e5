import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_mixtral(seed: int = 0, layers: int = 2, experts: int = 8, hidden: int = 32, ffn: int = 48):
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(seed)
    cfg = MixtralConfig(vocab_size=64, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=experts,
                        num_experts_per_tok=2, max_position_embeddings=64, tie_word_embeddings=False,
                        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return MixtralForCausalLM(cfg).eval()


def tiny_switch(seed: int = 0, experts: int = 8):
    from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration

    torch.manual_seed(seed)
    cfg = SwitchTransformersConfig(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=2,
                                   num_heads=4, num_experts=experts, num_sparse_encoder_layers=1,
                                   num_sparse_decoder_layers=1, expert_capacity=4096, dropout_rate=0.0,
                                   pad_token_id=0, decoder_start_token_id=0, eos_token_id=1,
                                   tie_word_embeddings=False)
    return SwitchTransformersForConditionalGeneration(cfg).eval()


def lm_batches(n: int = 4, seq: int = 16, vocab: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, vocab, (2, seq), generator=g)} for _ in range(n)]


def s2s_batches(n: int = 4, seq: int = 12, vocab: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        src = torch.randint(2, vocab, (2, seq), generator=g)
        out.append({"input_ids": src, "labels": src.flip(1)})
    return out


@pytest.fixture
def float_model_dir(tmp_path):
    """A tiny byte-level float Mixtral written by save_pretrained (a --model / init_from directory)."""
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    cfg = MixtralConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                        max_position_embeddings=256, tie_word_embeddings=False)
    d = tmp_path / "float"
    MixtralForCausalLM(cfg).save_pretrained(d)
    return d
