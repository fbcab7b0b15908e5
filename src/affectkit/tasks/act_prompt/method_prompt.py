"""The prompts: Activation Prompt (AP), input-level Visual Prompt (VP, pad / expansive), VPT-shallow, ILM-VP's
label mapping, and the classifier that puts a backbone, a prompt and a head together. No I/O here.

AP (Zhang et al., AISTATS 2026): with the backbone ``f = h o g_L o ... o g_1`` frozen, a universal tensor
``delta`` is added to the activation at layer l: ``z_l = g_l(z_{l-1}) + delta``. Layer conventions are the
Backbone's: 0 = the input image, k = 1..L = the output of block k (placement "block"), or the output of
block k's norm module ``Backbone.block_norm(k)`` (placement "norm"). ``delta`` broadcasts over the
activation (batch dimension left out):

    shape     CNN / layer 0 ([C, H, W])   ViT ([N, D], N = CLS + patches)
    full      [C, H, W]                   [N, D]
    channel   [C, 1, 1]                   [1, D]      (= a shift of the norm's bias with placement "norm")
    spatial   [1, H, W]                   [N, 1]      (for a ViT spatial and tokens are the same)
    tokens    UsageError                  [N, 1]

Layers before the prompt build no autograd graph: the backbone's parameters have ``requires_grad`` False
(``baselines.prepare``) and the input needs no grad, so nothing upstream requires grad and the graph
starts at ``activation + delta``. A deep AP therefore backpropagates through the layers after it only,
without an explicit ``torch.no_grad()`` prefix.

VP (Bahng et al. 2022) is AP at layer 0 with a border mask: ``x + delta * mask`` on the normalised image
(mode "pad"). Mode "expansive" follows ILM-VP (Chen et al., CVPR 2023): the image, un-normalised to [0, 1]
with ``mean``/``std``, is resized to S - 2p and zero-padded to S; ``sigmoid(delta)`` fills the border
(so a zero init is a grey border) and the result is normalised again.
"""

from __future__ import annotations

import difflib
import math

import torch
import torch.nn.functional as F
from torch import nn

from affectkit.core.errors import UsageError
from affectkit.tasks.act_prompt.backbone import Backbone, first_tensor

SHAPES = ("full", "channel", "spatial", "tokens")
PLACEMENTS = ("block", "norm")
INITS = ("zero", "normal")
VP_MODES = ("pad", "expansive")


def _choice(what: str, value: str, options: tuple[str, ...]) -> str:
    if value not in options:
        close = difflib.get_close_matches(str(value), options, n=1)
        raise UsageError(f"unknown {what} {value!r}; expected one of {', '.join(options)}",
                         f"did you mean {close[0]!r}?" if close else None)
    return value


def _initial(shape: tuple[int, ...], init: str, init_std: float) -> torch.Tensor:
    if _choice("init", init, INITS) == "zero":
        return torch.zeros(shape)
    return torch.randn(shape) * init_std


def delta_shape(activation: tuple[int, ...], shape: str, tokens_layout: bool) -> tuple[int, ...]:
    """The prompt's shape for an activation of shape ``activation`` (no batch dim); ``tokens_layout``
    means [N, D] (a ViT block), otherwise [C, H, W]."""
    _choice("prompt shape", shape, SHAPES)
    if tokens_layout:
        n, d = activation
        return {"full": (n, d), "channel": (1, d), "spatial": (n, 1), "tokens": (n, 1)}[shape]
    if shape == "tokens":
        raise UsageError("prompt shape 'tokens' needs a ViT block; use full, channel or spatial here")
    c, h, w = activation
    return {"full": (c, h, w), "channel": (c, 1, 1), "spatial": (1, h, w)}[shape]


def border_mask(image_size: int, pad: int) -> torch.Tensor:
    """[1, S, S]: 1 on the border of width ``pad``, 0 inside (the VP pad prompt's support)."""
    if not 0 < 2 * pad < image_size:
        raise UsageError(f"pad width {pad} does not fit a {image_size}px image (need 0 < 2 * pad < {image_size})")
    mask = torch.ones(1, image_size, image_size)
    mask[:, pad:image_size - pad, pad:image_size - pad] = 0
    return mask


def _add(output, prompt: torch.Tensor):
    """``output + prompt``; for tuple outputs the prompt goes to element 0."""
    if isinstance(output, (tuple, list)):
        return type(output)([output[0] + prompt.to(output[0].dtype), *output[1:]])
    return output + prompt.to(output.dtype)


