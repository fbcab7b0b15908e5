"""One hook-based adapter over the image backbones the prompts are attached to.

``Backbone`` wraps a transformers ``ResNetModel`` or ``ViTModel`` (or a timm ResNet / VisionTransformer
loaded from a local checkpoint) and exposes what every method in this task needs:

- ``blocks``: the prompt-able layers in forward order (ResNet: every ``encoder.stages[i].layers[j]``; ViT:
  every transformer layer); ``block_names`` are their module paths inside ``backbone.model``.
- Layer indices: 0 is the input image (pixel space, the place of input-level visual prompts) and
  k = 1..L is the output of block k, L = ``num_layers``.
- Shapes are given without the batch dimension: CNN activations are [C, H, W], ViT activations [N, D]
  with N = 1 (CLS) + patches; the input image is [3, S, S].
- ``forward(pixel_values [B, 3, S, S]) -> features [B, F]``: ResNet: global average pool of the last stage,
  flattened; ViT: the CLS token after the final LayerNorm. ``feature_dim`` = F.
- ``block_norm(k)``: the norm module that placement "norm" puts the prompt after, for block k. CNN: the
  last BatchNorm of the block's main branch (not the shortcut's), which is followed only by the residual
  add and ReLU, so a channel prompt there is exactly a shift of that BatchNorm's bias. ViT:
  ``layernorm_after`` (timm: ``norm2``), the last norm inside block k, feeding its MLP; a channel prompt
  there is exactly a shift of that LayerNorm's bias. Both are "the norm nearest the block's output".

Nothing here freezes or trains anything; ``baselines.prepare`` sets ``requires_grad`` per method.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from affectkit.components.hf import quiet_transformers
from affectkit.core.errors import DataError, UsageError, require_dir, require_file

TINY = {
    "resnet": dict(num_channels=3, embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                   layer_type="basic"),
    "vit": dict(image_size=32, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=6,
                num_attention_heads=4, intermediate_size=128),
}
ARCHS = tuple(TINY)
DEFAULT_RESNET_IMAGE_SIZE = 224
_SHORTCUT_NAMES = ("shortcut", "downsample")


def first_tensor(output):
    """The activation tensor of a module output: the output itself, or element 0 of a tuple/list."""
    return output[0] if isinstance(output, (tuple, list)) else output


class _ShapesRecorded(Exception):
    """Ends a dry run early, once every requested shape is known."""


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run with every submodule in eval mode, then restore each one's own training flag."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


class Backbone(nn.Module):
    """A frozen-or-not image encoder with indexed blocks; see the module docstring for conventions."""

    def __init__(self, model: nn.Module, arch: str, image_size: int, source: str = "transformers",
                 source_head: nn.Linear | None = None):
        super().__init__()
        self.model = model
        self.arch = arch
        self.kind = "cnn" if arch == "resnet" else "vit"
        self.source = source
        self.image_size = int(image_size)
        self.source_head = source_head
        self.blocks: list[nn.Module] = _find_blocks(model, arch, source)
        names = {id(m): name for name, m in model.named_modules()}
        self.block_names = [names[id(b)] for b in self.blocks]
        self.num_layers = len(self.blocks)
        self.num_channels = int(getattr(getattr(model, "config", None), "num_channels", 3))
        self.feature_dim = _feature_dim(model, arch, source)

    # -- the modules the prompts hook into -------------------------------------------------------------
    @property
    def input_module(self) -> nn.Module:
        """The first module, fed the pixel values as its first argument (layer 0 hooks its input)."""
        if self.source == "timm":
            return self.model.patch_embed if self.arch == "vit" else self.model.conv1
        return self.model.embeddings if self.arch == "vit" else self.model.embedder

    @property
    def embeddings_module(self) -> nn.Module:
        """ViT only: the module whose output is the token sequence [B, 1 + patches, D] entering block 1."""
        if self.kind != "vit":
            raise UsageError("token prompts need a ViT backbone; this one is a CNN", "use a ViT backbone")
        return self.model.norm_pre if self.source == "timm" else self.model.embeddings

    def check_layer(self, layer: int) -> int:
        """``layer`` as an int, or UsageError naming the valid range."""
        try:
            layer = operator.index(layer)
        except TypeError:
            raise UsageError(f"layer must be an integer in 0..{self.num_layers}, got {layer!r}") from None
        if not 0 <= layer <= self.num_layers:
            raise UsageError(f"layer {layer} is out of range 0..{self.num_layers} "
                             f"(0 = the input image, k = the output of block k of {self.num_layers})")
        return layer

    def block_norm(self, k: int) -> nn.Module:
        """The norm module placement "norm" adds the prompt after, for block k = 1..L (module docstring)."""
        if self.check_layer(k) == 0:
            raise UsageError("placement 'norm' needs a layer from 1; layer 0 is the input image")
        block = self.blocks[k - 1]
        if self.kind == "vit":
            return block.norm2 if self.source == "timm" else block.layernorm_after
        return _last_main_branch_batchnorm(block, self.block_names[k - 1])

    def norm_modules(self, kind: str = "all") -> list[tuple[str, nn.Module]]:
        """(name, module) of the BatchNorm / LayerNorm layers; ``kind`` in all | batchnorm | layernorm."""
        types = {"all": (nn.modules.batchnorm._BatchNorm, nn.LayerNorm),
                 "batchnorm": (nn.modules.batchnorm._BatchNorm,), "layernorm": (nn.LayerNorm,)}
        if kind not in types:
            raise UsageError(f"norm kind {kind!r} is not one of {', '.join(types)}")
        return [(n, m) for n, m in self.model.named_modules() if isinstance(m, types[kind])]

    # -- running ---------------------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.source == "timm":
            return self.model.forward_head(self.model.forward_features(pixel_values), pre_logits=True)
        out = self.model(pixel_values)
        if self.kind == "vit":
            return out.last_hidden_state[:, 0]
        return out.pooler_output.flatten(1)

    def dummy_input(self, image_size: int | None = None) -> torch.Tensor:
        s = image_size or self.image_size
        p = next(self.model.parameters())
        return torch.zeros(1, self.num_channels, s, s, device=p.device, dtype=p.dtype)

    def output_shapes(self, modules: Sequence[nn.Module], image_size: int | None = None) -> list[tuple[int, ...]]:
        """The output shape (no batch dim) of each of ``modules`` in one dry run on a zero image."""
        shapes: dict[int, tuple[int, ...]] = {}

        def recorder(i):
            def hook(_module, _args, output):
                shapes.setdefault(i, tuple(first_tensor(output).shape[1:]))
                if len(shapes) == len(modules):
                    raise _ShapesRecorded  # the rest of the forward pass is not needed
            return hook

        handles = [m.register_forward_hook(recorder(i)) for i, m in enumerate(modules)]
        try:
            with torch.no_grad(), eval_mode(self):
                self(self.dummy_input(image_size))
        except _ShapesRecorded:
            pass
        finally:
            for h in handles:
                h.remove()
        missing = [i for i in range(len(modules)) if i not in shapes]
        if missing:
            raise UsageError(f"modules {missing} did not run in the backbone's forward pass")
        return [shapes[i] for i in range(len(modules))]

    def activation_shapes(self, image_size: int | None = None) -> list[tuple[int, ...]]:
        """Shapes at layers 0..L: the input image, then each block's output."""
        s = image_size or self.image_size
        return [(self.num_channels, s, s), *self.output_shapes(self.blocks, s)]

    def freeze(self) -> Backbone:
        for p in self.parameters():
            p.requires_grad_(False)
        return self


