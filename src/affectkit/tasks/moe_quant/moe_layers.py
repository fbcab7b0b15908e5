"""Views over the MoE layers of transformers' Mixtral (v5 fused and v4 ModuleList) and Switch models.

``iter_moe_layers(model)`` yields one :class:`MoELayerView` per sparse MoE block, in module order
(for Switch: the sparse encoder blocks, then the sparse decoder blocks). A view gives the router
weight ``[E, d]``, each expert's projections as float ``[out, in]`` matrices under their legacy
names (Mixtral ``w1`` gate / ``w3`` up / ``w2`` down; Switch ``wi`` / ``wo``), lets a caller write an
expert's weights back (sensitivity probes), and installs hooks that report the tokens routed to
each expert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from affectkit.tasks.moe_quant.packed_modules import MIXTRAL_PROJS, SWITCH_PROJS, MixedBitExperts

KINDS = ("mixtral-fused", "mixtral-list", "switch", "mixed-bit")


def _kind(mod: nn.Module) -> str | None:
    experts = getattr(mod, "experts", None)
    if experts is None:
        return None
    if isinstance(experts, MixedBitExperts):
        return "mixed-bit"
    if hasattr(mod, "gate") and isinstance(getattr(experts, "gate_up_proj", None), torch.Tensor):
        return "mixtral-fused"
    if hasattr(mod, "gate") and isinstance(experts, nn.ModuleList) and len(experts) and hasattr(experts[0], "w1"):
        return "mixtral-list"
    if hasattr(mod, "router") and hasattr(mod.router, "classifier") and hasattr(experts, "expert_0"):
        return "switch"
    return None


@dataclass
class MoELayerView:
    name: str  # module path of the sparse MoE block
    kind: str
    block: nn.Module
    style: str  # "mixtral" or "switch"
    act: str

    @property
    def num_experts(self) -> int:
        return int(self.router_weight().shape[0])

    @property
    def proj_names(self) -> tuple[str, ...]:
        return MIXTRAL_PROJS if self.style == "mixtral" else SWITCH_PROJS

    @property
    def first_proj(self) -> str:
        return self.proj_names[0]

    def router_module(self) -> nn.Module:
        return self.block.router.classifier if self.style == "switch" else self.block.gate

    def router_weight(self) -> torch.Tensor:
        return self.router_module().weight.detach()

    def expert_weights(self, e: int) -> dict[str, torch.Tensor]:
        ex = self.block.experts
        if self.kind == "mixtral-fused":
            f = ex.gate_up_proj.shape[1] // 2
            gu = ex.gate_up_proj[e].detach()
            return {"w1": gu[:f], "w3": gu[f:], "w2": ex.down_proj[e].detach()}
        if self.kind == "mixtral-list":
            return {p: getattr(ex[e], p).weight.detach() for p in MIXTRAL_PROJS}
        if self.kind == "switch":
            m = ex[f"expert_{e}"]
            return {p: getattr(m, p).weight.detach() for p in SWITCH_PROJS}
        mods = ex.experts[e]
        return {p: (mods[p].dequantize() if hasattr(mods[p], "dequantize") else mods[p].weight.detach())
                for p in self.proj_names}

    def set_expert_weights(self, e: int, weights: dict[str, torch.Tensor]) -> None:
        """Write float weights back into expert ``e`` (float layouts only)."""
        ex = self.block.experts
        with torch.no_grad():
            if self.kind == "mixtral-fused":
                f = ex.gate_up_proj.shape[1] // 2
                ex.gate_up_proj[e, :f].copy_(weights["w1"])
                ex.gate_up_proj[e, f:].copy_(weights["w3"])
                ex.down_proj[e].copy_(weights["w2"])
            elif self.kind == "mixtral-list":
                for p in MIXTRAL_PROJS:
                    getattr(ex[e], p).weight.copy_(weights[p])
            elif self.kind == "switch":
                for p in SWITCH_PROJS:
                    getattr(ex[f"expert_{e}"], p).weight.copy_(weights[p])
            else:
                raise TypeError("cannot write float weights into a packed MixedBitExperts module")

    def expert_forward_float(self, e: int, x: torch.Tensor, weights: dict[str, torch.Tensor] | None = None):
        """The intermediate activation (input of the second projection) of expert ``e`` on ``x``."""
        w = weights or self.expert_weights(e)
        act = _act(self.act)
        if self.style == "mixtral":
            return act(x @ w["w1"].float().T) * (x @ w["w3"].float().T)
        return act(x @ w["wi"].float().T)

    def capture_routed(self, callback: Callable[[int, torch.Tensor], None]) -> list:
        """Call ``callback(e, x_e)`` with the hidden states routed to expert ``e`` on every forward."""
        ex = self.block.experts
        handles = []
        if self.kind in ("mixtral-fused", "mixed-bit") and self.style == "mixtral":
            def pre(_mod, args, kwargs):
                hidden, index = _two_args(args, kwargs, ("hidden_states", "top_k_index"))
                for e in range(self.num_experts):
                    tok = torch.where((index == e).any(dim=-1))[0]
                    callback(e, hidden[tok].detach())
            handles.append(ex.register_forward_pre_hook(pre, with_kwargs=True))
        elif self.kind == "mixed-bit":  # switch style
            def pre_s(_mod, args, kwargs):
                hidden, mask = _two_args(args, kwargs, ("hidden_states", "selected_experts"))
                mask = mask.reshape(hidden.shape[0], -1)
                for e in range(self.num_experts):
                    tok = torch.nonzero(mask[:, e], as_tuple=False).flatten()
                    callback(e, hidden[tok].detach())
            handles.append(ex.register_forward_pre_hook(pre_s, with_kwargs=True))
        else:
            mods = list(ex) if self.kind == "mixtral-list" else [ex[f"expert_{e}"] for e in range(self.num_experts)]
            seen = [False] * len(mods)

            def make(e):
                def pre_e(_mod, args):
                    seen[e] = True
                    callback(e, args[0].reshape(-1, args[0].shape[-1]).detach())
                return pre_e

            for e, m in enumerate(mods):
                handles.append(m.register_forward_pre_hook(make(e)))
            # experts that receive no token are never called: report them with an empty batch
            d = self.router_weight().shape[1]

            def post(_mod, _args, _out):
                for e in range(len(mods)):
                    if not seen[e]:
                        callback(e, torch.zeros(0, d))
                    seen[e] = False
            handles.append(self.block.register_forward_hook(post))
        return handles


def _two_args(args: tuple, kwargs: dict, names: tuple[str, str]):
    vals = list(args[:2])
    for name in names[len(vals):]:
        vals.append(kwargs[name])
    return vals[0], vals[1]


def _act(name: str):
    from transformers.activations import ACT2FN

    return ACT2FN[name]


def _act_name(model: nn.Module, style: str) -> str:
    cfg = getattr(model, "config", None)
    if style == "mixtral":
        return getattr(cfg, "hidden_act", "silu")
    return getattr(cfg, "dense_act_fn", "relu")


def iter_moe_layers(model: nn.Module) -> Iterator[MoELayerView]:
    for name, mod in model.named_modules():
        kind = _kind(mod)
        if kind is None:
            continue
        style = mod.experts.style if kind == "mixed-bit" else ("switch" if kind == "switch" else "mixtral")
        yield MoELayerView(name, kind, mod, style, _act_name(model, style))


def moe_layers(model: nn.Module) -> list[MoELayerView]:
    layers = list(iter_moe_layers(model))
    if not layers:
        raise ValueError("no Mixtral or Switch sparse MoE block found in the model")
    return layers


def init_router_std(model: nn.Module, style: str) -> float:
    """The std of the router's init in transformers: Mixtral ``initializer_range``; Switch
    ``initializer_factor * 1.0`` for the router classifier."""
    cfg = getattr(model, "config", None)
    if style == "mixtral":
        return float(getattr(cfg, "initializer_range", 0.02))
    return float(getattr(cfg, "initializer_factor", 1.0)) * 1.0