class ActivationPrompt(nn.Module):
    """AP: a learnable ``delta`` added at one layer of a (frozen) backbone through a forward hook.

    ``mask`` (optional, broadcastable to ``delta``'s shape) zeroes entries of the prompt; at layer 0 a
    ``border_mask(S, p)`` makes AP identical to ``VisualPrompt(S, p)``. The backbone is referenced, not
    registered, so ``parameters()`` and ``state_dict()`` hold the prompt only.
    """

    def __init__(self, backbone: Backbone, layer: int, shape: str = "full", placement: str = "block",
                 init: str = "zero", mask: torch.Tensor | None = None, image_size: int | None = None,
                 init_std: float = 0.02):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)
        self.layer = backbone.check_layer(layer)
        self.shape = shape
        self.placement = _choice("placement", placement, PLACEMENTS)
        image_size = image_size or backbone.image_size
        if self.layer == 0:
            if placement == "norm":
                raise UsageError("placement 'norm' needs a layer from 1; layer 0 is the input image")
            activation, tokens_layout = (backbone.num_channels, image_size, image_size), False
        else:
            (activation,) = backbone.output_shapes([self.target], image_size)
            tokens_layout = backbone.kind == "vit"
        self.activation_shape = activation
        self.delta = nn.Parameter(_initial(delta_shape(activation, shape, tokens_layout), init, init_std))
        self.register_buffer("mask", self._checked_mask(mask), persistent=False)
        self._handle = None

    @property
    def target(self) -> nn.Module:
        """The module the hook is on: the input module (layer 0), block k, or block k's norm."""
        if self.layer == 0:
            return self.backbone.input_module
        if self.placement == "norm":
            return self.backbone.block_norm(self.layer)
        return self.backbone.blocks[self.layer - 1]

    def _checked_mask(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        if mask is None:
            return None
        mask = torch.as_tensor(mask, dtype=self.delta.dtype)
        try:
            fits = torch.broadcast_shapes(mask.shape, self.delta.shape) == self.delta.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise UsageError(f"mask of shape {list(mask.shape)} does not broadcast to the prompt's "
                             f"{list(self.delta.shape)}")
        return mask

    @property
    def num_trainable(self) -> int:
        """Entries of ``delta`` that can change the output (masked entries excluded)."""
        if self.mask is None:
            return self.delta.numel()
        return int((self.mask.expand(self.delta.shape) != 0).sum())

    def prompt(self) -> torch.Tensor:
        return self.delta if self.mask is None else self.delta * self.mask

    def _add_to_output(self, _module, _args, output):
        return _add(output, self.prompt())

    def _add_to_input(self, _module, args, kwargs):
        if args:
            return (_add(args[0], self.prompt()), *args[1:]), kwargs
        key = "pixel_values" if "pixel_values" in kwargs else next(iter(kwargs))
        return args, {**kwargs, key: _add(kwargs[key], self.prompt())}

    def attach(self) -> ActivationPrompt:
        if self._handle is None:
            if self.layer == 0:
                self._handle = self.target.register_forward_pre_hook(self._add_to_input, with_kwargs=True)
            else:
                self._handle = self.target.register_forward_hook(self._add_to_output)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> ActivationPrompt:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def extra_repr(self) -> str:
        return f"layer={self.layer}, shape={self.shape}, placement={self.placement}, delta={list(self.delta.shape)}"


class VisualPrompt(nn.Module):
    """VP: an additive border prompt of width ``pad`` on the (normalised) input image; see the module
    docstring for "pad" and "expansive" (ILM-VP). ``forward(pixel_values) -> prompted pixel_values``."""

    def __init__(self, image_size: int, pad: int, mode: str = "pad", init: str = "zero",
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 channels: int = 3, init_std: float = 0.02):
        super().__init__()
        self.image_size, self.pad = int(image_size), int(pad)
        self.mode = _choice("visual prompt mode", mode, VP_MODES)
        self.delta = nn.Parameter(_initial((channels, image_size, image_size), init, init_std))
        self.register_buffer("mask", border_mask(image_size, pad), persistent=False)
        self.register_buffer("mean", torch.tensor(mean or [0.0] * channels).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std or [1.0] * channels).view(-1, 1, 1), persistent=False)

    @property
    def num_trainable(self) -> int:
        return int(self.mask.sum()) * self.delta.shape[0]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.mode == "pad":
            if tuple(pixel_values.shape[-2:]) != (self.image_size, self.image_size):
                raise UsageError(f"the visual prompt is for {self.image_size}px images, got "
                                 f"{pixel_values.shape[-2]}x{pixel_values.shape[-1]}")
            return pixel_values + self.delta * self.mask
        inner = self.image_size - 2 * self.pad
        pixels = pixel_values * self.std + self.mean
        pixels = F.interpolate(pixels, size=(inner, inner), mode="bilinear", align_corners=False)
        pixels = F.pad(pixels, (self.pad,) * 4) + torch.sigmoid(self.delta) * self.mask
        return (pixels - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, pad={self.pad}, mode={self.mode}"


class VPTShallow(nn.Module):
    """VPT-shallow (Jia et al. 2022): ``num_tokens`` learnable tokens inserted after the CLS token and
    before the patches, once, right after the ViT embeddings (a forward hook). Blocks then see N + n
    tokens; the CLS feature keeps its shape [B, D]. ``init`` "xavier" is VPT's uniform init."""

    def __init__(self, backbone: Backbone, num_tokens: int, init: str = "xavier", init_std: float = 0.02):
        super().__init__()
        object.__setattr__(self, "backbone", backbone)
        module = backbone.embeddings_module  # UsageError for a CNN
        if not isinstance(num_tokens, int) or num_tokens < 1:
            raise UsageError(f"VPT needs at least one prompt token, got {num_tokens}")
        d = backbone.feature_dim
        if init == "xavier":
            bound = math.sqrt(6.0 / (_patch_fan_in(backbone) + d))
            tokens = torch.empty(num_tokens, d).uniform_(-bound, bound)
        else:
            tokens = _initial((num_tokens, d), init, init_std)
        self.tokens = nn.Parameter(tokens)
        object.__setattr__(self, "_module", module)  # referenced, not registered
        self._handle = None

    @property
    def num_trainable(self) -> int:
        return self.tokens.numel()

    def _insert(self, _module, _args, output):
        x = first_tensor(output)
        prompts = self.tokens.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        x = torch.cat([x[:, :1], prompts, x[:, 1:]], dim=1)
        return type(output)([x, *output[1:]]) if isinstance(output, (tuple, list)) else x

    def attach(self) -> VPTShallow:
        if self._handle is None:
            self._handle = self._module.register_forward_hook(self._insert)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> VPTShallow:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()


def _patch_fan_in(backbone: Backbone) -> int:
    conv = next(m for m in backbone.input_module.modules() if isinstance(m, nn.Conv2d))
    return conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]


