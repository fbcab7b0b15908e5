"""Packed weight modules: ``QuantLinear`` and ``MixedBitExperts``, plus a v4-style Mixtral MoE block.

``MixedBitExperts`` replaces a whole experts module (transformers v5 ``MixtralExperts`` with fused
``gate_up_proj``/``down_proj``, or Switch's ``SwitchTransformersExperts``) with one ``QuantLinear``
per expert projection, each at its own bit width, and reproduces the original forward:
Mixtral ``(hidden, top_k_index, top_k_weights)`` and Switch ``(hidden, selected_experts, routing_weights)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from affectkit.tasks.moe_quant.packing import pack_bits, packed_nbytes, unpack_bits
from affectkit.tasks.moe_quant.quant_grid import QuantResult, dequantize

MIXTRAL_PROJS = ("w1", "w3", "w2")  # gate, up, down (legacy names)
SWITCH_PROJS = ("wi", "wo")


def _activation(name: str):
    from transformers.activations import ACT2FN

    return ACT2FN[name]


class QuantLinear(nn.Module):
    """A bias-free linear layer whose weight is stored as packed ``bits``-bit codes plus
    float16 per-group scales and zero points. The forward dequantizes, then runs ``F.linear``."""

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int,
                 bias: bool = False, device=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.bits, self.group_size = int(bits), int(group_size)
        n_groups = -(-self.in_features // self.group_size)
        nbytes = packed_nbytes(self.in_features * self.out_features, self.bits)
        self.register_buffer("qweight", torch.zeros(nbytes, dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.zeros(self.out_features, n_groups, dtype=torch.float16, device=device))
        self.register_buffer("zeros", torch.zeros(self.out_features, n_groups, dtype=torch.float16, device=device))
        self.bias = nn.Parameter(torch.zeros(self.out_features, device=device)) if bias else None
        self._cache: torch.Tensor | None = None

    @classmethod
    def from_result(cls, res: QuantResult, bias: torch.Tensor | None = None) -> QuantLinear:
        out_f, in_f = res.codes.shape
        m = cls(in_f, out_f, res.bits, res.group_size, bias=bias is not None)
        m.qweight.copy_(pack_bits(res.codes, res.bits))
        m.scales.copy_(res.scales)
        m.zeros.copy_(res.zeros)
        if bias is not None:
            m.bias.data.copy_(bias.detach().float())
        return m

    def codes(self) -> torch.Tensor:
        flat = unpack_bits(self.qweight, self.bits, self.in_features * self.out_features)
        return flat.reshape(self.out_features, self.in_features)

    def dequantize(self) -> torch.Tensor:
        return dequantize(self.codes(), self.scales, self.zeros, self.group_size)

    def weight_for_forward(self, dtype: torch.dtype) -> torch.Tensor:
        # Cache the dequantized weight for inference; it is rebuilt after a state-dict load.
        if self._cache is None or self._cache.dtype != dtype or self._cache.device != self.qweight.device:
            self._cache = self.dequantize().to(device=self.qweight.device, dtype=dtype)
        return self._cache

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache = None
        return super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._cache = None
        return super()._apply(fn, *args, **kwargs)

    @property
    def weight(self) -> torch.Tensor:
        """A fresh float32 dequantized copy (for code that inspects ``.weight``; writes to it are lost)."""
        return self.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_for_forward(x.dtype), self.bias)

    def storage_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in (self.qweight, self.scales, self.zeros))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, bits={self.bits}, group_size={self.group_size}"


class MixedBitExperts(nn.Module):
    """Per-expert packed projections with per-expert bit widths; a drop-in experts module.

    ``style="mixtral"``: each expert has ``w1`` (gate), ``w3`` (up), ``w2`` (down); forward takes
    ``(hidden [T,d], top_k_index [T,k], top_k_weights [T,k])`` like ``MixtralExperts``.
    ``style="switch"``: each expert has ``wi``, ``wo``; forward takes ``(hidden [T,d],
    selected_experts [T,1,E] one-hot dispatch mask, routing_weights [T,1])``.
    """

    def __init__(self, style: str, num_experts: int, act: str, experts: list[dict[str, nn.Module]]):
        super().__init__()
        if style not in ("mixtral", "switch"):
            raise ValueError(f"unknown experts style {style!r}")
        self.style, self.num_experts, self.act_name = style, int(num_experts), act
        self.act_fn = _activation(act)
        self.experts = nn.ModuleList(nn.ModuleDict(e) for e in experts)

    def __getitem__(self, key: str) -> nn.Module:
        """``experts["expert_3"]`` as in Switch's ModuleDict (transformers' init code indexes it)."""
        if isinstance(key, str) and key.startswith("expert_"):
            return self.experts[int(key.split("_", 1)[1])]
        raise KeyError(key)

    def expert_bits(self) -> list[int]:
        first = "w1" if self.style == "mixtral" else "wi"
        return [int(getattr(e[first], "bits", 16)) for e in self.experts]

    def expert_forward(self, e: int, x: torch.Tensor) -> torch.Tensor:
        mods = self.experts[e]
        if self.style == "mixtral":
            return mods["w2"](self.act_fn(mods["w1"](x)) * mods["w3"](x))
        return mods["wo"](self.act_fn(mods["wi"](x)))

    def forward(self, hidden_states: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(hidden_states)
        if self.style == "mixtral":
            for e in range(self.num_experts):
                pos, tok = torch.where((index == e).T)  # [k, T] -> slot, token
                if tok.numel() == 0:
                    continue
                y = self.expert_forward(e, hidden_states[tok]) * weights[tok, pos, None]
                out.index_add_(0, tok, y.to(out.dtype))
        else:
            mask = index.reshape(hidden_states.shape[0], -1)  # [T, E] one-hot (capacity-dropped rows are 0)
            for e in range(self.num_experts):
                tok = torch.nonzero(mask[:, e], as_tuple=False).flatten()
                if tok.numel() == 0:
                    continue
                y = self.expert_forward(e, hidden_states[tok]) * weights.reshape(-1, 1)[tok]
                out.index_add_(0, tok, y.to(out.dtype))
        return out


class LegacyMixtralExpert(nn.Module):
    """One transformers-v4 Mixtral expert: ``w2(act(w1 x) * w3 x)`` with three ``nn.Linear``."""

    def __init__(self, hidden: int, ffn: int, act: str = "silu"):
        super().__init__()
        self.w1 = nn.Linear(hidden, ffn, bias=False)
        self.w2 = nn.Linear(ffn, hidden, bias=False)
        self.w3 = nn.Linear(hidden, ffn, bias=False)
        self.act_fn = _activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.act_fn(self.w1(x)) * self.w3(x))


class LegacyMixtralSparseMoeBlock(nn.Module):
    """The v4 layout (``gate`` nn.Linear, ``experts`` ModuleList of w1/w2/w3) that AutoGPTQ, AutoAWQ and
    the authors' code assume; same routing as v5 (softmax, top-k, renormalise)."""

    def __init__(self, hidden: int, ffn: int, num_experts: int, top_k: int, act: str = "silu"):
        super().__init__()
        self.num_experts, self.top_k = num_experts, top_k
        self.gate = nn.Linear(hidden, num_experts, bias=False)
        self.experts = nn.ModuleList(LegacyMixtralExpert(hidden, ffn, act) for _ in range(num_experts))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        b, t, d = hidden_states.shape
        x = hidden_states.reshape(-1, d)
        probs = F.softmax(self.gate(x).float(), dim=-1)
        top_w, top_i = torch.topk(probs, self.top_k, dim=-1)
        top_w = (top_w / top_w.sum(dim=-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(x)
        for e in range(self.num_experts):
            pos, tok = torch.where((top_i == e).T)
            if tok.numel() == 0:
                continue
            out.index_add_(0, tok, (self.experts[e](x[tok]) * top_w[tok, pos, None]).to(out.dtype))
        return out.reshape(b, t, d)


def to_legacy_layout(model: nn.Module) -> nn.Module:
    """Convert every v5 fused ``MixtralSparseMoeBlock`` of ``model`` into the v4 ModuleList layout
    in place (same weights; used to check that both layouts give the same allocation and codes)."""
    for name, mod in list(model.named_modules()):
        experts = getattr(mod, "experts", None)
        if experts is None or not hasattr(experts, "gate_up_proj"):
            continue
        E, two_f, d = experts.gate_up_proj.shape
        f = two_f // 2
        act = getattr(getattr(model, "config", None), "hidden_act", "silu")
        new = LegacyMixtralSparseMoeBlock(d, f, E, mod.top_k, act)
        with torch.no_grad():
            new.gate.weight.copy_(mod.gate.weight)
            for e in range(E):
                new.experts[e].w1.weight.copy_(experts.gate_up_proj[e, :f])
                new.experts[e].w3.weight.copy_(experts.gate_up_proj[e, f:])
                new.experts[e].w2.weight.copy_(experts.down_proj[e])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model
