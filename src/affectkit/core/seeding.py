"""One seed for everything, and RNG state that survives a checkpoint."""

from __future__ import annotations

import random
from typing import Any

import numpy as np


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch RNG state as JSON-able values."""
    import torch

    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import torch

    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, np_gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, np_gauss))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def torch_generator(seed: int) -> Any:
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    return g


def attach_generator(module: Any, seed: int) -> None:
    """Give ``module`` (a torch module) a seeded ``generator`` of its own (a sampler's draws, modality
    dropout) whose state is a buffer: ``keep_generator_state`` records it after each step, so a
    checkpoint holds it, and loading the weights restores it (a resumed run draws what the
    uninterrupted one drew)."""
    import torch

    module.generator = torch.Generator().manual_seed(seed)
    module.register_buffer("generator_state", module.generator.get_state())

    def restore(m: Any, _incompatible: Any) -> None:
        m.generator.set_state(m.generator_state.clone())

    module.register_load_state_dict_post_hook(restore)


def keep_generator_state(module: Any) -> None:
    """Record ``module.generator``'s state in its buffer (call after each optimizer step)."""
    module.generator_state.copy_(module.generator.get_state())
