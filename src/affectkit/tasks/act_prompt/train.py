"""act-prompt on the shared loop: one trainer for every adaptation method. The backbone (a local model
directory, timm, or the embedded one pretrained on the source task) is frozen, then ``baselines.prepare``
unfreezes what the method tunes; AP, VP and VPT add their prompt module; a new linear head (or the
source head with ILM-VP's label mapping) classifies. Cross-entropy; evaluation is top-1 accuracy.

Learning rates: ``train.lr`` for the prompt or the tuned backbone weights, ``head_lr`` for the head
(spec 2.3: prompt Adam 1e-2, head 1e-3). The backbone's mode follows the method (``baselines.train_mode``):
frozen-backbone methods run it in eval mode, so BatchNorm statistics never move."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import UsageError
from affectkit.core.task import DataBundle, LoopTask, MetricSpec
from affectkit.tasks.act_prompt.config import METRICS
from affectkit.tasks.act_prompt.method_prompt import PromptedClassifier

MAPPING_IMAGES = 1024  # training images whose source logits refresh ILM-VP's label mapping each epoch


def dataset_root(cfg: Any, data_dir: Path) -> Path:
    return Path(data_dir) / cfg.data.task if cfg.data.task else Path(data_dir)


def tables(cfg: Any, data_dir: Path, split: str) -> tuple[Any, Any]:
    """(train table, ``split`` table with the train split's class numbering)."""
    from affectkit.tasks.act_prompt.data import read_split

    root = dataset_root(cfg, data_dir)
    train = read_split(root, cfg.data.train_split)
    return train, read_split(root, split, classes=train.classes)


def parse_layer(value: str, num_layers: int) -> int:
    """A fixed AP layer (0..L) from the config's ``layer``; ``auto`` is resolved by the sweep first."""
    if str(value) == "auto":
        raise UsageError("layer=auto must be resolved by the validation sweep before building the model")
    try:
        layer = int(value)
    except ValueError:
        raise UsageError(f"layer: expected auto or an integer 0..{num_layers}, got {value!r}") from None
    if not 0 <= layer <= num_layers:
        raise UsageError(f"layer {layer} is out of range 0..{num_layers} (0 = the input, K = after block K)")
    return layer


def load_configured_backbone(cfg: Any) -> Any:
    """The backbone the config names: a local model directory / timm, or the embedded tiny one."""
    from affectkit.tasks.act_prompt.backbone import build_backbone, load_backbone

    bc = cfg.backbone
    if bc.path:
        return load_backbone(bc.path, image_size=cfg.data.image_size, checkpoint_path=bc.checkpoint or None)
    if not bc.pretrained:
        return build_backbone(bc.arch, image_size=cfg.data.image_size)
    from affectkit.tasks.act_prompt.pretrain import pretrained_backbone_dir

    path = pretrained_backbone_dir(bc.arch, bc.source_steps, cfg.data.image_size, cfg.data.mean, cfg.data.std)
    return load_backbone(path, image_size=cfg.data.image_size)


def build_classifier(cfg: Any, num_classes: int, backbone: Any = None) -> Any:
    """Backbone (frozen but for what the method tunes) + prompt + head, as a PromptedClassifier."""
    from affectkit.tasks.act_prompt.baselines import prepare
    from affectkit.tasks.act_prompt.method_prompt import (
        ActivationPrompt,
        VisualPrompt,
        VPTShallow,
        linear_head,
        mapped_source_head,
    )

    backbone = backbone if backbone is not None else load_configured_backbone(cfg)
    options = {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "dropout": cfg.lora.dropout} if cfg.method == "lora" else {}
    prepare(backbone, cfg.method, **options)
    pc = cfg.prompt
    prompt = None
    if cfg.method == "ap":
        layer = parse_layer(cfg.layer, backbone.num_layers)
        prompt = ActivationPrompt(backbone, layer, shape=pc.shape, placement=pc.placement, init=pc.init)
    elif cfg.method == "vp":
        prompt = VisualPrompt(cfg.data.image_size, pc.vp_pad, mode=pc.vp_mode, init=pc.init, mean=cfg.data.mean,
                              std=cfg.data.std)
    elif cfg.method == "vpt":
        prompt = VPTShallow(backbone, pc.vpt_tokens)
    head = mapped_source_head(backbone, num_classes) if pc.head == "mapping" else linear_head(backbone.feature_dim,
                                                                                            num_classes)
    return MethodClassifier(cfg.method, backbone, head, prompt)


class MethodClassifier(PromptedClassifier):
    """A PromptedClassifier whose ``train()`` puts the backbone in the method's mode (frozen backbones stay
    in eval mode: no BatchNorm statistics move, no dropout in a frozen model)."""

    def __init__(self, method: str, backbone: Any, head: Any, prompt: Any = None):
        super().__init__(backbone, head, prompt)
        self.method = method

    def train(self, mode: bool = True) -> Any:
        from affectkit.tasks.act_prompt.baselines import train_mode

        super().train(mode)
        if mode:
            train_mode(self.backbone, self.method)
        return self


def parameter_groups(model: Any, cfg: Any) -> list[dict[str, Any]]:
    """The head at ``head_lr``; everything else that trains (prompt, tuned weights) at ``train.lr``."""
    head = {id(p) for p in model.head.parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in head]
    groups = [{"params": [p for p in model.head.parameters() if p.requires_grad], "lr": cfg.head_lr}]
    if rest:
        groups.append({"params": rest, "lr": cfg.train.lr})
    return [g for g in groups if g["params"]]


class ActPromptLoop(LoopTask):
    """The shared loop's view of one adaptation run (the recipe fixes ``layer`` first)."""

    name = "act-prompt"
    summary = "act-prompt training"
    metrics: tuple[MetricSpec, ...] = METRICS

    def __init__(self, split: str | None = None):
        self.split = split
        self.classes: list[str] = []
        self.train_data: Any = None
        self.mapped_epoch = -1

    def build_data(self, cfg: Any, data_dir: Path) -> DataBundle:
        from affectkit.tasks.act_prompt.data import ImageDataset, collate

        train, held = tables(cfg, data_dir, self.split or cfg.data.eval_split)
        self.classes = list(train.classes)
        size, mean, std = cfg.data.image_size, cfg.data.mean, cfg.data.std
        self.train_data = ImageDataset(train, size, mean, std)
        return DataBundle(train=self.train_data, eval=ImageDataset(held, size, mean, std),
                          collate_fn=collate, info={"classes": self.classes, "train": len(train), "eval": len(held)})

    def build_model(self, cfg: Any) -> Any:
        if not self.classes:
            raise UsageError("build_data must run before build_model (the head needs the classes)")
        return build_classifier(cfg, len(self.classes))

    def configure_optimizer(self, model: Any, cfg: Any) -> Any:
        import torch

        return torch.optim.AdamW(parameter_groups(model, cfg), weight_decay=cfg.train.weight_decay)

    def before_step(self, model: Any, cfg: Any, step: int, epoch: int) -> None:
        """ILM-VP: refresh the label mapping from the prompted model's source logits at each epoch."""
        if cfg.prompt.head != "mapping" or epoch == self.mapped_epoch:
            return
        import torch

        from affectkit.tasks.act_prompt.data import collate

        self.mapped_epoch = epoch
        idx = np.random.default_rng([epoch, 11]).permutation(len(self.train_data))[:MAPPING_IMAGES]
        source_head, mapping = model.head[0], model.head[1]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            batch = collate([self.train_data[int(i)] for i in idx])
            mapping.update(source_head(model.features(batch["pixel_values"])), batch["labels"])
        model.train(was_training)

    def train_step(self, model: Any, batch: dict[str, Any], cfg: Any) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(model(batch["pixel_values"]), batch["labels"])

    def eval_step(self, model: Any, batch: dict[str, Any], cfg: Any) -> dict[str, Any]:
        return {"logits": model(batch["pixel_values"]), "labels": batch["labels"]}

    def evaluate(self, outputs: dict[str, np.ndarray], cfg: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        logits = torch.as_tensor(outputs["logits"], dtype=torch.float32)
        labels = torch.as_tensor(outputs["labels"], dtype=torch.long)
        return {"accuracy": float((logits.argmax(1) == labels).double().mean()),
                "loss": float(F.cross_entropy(logits, labels))}
