"""``affectkit predict act-prompt --run RUN IMAGE_OR_DIR``: the run's classifier on one image or every image
under a folder (recursively, sorted): one row per image with the top class, its probability and the top-k.
In a folder, an image that does not decode is skipped with a warning naming it; a single image that does
not decode is an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError
from affectkit.core.output import get_output

BATCH = 64


def image_paths(target: Path) -> list[Path]:
    from affectkit.tasks.act_prompt.data import IMAGE_SUFFIXES

    if not target.exists():
        raise DataError(target, "not found", "pass an image file or a folder of images")
    if target.is_file():
        return [target]
    found = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not found:
        raise DataError(target, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return found


def run_classes(run_path: Path) -> list[str]:
    from affectkit.core.runs import read_json
    from affectkit.tasks.act_prompt.adapter import read_info

    if (run_path / "adapter").is_dir():
        return list(read_info(run_path / "adapter")["classes"])
    results = run_path / "results.json"
    if results.is_file() and "classes" in (saved := read_json(results)):
        return list(saved["classes"])
    raise DataError(run_path, "the run has no class list (adapter/adapter.json)", "train it to the end first")


def predict_images(request: Any) -> dict[str, Any]:
    import torch

    from affectkit.core.loop import load_weights
    from affectkit.core.runs import RunDir
    from affectkit.tasks.act_prompt.config import ActPromptConfig
    from affectkit.tasks.act_prompt.data import ImageDataset, ImageTable
    from affectkit.tasks.act_prompt.train import build_classifier

    run = RunDir.existing(request.run)
    cfg = run.load_config(ActPromptConfig)
    if cfg.method == "ap" and str(cfg.layer) == "auto":
        raise UsageError(f"{run.config_path}: layer is still auto (the run never finished its sweep)")
    weights = run.weights(request.checkpoint)
    paths = image_paths(Path(request.input))
    classes = run_classes(run.path)
    top_k = min(int(getattr(request.options, "top_k", None) or 3), len(classes))
    model = load_weights(build_classifier(cfg, len(classes)), weights).eval()
    table = ImageTable(list(paths), np.zeros(len(paths), dtype=np.int64), classes, Path(request.input),
                       [str(p) for p in paths])
    images = ImageDataset(table, cfg.data.image_size, cfg.data.mean, cfg.data.std, cache=False)
    output = get_output()
    skipped: list[str] = []

    def pixels(i: int) -> Any:
        try:
            return images[i]["pixel_values"]
        except DataError as exc:
            if len(paths) == 1:
                raise
            output.warn(str(exc))
            skipped.append(str(paths[i]))
            return None

    def rows() -> Any:
        for lo in range(0, len(paths), BATCH):
            chunk = [(paths[i], pixels(i)) for i in range(lo, min(lo + BATCH, len(paths)))]
            chunk = [(p, x) for p, x in chunk if x is not None]
            if not chunk:
                continue
            with torch.no_grad():
                probs = torch.softmax(model(torch.stack([x for _, x in chunk])), dim=1)
            values, indices = probs.topk(top_k, dim=1)
            for (path, _), v, i in zip(chunk, values.tolist(), indices.tolist(), strict=True):
                yield {"path": str(path), "label": classes[i[0]], "probability": round(v[0], 6),
                       "top": ";".join(f"{classes[c]}:{p:.4f}" for c, p in zip(i, v, strict=True))}

    def finish() -> dict[str, Any]:
        return {"images": len(paths) - len(skipped), "skipped": skipped,
                "message": f"act-prompt: classified {len(paths) - len(skipped)} images"
                           + (f", skipped {len(skipped)} unreadable" if skipped else "")}

    return {"rows": rows(), "finish": finish, "row_event": "image", "method": cfg.method,
            "checkpoint": weights.parent.name, "classes": classes}