# -- ILM-VP's label mapping ----------------------------------------------------------------------------
def frequency_matrix(source_logits: torch.Tensor, labels: torch.Tensor, num_target: int) -> torch.Tensor:
    """[S, T] counts of (predicted source class, true target class) over a data set."""
    predictions = source_logits.argmax(dim=1).long().cpu()
    labels = labels.long().cpu()
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_target:
        raise UsageError(f"target labels must lie in 0..{num_target - 1}, got {int(labels.min())}..{int(labels.max())}")
    freq = torch.zeros(source_logits.shape[1], num_target, dtype=torch.long)
    freq.index_put_((predictions, labels), torch.ones_like(labels), accumulate=True)
    return freq


def greedy_one_to_one(freq: torch.Tensor) -> torch.Tensor:
    """ILM-VP's greedy assignment: take the largest (source, target) count, retire its row and column,
    repeat for every target class. Returns [T]: the source class of each target (ties: first in order)."""
    freq = freq.clone().long()
    num_target = freq.shape[1]
    mapping = torch.empty(num_target, dtype=torch.long)
    for _ in range(num_target):
        source, target = divmod(int(freq.argmax()), num_target)
        mapping[target] = source
        freq[source, :] = -1
        freq[:, target] = -1
    return mapping


class LabelMapping(nn.Module):
    """Maps source-head logits [B, S] to target logits [B, T] by picking one source class per target;
    ``update`` recomputes the mapping by frequency (ILM-VP, called by the trainer every epoch)."""

    def __init__(self, num_source: int, num_target: int):
        super().__init__()
        if num_target > num_source:
            raise UsageError(f"label mapping needs at least as many source classes ({num_source}) "
                             f"as target classes ({num_target})", "use a linear head instead")
        self.num_source, self.num_target = num_source, num_target
        self.register_buffer("mapping", torch.arange(num_target))

    @torch.no_grad()
    def update(self, source_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if source_logits.shape[1] != self.num_source:
            raise UsageError(f"expected {self.num_source} source logits, got {source_logits.shape[1]}")
        mapping = greedy_one_to_one(frequency_matrix(source_logits, labels, self.num_target))
        self.mapping.copy_(mapping.to(self.mapping.device))
        return self.mapping

    def forward(self, source_logits: torch.Tensor) -> torch.Tensor:
        return source_logits.index_select(-1, self.mapping)


# -- heads and the assembled classifier ----------------------------------------------------------------
def linear_head(feature_dim: int, num_classes: int) -> nn.Linear:
    """The new classification head of linear probing and AP/VP/VPT with a head."""
    return nn.Linear(feature_dim, num_classes)


def mapped_source_head(backbone: Backbone, num_target: int) -> nn.Sequential:
    """The pretrained source head followed by a LabelMapping (VP's output without a new head)."""
    if backbone.source_head is None:
        raise UsageError("label mapping needs the pretrained classifier; this backbone has none",
                         "load a *ForImageClassification checkpoint, or use a linear head")
    return nn.Sequential(backbone.source_head, LabelMapping(backbone.source_head.out_features, num_target))


class PromptedClassifier(nn.Module):
    """``head(backbone(x))`` with an optional prompt: a VisualPrompt transforms the input, an
    ActivationPrompt / VPTShallow is attached to the backbone here (and stays attached)."""

    def __init__(self, backbone: Backbone, head: nn.Module, prompt: nn.Module | None = None):
        super().__init__()
        self.backbone, self.head, self.prompt = backbone, head, prompt
        if prompt is not None and hasattr(prompt, "attach"):
            prompt.attach()

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if isinstance(self.prompt, VisualPrompt):
            pixel_values = self.prompt(pixel_values)
        return self.backbone(pixel_values)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixel_values))
