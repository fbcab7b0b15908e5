"""An exponential moving average of a model's trainable weights, kept as buffers (so it is saved and
restored with the checkpoint), with a context manager that evaluates with the averaged weights."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _key(name: str) -> str:
    return name.replace(".", "__")


class WeightEMA(nn.Module):
    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        for name in self.names:
            self.register_buffer(_key(name), params[name].detach().clone())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name in self.names:
            getattr(self, _key(name)).lerp_(params[name].detach(), 1.0 - self.decay)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Swap the averaged weights in for the duration of the block."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in self.names:
                tmp = params[name].detach().clone()
                params[name].copy_(getattr(self, _key(name)))
                getattr(self, _key(name)).copy_(tmp)
        try:
            yield
        finally:
            with torch.no_grad():
                for name in self.names:
                    tmp = params[name].detach().clone()
                    params[name].copy_(getattr(self, _key(name)))
                    getattr(self, _key(name)).copy_(tmp)
