"""The saved adapter of a run: what the method trained, apart from the frozen backbone.

``adapter.safetensors`` holds the trained tensors (AP / VP / VPT: the prompt and the head; linear: the
head; norm / LoRA: the tuned norm or LoRA weights and the head; full: every backbone weight and buffer and
the head; with a randomly initialised backbone, the control, the backbone too) and ``adapter.json`` says how to rebuild the model around them: the method, AP's layer, shape and
placement, the prompt's tensor shapes, the classes and the whole config (which names the backbone: a local
model directory, timm, or the embedded pretrained one). ``load_adapter`` rebuilds the backbone from the
config, attaches the method's modules and loads the tensors: the logits are those of the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError

WEIGHTS = "adapter.safetensors"
INFO = "adapter.json"


def trained_keys(model: Any, cfg: Any) -> list[str]:
    """State-dict keys of what ``cfg.method`` trained (persistent buffers of the prompt and head included);
    the whole backbone where it cannot be rebuilt from the config (a random initialisation)."""
    state = model.state_dict()
    keys = {name for name, p in model.named_parameters() if p.requires_grad}
    keys |= {k for k in state if not k.startswith("backbone.")}
    if cfg.method == "full" or not (cfg.backbone.path or cfg.backbone.pretrained):
        keys |= {k for k in state if k.startswith("backbone.")}
    return sorted(k for k in keys if k in state)


def save_adapter(directory: Path, model: Any, cfg: Any, classes: list[str]) -> Path:
    """Write ``adapter.safetensors`` and ``adapter.json`` into ``directory`` (atomically, as one folder)."""
    from safetensors.torch import save_file

    from affectkit.core.cache import materialize
    from affectkit.core.config import to_dict

    state = model.state_dict()
    tensors = {k: state[k].detach().cpu().contiguous() for k in trained_keys(model, cfg)}
    info = {"method": cfg.method, "classes": list(classes), "config": to_dict(cfg),
            "tensors": {k: list(v.shape) for k, v in tensors.items()},
            "trainable_params": int(sum(p.numel() for p in model.parameters() if p.requires_grad))}
    if cfg.method == "ap":
        info.update({"layer": int(cfg.layer), "shape": cfg.prompt.shape, "placement": cfg.prompt.placement,
                     "prompt_shape": list(model.prompt.delta.shape)})

    def write(staging: Path) -> None:
        save_file(tensors, str(staging / WEIGHTS), metadata={"method": cfg.method})
        (staging / INFO).write_text(json.dumps(info, indent=1))

    materialize(Path(directory), write, replace=True)
    return Path(directory)


def read_info(directory: Path) -> dict[str, Any]:
    path = Path(directory) / INFO
    if not path.is_file():
        raise DataError(path, "no adapter here", "pass the adapter folder of a finished act-prompt run")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc.msg}, line {exc.lineno})") from None


def load_adapter(directory: Path) -> tuple[Any, dict[str, Any]]:
    """(the classifier rebuilt around the saved tensors, in eval mode; adapter.json)."""
    from safetensors.torch import load_file

    from affectkit.core.config import from_dict
    from affectkit.tasks.act_prompt.config import ActPromptConfig
    from affectkit.tasks.act_prompt.train import build_classifier

    directory = Path(directory)
    info = read_info(directory)
    cfg = from_dict(ActPromptConfig, info["config"], source=str(directory / INFO))
    model = build_classifier(cfg, len(info["classes"]))
    tensors = load_file(str(directory / WEIGHTS))
    expected = set(trained_keys(model, cfg))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise DataError(directory / WEIGHTS, f"tensors do not match method {cfg.method!r}: missing {missing[:3]}, "
                        f"unexpected {extra[:3]}")
    model.load_state_dict(tensors, strict=False)
    return model.eval(), info
