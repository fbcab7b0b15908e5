"""What makes a prime run resumable: the pretraining ring of recent patients and the seeded view
generator live in the state dict, so loading a checkpoint restores them."""

from __future__ import annotations

import torch


def test_generator_state_round_trips_through_the_state_dict() -> None:
    from affectkit.core.seeding import attach_generator, keep_generator_state

    a = torch.nn.Linear(2, 2)
    attach_generator(a, 7)
    torch.rand(5, generator=a.generator)
    keep_generator_state(a)
    expected = torch.rand(3, generator=a.generator)
    b = torch.nn.Linear(2, 2)
    attach_generator(b, 99)
    b.load_state_dict(a.state_dict())
    assert torch.equal(torch.rand(3, generator=b.generator), expected)


def test_ring_of_recent_patients_is_in_the_state_dict() -> None:
    from affectkit.tasks.prime.config import PrimeConfig
    from affectkit.tasks.prime.model import ModalitySpec, PrimeModel

    cfg = PrimeConfig()
    cfg.model.dim, cfg.model.layers, cfg.model.heads = 8, 1, 1
    specs = [ModalitySpec("a", "vector", 3), ModalitySpec("b", "vector", 2)]
    model = PrimeModel(specs, cfg.model, cfg.bank, cfg.pretrain, buffer_size=4).eval()
    batch = {"observed": torch.ones(6, 2, dtype=torch.bool), "a": torch.randn(6, 3), "b": torch.randn(6, 2)}
    model.remember(model.encode(batch))
    state = model.state_dict()
    assert int(state["recent_written"]) == 6 and state["recent_z_0"].shape == (4, 8)
    other = PrimeModel(specs, cfg.model, cfg.bank, cfg.pretrain, buffer_size=4)
    other.load_state_dict(state)
    a, b = model.recent_patients(), other.recent_patients()
    assert torch.equal(a["z"]["a"], b["z"]["a"]) and a["observed"].shape == (4, 2)
    # the last four patients, oldest first
    with torch.no_grad():
        assert torch.equal(a["z"]["b"], model.encode(batch)["z"]["b"][2:])
