"""act-prompt speed and memory: what each adaptation method costs to train and to run on the same frozen-or-not
backbone, as ratios to VP and to full fine-tuning (ratios are between numbers of the same run).

Backbones (random weights, ``backbone.pretrained=false``: speed and memory do not depend on the weights), each
built with ``backbone.build_backbone`` and passed to ``train.build_classifier(cfg, 10, backbone=...)``:

- the embedded tiny ResNet and tiny ViT (``backbone.TINY``, ViT patch 4) at 32 px, the embedded benchmark's size;
- full run only, a "real-size" setting per architecture that still runs in seconds on a CPU: a ResNet-18-shaped
  ResNet (embedding 64, hidden sizes 64/128/256/512, depths 2/2/2/2) and a ViT-Tiny-shaped ViT (hidden 192, 6
  layers, 3 heads, MLP 768, patch 8), both at 64 px.

Methods per backbone: ap at a middle block (K = L // 2) and at the last block (K = L), shape full, placement
block; vp (pad mode, border width 4 px per 32 px, the config's default scaled); vpt (ViT only, 8 tokens);
linear; norm; lora (r 8, the config's targets); full. Each method gets a fresh backbone (same seed), a linear
head for 10 classes, ``model.train()`` (frozen backbones stay in eval mode, as in the trainer) and
``torch.optim.AdamW(train.parameter_groups(model, cfg))``, on one random batch of 32 images (--quick: 16).

Per method, with one torch thread (``torch.set_num_threads(1)``):

1. peak RSS of --rss-steps training steps (forward, cross-entropy, backward, AdamW step; the first step creates
   AdamW's state) above the RSS before them, where the model's weights and the batch are already resident:
   the kernel's high-water mark (VmHWM) reset through /proc/self/clear_refs (else psutil sampling, else
   ru_maxrss; see benchmarks/peak_memory.py). Each backbone runs in its own spawned process (``in_process``:
   a fresh heap); within it the methods run one after another, the previous method's model freed and the
   heap trimmed (malloc_trim) before each measurement, after one unmeasured warm-up step of full fine-tuning
   that absorbs one-time allocations. A process per method would cost ~6 s of imports each (transformers),
   too slow for the time budget.
2. ``costs.cost_report``: trainable parameters; training memory = activation MB (bytes autograd saves for
   backward in one training forward) + state MB (weights, gradients and AdamW moments of the trainable
   parameters, 4 x float32); train step time (median of --repeats steps after one warm-up, forward + backward
   + AdamW step); inference images/s (eval mode, no_grad, median of --repeats forwards).

The tables print, per backbone: trainable parameters, step ms, training memory MB (and its activation / state
parts) and images/s, each with its ratio to VP ("/vp") and to full fine-tuning ("/full"), and the RSS increase
of the training steps ("RSS+", which also holds forward temporaries and allocator slack, so it has a floor even
where almost nothing is saved for backward); --json adds the RSS ratios (``rss_over_vp``, ``rss_over_full``).

    python benchmarks/act_prompt.py            # four backbones, batch 32, 7 repeats (a few minutes on 2 cores)
    python benchmarks/act_prompt.py --quick    # the 32 px backbones only, batch 16, 5 repeats (under a minute)
    python benchmarks/act_prompt.py --json     # one JSON object instead of the tables
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from peak_memory import PeakRSS, in_process, print_results  # noqa: E402

NUM_CLASSES = 10
# (name, arch, image size, build_backbone overrides, in --quick)
SETTINGS: list[tuple[str, str, int, dict[str, Any], bool]] = [
    ("resnet tiny 32 px", "resnet", 32, {}, True),
    ("vit tiny 32 px", "vit", 32, {}, True),
    ("resnet-18 size 64 px", "resnet", 64,
     {"embedding_size": 64, "hidden_sizes": [64, 128, 256, 512], "depths": [2, 2, 2, 2]}, False),
    ("vit 192x6 64 px", "vit", 64,
     {"hidden_size": 192, "num_hidden_layers": 6, "num_attention_heads": 3, "intermediate_size": 768,
      "patch_size": 8}, False),
]
RATIO_KEYS = (("step_ms", "step"), ("train_memory_mb", "memory"), ("rss_increase_mb", "rss"),
              ("images_per_s", "images_per_s"))


def describe(backbone: Any) -> str:
    c = backbone.model.config
    if backbone.arch == "resnet":
        return (f"ResNet embedding {c.embedding_size}, hidden {list(c.hidden_sizes)}, depths {list(c.depths)}, "
                f"{backbone.num_layers} blocks")
    return (f"ViT hidden {c.hidden_size}, {c.num_hidden_layers} layers, {c.num_attention_heads} heads, "
            f"MLP {c.intermediate_size}, patch {c.patch_size}")


def methods_for(arch: str, num_layers: int) -> list[tuple[str, str, int | None]]:
    """(label, method, AP layer) of every method measured on a backbone with ``num_layers`` blocks."""
    mid = max(1, num_layers // 2)
    rows: list[tuple[str, str, int | None]] = [(f"ap@{mid} (mid)", "ap", mid), (f"ap@{num_layers} (last)", "ap",
                                                                               num_layers)]
    rows.append(("vp", "vp", None))
    if arch == "vit":
        rows.append(("vpt", "vpt", None))
    rows += [(m, m, None) for m in ("linear", "norm", "lora", "full")]
    return rows


def bench_backbone(arch: str, size: int, overrides: dict[str, Any], batch: int, repeats: int,
                   rss_steps: int) -> dict[str, Any]:
    """Every method on one backbone setting (run in its own spawned process)."""
    import gc

    import torch
    import torch.nn.functional as F

    from affectkit.core.config import apply_overrides
    from affectkit.tasks.act_prompt.backbone import build_backbone
    from affectkit.tasks.act_prompt.config import ActPromptConfig
    from affectkit.tasks.act_prompt.costs import cost_report
    from affectkit.tasks.act_prompt.train import build_classifier, parameter_groups

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    probe = build_backbone(arch, size, **overrides)
    info: dict[str, Any] = {"backbone": describe(probe), "image_size": size, "batch": batch,
                            "num_layers": probe.num_layers, "backbone_params": sum(p.numel() for p in probe.parameters())}
    del probe

    def build(method: str, layer: int | None) -> tuple[Any, Any]:
        items = [f"method={method}", f"backbone.arch={arch}", "backbone.pretrained=false",
                 f"data.image_size={size}", f"prompt.vp_pad={max(1, round(4 * size / 32))}",
                 f"train.batch_size={batch}"]
        if layer is not None:
            items.append(f"layer={layer}")
        cfg = apply_overrides(ActPromptConfig(), items)
        torch.manual_seed(0)
        model = build_classifier(cfg, NUM_CLASSES, backbone=build_backbone(arch, size, **overrides))
        model.train()
        optimizer = torch.optim.AdamW(parameter_groups(model, cfg), weight_decay=cfg.train.weight_decay)
        return model, optimizer

    def step(model: Any, optimizer: Any) -> None:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)

    model, optimizer = build("full", None)  # warm-up: one-time allocations stay out of the measurements
    step(model, optimizer)
    del model, optimizer
    gc.collect()

    rows: dict[str, dict[str, float]] = {}
    for label, method, layer in methods_for(arch, info["num_layers"]):
        model, optimizer = build(method, layer)
        with PeakRSS() as mem:
            for _ in range(rss_steps):
                step(model, optimizer)
        report = cost_report(model, x, y, optimizer, repeats=repeats)
        rows[label] = {
            "trainable_params": int(report["trainable_params"]),
            "step_ms": report["train_step_s"] * 1000,
            "activation_mb": report["activation_mb"],
            "state_mb": report["state_mb"],
            "train_memory_mb": report["activation_mb"] + report["state_mb"],
            "rss_increase_mb": mem.increase_mb,
            "images_per_s": report["images_per_s"],
        }
        info["rss_method"] = mem.method
        del model, optimizer
        gc.collect()
    info["methods"] = rows
    return info


def add_ratios(section: dict[str, Any]) -> None:
    """``<x>_over_vp`` and ``<x>_over_full`` of every method (images/s: higher is faster; the rest: lower is
    cheaper)."""
    rows = section["methods"]
    for ref in ("vp", "full"):
        base = rows[ref]
        for row in rows.values():
            for key, name in RATIO_KEYS:
                row[f"{name}_over_{ref}"] = row[key] / base[key] if base[key] else float("nan")


def print_table(name: str, section: dict[str, Any]) -> None:
    print(f"{name}: {section['backbone']}, {section['backbone_params']:,} backbone params, "
          f"batch {section['batch']}, {section['seconds']:.1f} s")
    head = (f"  {'method':14s} {'trainable':>10s} {'step ms':>8s} {'/vp':>6s} {'/full':>6s} {'train MB':>9s} "
            f"{'/vp':>6s} {'/full':>6s} {'(act':>7s} {'state)':>7s} {'RSS+ MB':>8s} {'img/s':>8s} {'/vp':>6s} "
            f"{'/full':>6s}")
    print(head)
    for label, r in section["methods"].items():
        print(f"  {label:14s} {r['trainable_params']:>10,d} {r['step_ms']:8.1f} {r['step_over_vp']:6.2f} "
              f"{r['step_over_full']:6.2f} {r['train_memory_mb']:9.2f} {r['memory_over_vp']:6.2f} "
              f"{r['memory_over_full']:6.2f} {r['activation_mb']:7.2f} {r['state_mb']:7.2f} "
              f"{r['rss_increase_mb']:8.1f} {r['images_per_s']:8.0f} {r['images_per_s_over_vp']:6.2f} "
              f"{r['images_per_s_over_full']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 32 px backbones only, batch 16, 5 repeats")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the tables")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps / forwards per method (median)")
    parser.add_argument("--rss-steps", type=int, default=None, help="training steps under the peak-RSS meter")
    args = parser.parse_args()
    batch = 16 if args.quick else 32
    repeats = args.repeats or (5 if args.quick else 7)
    rss_steps = args.rss_steps or (2 if args.quick else 3)
    results: dict[str, Any] = {}
    t_all = time.perf_counter()
    for name, arch, size, overrides, in_quick in SETTINGS:
        if args.quick and not in_quick:
            continue
        t0 = time.perf_counter()
        section = in_process(bench_backbone, arch, size, overrides, batch, repeats, rss_steps)
        if "error" in section:
            raise SystemExit(f"{name}: {section['error']}\n{section.get('traceback', '')}")
        section["seconds"] = time.perf_counter() - t0
        add_ratios(section)
        results[name] = section
    results["run"] = {"torch_threads": 1, "repeats": repeats, "rss_steps": rss_steps,
                      "seconds": time.perf_counter() - t_all}
    if args.json:
        print_results(results, as_json=True)
        return
    for name, section in results.items():
        if name != "run":
            print_table(name, section)
            print()
    rss = next(s["rss_method"] for n, s in results.items() if n != "run")
    print(f"one torch thread, median of {repeats} steps/forwards; train MB = activations saved for backward + "
          f"weights, grads and AdamW moments of what trains; RSS+ = peak RSS of {rss_steps} training steps above "
          f"the RSS before them ({rss}); /vp, /full: ratio to VP and to full fine-tuning (img/s: higher is faster); "
          f"total {results['run']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