# -- structure of each family --------------------------------------------------------------------------
def _find_blocks(model: nn.Module, arch: str, source: str) -> list[nn.Module]:
    if source == "timm":
        if arch == "vit":
            return list(model.blocks)
        return [b for i in range(1, 5) for b in getattr(model, f"layer{i}")]
    if arch == "resnet":
        return [layer for stage in model.encoder.stages for layer in stage.layers]
    layers = model.layers if hasattr(model, "layers") else model.encoder.layer  # transformers v5 / v4
    return list(layers)


def _feature_dim(model: nn.Module, arch: str, source: str) -> int:
    if source == "timm":
        return int(model.num_features)
    return int(model.config.hidden_size if arch == "vit" else model.config.hidden_sizes[-1])


def _last_main_branch_batchnorm(block: nn.Module, block_name: str) -> nn.Module:
    norms = [m for name, m in block.named_modules()
             if isinstance(m, nn.BatchNorm2d) and name.split(".")[0] not in _SHORTCUT_NAMES]
    if not norms:
        raise UsageError(f"block {block_name} has no BatchNorm: placement 'norm' needs one",
                         "use placement 'block'")
    return norms[-1]


# -- building, loading, saving -------------------------------------------------------------------------
def _config_classes(arch: str):
    """(config class, base model class, *ForImageClassification class) of ``arch``; imports transformers."""
    import transformers

    prefix = "ResNet" if arch == "resnet" else "ViT"
    return tuple(getattr(transformers, prefix + suffix) for suffix in ("Config", "Model", "ForImageClassification"))


def _check_arch(arch: str) -> str:
    if arch not in ARCHS:
        close = difflib.get_close_matches(str(arch), ARCHS, n=1)
        raise UsageError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}",
                         f"did you mean {close[0]!r}?" if close else None)
    return arch


def _check_config_keys(config_cls, keys) -> None:
    valid = [p for p in inspect.signature(config_cls.__init__).parameters if p not in ("self", "kwargs")]
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            raise UsageError(f"unknown {config_cls.__name__} option {key!r}",
                             f"did you mean {close[0]!r}?" if close else None)


