"""Configuration of task ``act-prompt``: the dataset, the frozen backbone, the adaptation method and its
prompt, and training. The paper's code is not public: every inferred choice (spec 2.3) is a key here.
``method`` and ``layer`` are top-level so that ``--set method=ap --set layer=auto`` reads as the issue
writes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from affectkit.core.config import TrainConfig, help_field
from affectkit.core.task import MetricSpec

METHODS = ("ap", "vp", "vpt", "linear", "norm", "lora", "full")
# the learning rate of what each method tunes besides the head, by family (prompts: the spec's 1e-2); the
# bench's, and --compare's
METHOD_LR = {"ap": 1e-2, "vp": 1e-2, "vpt": 1e-2, "norm": 1e-2, "lora": 1e-3, "full": 5e-4, "linear": 1e-3}
METRICS = (
    MetricSpec("accuracy", True, "top-1 accuracy on the evaluation split"),
    MetricSpec("loss", False, "cross-entropy on the evaluation split"),
)


@dataclass
class DataConfig:
    task: str = help_field("digits", "the dataset's folder under --data ('' = --data itself); the embedded\n"
                           "benchmark has source, digits, shapes-shift, textures")
    image_size: int = help_field(32, "images are resized to this square size", min=8)
    train_split: str = help_field("train", "split trained on")
    eval_split: str = help_field("val", "split that selects the best step (and the layer of layer=auto)")
    test_split: str = help_field("test", "split reported by evaluate ('' = the eval split)")
    mean: list[float] = help_field([0.5, 0.5, 0.5], "per-channel mean of the input normalisation")
    std: list[float] = help_field([0.5, 0.5, 0.5], "per-channel std of the input normalisation")


@dataclass
class BackboneConfig:
    arch: Literal["resnet", "vit"] = help_field("resnet", "the embedded backbone's architecture (tiny ResNet or ViT)")
    path: str = help_field("", "a local Hugging Face model directory, or timm:NAME (with checkpoint); '' = the\n"
                           "embedded tiny backbone")
    checkpoint: str = help_field("", "timm: the checkpoint file of timm:NAME")
    pretrained: bool = help_field(True, "embedded backbone: pretrained on the source task (cached); false = random\n"
                                  "initialisation (the control)")
    source_steps: int = help_field(1500, "embedded backbone: pretraining steps on the source task", min=1)


@dataclass
class PromptConfig:
    shape: Literal["full", "channel", "spatial", "tokens"] = help_field("full", "AP's shape: the whole activation,\n"
                                                                         "one value per channel, per position or per token")
    placement: Literal["block", "norm"] = help_field("block", "AP after block K, or after block K's last norm")
    init: Literal["zero", "normal"] = help_field("zero", "initial prompt")
    vp_pad: int = help_field(4, "VP: border width in pixels (the paper's 30 at 224 px scales to 4 at 32 px)", min=1)
    vp_mode: Literal["pad", "expansive"] = help_field("pad", "VP: prompt on the image border, or ILM-VP's shrink\n"
                                                      "and pad")
    vpt_tokens: int = help_field(8, "VPT-shallow: prompt tokens", min=1)
    head: Literal["linear", "mapping"] = help_field("linear", "a new linear head, or the source head with ILM-VP's\n"
                                                    "label mapping (needs a backbone saved with its head)")


@dataclass
class LoraConfig:
    r: int = help_field(8, "LoRA rank", min=1)
    alpha: float = help_field(16.0, "LoRA alpha", min=0.0)
    dropout: float = help_field(0.0, "LoRA dropout", min=0.0, max=1.0)


@dataclass
class SweepConfig:
    steps: int = help_field(150, "layer=auto: training steps per candidate layer", min=1)
    layers: list[int] = help_field([], "layer=auto: candidate layers ([] = every block, 1..L)")


def _train_defaults() -> TrainConfig:
    return TrainConfig(max_steps=600, batch_size=64, lr=1e-2, weight_decay=0.0, eval_every=100,
                       checkpoint_every=100, log_every=20)


@dataclass
class ActPromptConfig:
    method: Literal["ap", "vp", "vpt", "linear", "norm", "lora", "full"] = help_field(
        "ap", "adaptation: activation prompt, visual prompt, VPT-shallow, linear probe, norm tuning, LoRA,\n"
        "full fine-tuning")
    layer: str = help_field("auto", "AP's layer: 0 = the input, K = after block K, auto = a short validation sweep")
    head_lr: float = help_field(1e-3, "learning rate of the head (train.lr is the prompt's / the tuned weights')",
                                min=0.0)
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
