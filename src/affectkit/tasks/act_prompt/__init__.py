"""Task ``act-prompt``: Activation Prompts (AP; Zhang et al., "Visual Prompting Reimagined: The Power of
Activation Prompts", AISTATS 2026, arXiv 2604.06440). A universal learnable perturbation is added to the
activation map of one intermediate layer of a frozen pretrained image model; input-level visual prompting
(VP) is the special case of layer 0, and a channel-wise AP placed right after a norm layer equals tuning that
norm's bias. ``backbone`` wraps transformers ResNet / ViT (and timm) behind one hook-based interface,
``method_prompt`` holds AP, VP (pad / expansive), VPT-shallow and ILM-VP's label mapping, ``baselines`` sets
up linear probing, norm tuning, LoRA and full fine-tuning on the same backbone; ``data`` reads ImageFolder
trees, CSV lists and Hugging Face datasets (save_to_disk folders, parquet), ``synth`` writes the embedded
benchmark (a procedural source task for pretraining, and shifted downstream tasks including scikit-learn's
digits) as ImageFolder PNGs; ``recipe`` trains (with the ``layer=auto`` sweep of ``sweep``), evaluates and
predicts; every run reports accuracy and the method's costs (``costs``) and saves its ``adapter``."""

from __future__ import annotations

from dataclasses import dataclass

from affectkit.core.task import RecipeTask, flag, lazy
from affectkit.tasks.act_prompt.config import METRICS, ActPromptConfig


@dataclass
class TrainOptions:
    compare: str | None = flag("--compare", "train several methods (comma list, or all), one sub-run each under\n"
                               "--out, and write the comparison table and plot")


@dataclass
class EvaluateOptions:
    split: str | None = flag("--split", "split to score [default: data.test_split if present, else the eval split]")


@dataclass
class PredictOptions:
    top_k: int | None = flag("--top-k", "classes listed per image [default: 3]")


class ActPromptTask(RecipeTask):
    name = "act-prompt"
    summary = "Activation prompts vs visual prompts and PEFT on a frozen vision backbone (accuracy and costs)"
    verbs = ("data", "train", "evaluate", "predict", "bench")
    Config = ActPromptConfig
    TrainOptions = TrainOptions
    EvaluateOptions = EvaluateOptions
    PredictOptions = PredictOptions
    max_steps_key = "train.max_steps"
    data_version = 1  # bump when synth.py's output changes (the cache keys data and pretrained weights by it)
    metrics = METRICS

    make_data = lazy("affectkit.tasks.act_prompt.synth:make")
    train = lazy("affectkit.tasks.act_prompt.recipe:train_run")
    evaluate = lazy("affectkit.tasks.act_prompt.recipe:evaluate_request")
    predict = lazy("affectkit.tasks.act_prompt.predict:predict_images")
    bench = lazy("affectkit.tasks.act_prompt.bench:run_bench", with_task=True)


TASK = ActPromptTask()
