"""The embedded backbones' pretraining: the tiny ResNet or ViT trained with a linear head on the embedded
source task (10 shape x pattern classes), standing in for an ImageNet checkpoint.

Adaptation methods are compared on what a pretrained model carries over; a randomly initialised backbone
would compare optimisers instead (it is kept as the control: ``backbone.pretrained=false``). The result is
saved with ``save_backbone`` (a transformers ``*ForImageClassification`` directory with the source head,
so ILM-VP's label mapping can use it) in the task's cache, keyed by a hash of the settings and the
generator's data version, and loaded through the same path as a user's local model directory."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from affectkit.core.cache import materialize, task_cache
from affectkit.core.output import get_output

DIRNAME = "pretrained-backbones"
BATCH = 64
LR = 2e-3
PHASE = "pretraining the embedded {arch} on the source task"


def settings_key(arch: str, steps: int, seed: int, data_version: int, image_size: int, quick: bool = False) -> str:
    text = json.dumps({"arch": arch, "steps": steps, "seed": seed, "data": data_version, "size": image_size,
                       "batch": BATCH, "lr": LR, **({"quick": True} if quick else {})}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def pretrain(out: Path, arch: str, source_dir: Path, steps: int, seed: int, image_size: int,
             mean: list[float], std: list[float]) -> dict[str, Any]:
    """Train ``arch`` with a linear head on ``source_dir``'s train split; save backbone + head in ``out``."""
    import torch

    from affectkit.tasks.act_prompt.backbone import build_backbone, save_backbone
    from affectkit.tasks.act_prompt.data import ImageDataset, collate, read_split

    output = get_output()
    torch.manual_seed(seed)
    train = read_split(source_dir, "train")
    test = read_split(source_dir, "test", classes=train.classes)
    data = ImageDataset(train, image_size, mean, std)
    backbone = build_backbone(arch, image_size=image_size)
    head = torch.nn.Linear(backbone.feature_dim, len(train.classes))
    params = [*backbone.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    backbone.train()
    with output.progress(PHASE.format(arch=arch), total=steps) as bar:
        for _ in range(steps):
            idx = torch.randint(len(data), (BATCH,), generator=gen).tolist()
            batch = collate([data[i] for i in idx])
            loss = torch.nn.functional.cross_entropy(head(backbone(batch["pixel_values"])), batch["labels"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.advance(status=f"loss {float(loss.detach()):.3f}")
    backbone.eval()
    test_data = ImageDataset(test, image_size, mean, std)
    correct = 0
    with torch.no_grad():
        for lo in range(0, len(test_data), 256):
            batch = collate([test_data[i] for i in range(lo, min(lo + 256, len(test_data)))])
            correct += int((head(backbone(batch["pixel_values"])).argmax(1) == batch["labels"]).sum())
    accuracy = correct / len(test_data)
    save_backbone(backbone, out, head=head, classes=train.classes)
    report = {"arch": arch, "steps": steps, "seed": seed, "source_test_accuracy": accuracy}
    (out / "pretraining.json").write_text(json.dumps(report, indent=1))
    output.log(f"pretrained {arch}: source test accuracy {accuracy:.3f}")
    return report


def pretrained_backbone_dir(arch: str, steps: int, image_size: int, mean: list[float], std: list[float],
                            seed: int = 0, quick: bool = False) -> Path:
    """The cached pretrained backbone directory (built on first use from the embedded source task; ``quick``:
    from the quick set's smaller source split, for the quick bench)."""
    from affectkit.core.cache import embedded_data
    from affectkit.tasks.act_prompt import TASK

    key = settings_key(arch, steps, seed, TASK.data_version, image_size, quick)
    final = task_cache(TASK.name) / DIRNAME / f"{arch}-{key}"
    if (final / "pretraining.json").is_file():
        return final
    source = embedded_data(TASK, seed, quick) / "source"
    materialize(final, lambda d: pretrain(d, arch, source, steps, seed, image_size, mean, std), replace=True)
    return final