def build_backbone(arch: str, image_size: int = 32, **overrides) -> Backbone:
    """A randomly initialised backbone from ``TINY[arch]`` updated by ``overrides`` (config keys)."""
    config_cls, model_cls, _ = _config_classes(_check_arch(arch))
    _check_config_keys(config_cls, overrides)
    options = {**TINY[arch], **overrides}
    if arch == "vit":
        options["image_size"] = image_size
        if image_size % options["patch_size"]:
            raise UsageError(f"image size {image_size} is not a multiple of the patch size {options['patch_size']}")
        model = model_cls(config_cls(**options), add_pooling_layer=False)
    else:
        model = model_cls(config_cls(**options))
        model.config.image_size = image_size  # saved with the config; ResNet itself is size-agnostic
    return Backbone(model, arch, image_size)


def _read_config(directory: Path) -> dict:
    path = require_file(directory / "config.json", "config.json of a transformers model")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise DataError(path, "expected a JSON object")
    return config


def load_backbone(path: str | Path, image_size: int | None = None,
                  checkpoint_path: str | Path | None = None) -> Backbone:
    """A backbone from a local transformers directory, or ``timm:<model_name>`` (+ ``checkpoint_path``).

    Any ``*ForImageClassification`` checkpoint is accepted: its base model becomes the backbone and its
    linear classifier ``source_head`` (used by label mapping). Nothing is downloaded.
    """
    if str(path).startswith("timm:"):
        return _load_timm(str(path)[len("timm:"):], image_size, checkpoint_path)
    directory = require_dir(path, "model directory")
    config = _read_config(directory)
    model_type = config.get("model_type")
    if model_type not in ARCHS:
        raise DataError(directory / "config.json", f"model_type {model_type!r} is not supported "
                        f"(expected one of {', '.join(ARCHS)})")
    _, model_cls, classifier_cls = _config_classes(model_type)
    quiet_transformers()
    with_head = any(str(a).endswith("ForImageClassification") for a in config.get("architectures") or [])
    try:
        if with_head:
            full = classifier_cls.from_pretrained(directory, local_files_only=True)
            model = full.vit if model_type == "vit" else full.resnet
            head = _linear_of(full.classifier)
        else:
            extra = {"add_pooling_layer": False} if model_type == "vit" else {}
            model, head = model_cls.from_pretrained(directory, local_files_only=True, **extra), None
    except Exception as e:  # missing or corrupt weights, mismatched shapes: whatever the loader raises
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(directory, f"could not load the weights: {first_line}") from None
    size = image_size or getattr(model.config, "image_size", None) or DEFAULT_RESNET_IMAGE_SIZE
    if isinstance(size, (list, tuple)):
        size = size[0]
    return Backbone(model, model_type, int(size), source_head=head)


def _linear_of(classifier: nn.Module) -> nn.Linear | None:
    if isinstance(classifier, nn.Linear):
        return classifier
    linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _load_timm(name: str, image_size: int | None, checkpoint_path: str | Path | None) -> Backbone:
    try:
        import timm
    except Exception:
        raise UsageError("timm is not installed", "pip install timm, or pass a transformers model directory") from None
    checkpoint = str(require_file(checkpoint_path, "timm checkpoint")) if checkpoint_path else ""
    try:
        model = timm.create_model(name, pretrained=False, checkpoint_path=checkpoint)
    except RuntimeError as e:
        where = checkpoint or name
        raise DataError(where, f"timm could not build {name!r}: {str(e).splitlines()[0]}") from None
    if hasattr(model, "blocks"):
        arch = "vit"
    elif all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        arch = "resnet"
    else:
        raise UsageError(f"timm model {name!r} is neither a VisionTransformer nor a ResNet")
    size = image_size or int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    return Backbone(model, arch, size, source="timm", source_head=_linear_of(model.get_classifier()))


def save_backbone(backbone: Backbone, directory: str | Path, head: nn.Linear | None = None,
                  classes: list[str] | None = None) -> Path:
    """``save_pretrained`` of the wrapped model (safetensors); with a head (or ``backbone.source_head``)
    as a ``*ForImageClassification`` checkpoint, so ``load_backbone`` gives the head back."""
    if backbone.source != "transformers":
        raise UsageError("save_backbone saves transformers backbones only; this one comes from timm")
    if any("lora_" in n for n, _ in backbone.model.named_parameters()):
        raise UsageError("save_backbone saves plain backbones; this one has LoRA adapters injected")
    directory = Path(directory)
    head = head if head is not None else backbone.source_head
    if head is None:
        backbone.model.save_pretrained(directory)
        return directory
    config = copy.deepcopy(backbone.model.config)
    config.num_labels = head.out_features
    if classes is not None:
        if len(classes) != head.out_features:
            raise UsageError(f"{len(classes)} class names for a head with {head.out_features} outputs")
        config.id2label = dict(enumerate(classes))
        config.label2id = {c: i for i, c in enumerate(classes)}
    _, _, classifier_cls = _config_classes(backbone.arch)
    full = classifier_cls(config)
    (full.vit if backbone.arch == "vit" else full.resnet).load_state_dict(backbone.model.state_dict())
    _linear_of(full.classifier).load_state_dict(head.state_dict())
    full.save_pretrained(directory)
    return directory
