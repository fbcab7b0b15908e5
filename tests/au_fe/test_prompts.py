"""Textual Semantic Prototypes: only the prompt contexts train; the text tower stays frozen."""

import torch

from affectkit.tasks.au_fe import facs
from affectkit.tasks.au_fe.method_modules import PromptLearner, TextTower
from affectkit.tasks.au_fe.model import build_text_tower


def _check_only_contexts_train(tower: TextTower, n_classes: int):
    descriptors = [facs.au_descriptor(a) for a in facs.au_vocabulary("bp4d")][:n_classes]
    learner = PromptLearner(tower, descriptors, n_ctx=8)
    protos = learner(tower)
    assert protos.shape == (n_classes, tower.out_dim)
    assert torch.allclose(protos.norm(dim=-1), torch.ones(n_classes), atol=1e-5)
    protos.sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in tower.parameters())
    trainable = [n for n, p in torch.nn.ModuleDict({"tower": tower, "prompts": learner}).named_parameters() if p.requires_grad]
    assert trainable == ["prompts.ctx"]
    # the contexts change the prototypes (they really are injected)
    with torch.no_grad():
        learner.ctx.add_(torch.randn_like(learner.ctx))
    assert not torch.allclose(learner(tower), protos.detach(), atol=1e-4)


def test_minilm_tower_only_contexts_train():
    tower = build_text_tower("minilm")
    tower.train()
    assert not tower.model.training  # frozen tower stays in eval mode
    _check_only_contexts_train(tower, 5)


def test_clip_kind_tower_pools_at_eos_and_projects():
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    minilm = build_text_tower("minilm")
    tok = minilm.tokenizer  # any tokenizer whose end token is known works for the pooling test
    cfg = CLIPTextConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, projection_dim=24, max_position_embeddings=77,
                         eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id)
    tower = TextTower(CLIPTextModelWithProjection(cfg).eval(), tok, "clip")
    assert tower.out_dim == 24
    _check_only_contexts_train(tower, 3)
