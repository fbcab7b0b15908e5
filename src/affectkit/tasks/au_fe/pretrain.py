"""A pretrained tiny vision tower for the embedded benchmark, standing in for CLIP.

SSM starts from a pretrained CLIP image tower (encoder lr 1e-6). A tower trained from scratch on a
few hundred labelled clips learns nothing in a CPU budget, which would test optimisation rather than
transfer. So the embedded benchmark first pretrains a CLIP-shaped tower once, like a face-alignment
backbone: landmark regression on a disjoint pool of rendered faces (new identities, random facial
motion, no AU or expression labels). It is saved with ``save_pretrained`` and loaded through the same
``--set model.vision=PATH`` path as a real CLIP checkpoint; every variant starts from it.

The budget matters: after 400 steps (landmark MSE 0.18) an expression head on its frozen features
stayed at chance within a few hundred steps of batch 8; after 1500 steps (MSE 0.06) a linear probe
reaches about 0.55 expression UAR, the range of CLIP probes on DFEW. About 90 s on 2 cores, once.

The tower depends on nothing but its settings (the rendered pool is drawn from ``seed``), so it lives
in the task's cache, keyed by a hash of those settings and the renderer's data version, and is shared
by every dataset that asks for it; nothing is written into a dataset directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from affectkit.core.cache import materialize, task_cache
from affectkit.core.output import get_output

DIRNAME = "pretrained-vision"
# The pretraining recipe of the embedded benchmark (the keyword arguments of ``pretrain_vision``);
# part of the cache key, so a changed recipe never reuses an old tower.
SETTINGS = {"proj_dim": 384, "width": 64, "layers": 4, "heads": 4, "patch": 8, "steps": 1500, "n_frames": 6000,
            "batch": 64}
# The renderer's version (au-fe's data_version): the pool is drawn with synth.render.
RENDER_VERSION = 4
PHASE = "pretraining the embedded vision tower"


def _pool(seed: int, n_frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    from affectkit.tasks.au_fe.synth import AUS, _identity, render

    rng = np.random.default_rng([seed, 99])
    idents = [_identity(rng, "au" if i % 2 else "fe") for i in range(80)]
    images, targets = [], []
    for _ in range(n_frames):
        au = {a: float(rng.uniform(0, 1)) for a in AUS if rng.random() < 0.25}
        pts: list = []
        img = render(idents[int(rng.integers(len(idents)))], au, size, rng, rng.uniform(-0.5, 0.5),
                     rng.uniform(0.75, 1.2), rng.uniform(2, 9), tuple(rng.normal(0, 0.02, size=2)), pts)
        images.append(img)
        targets.append(np.asarray(pts, np.float32).ravel())
    return np.stack(images), np.stack(targets)


def pretrain_vision(out: Path, seed: int = 0, size: int = 48, proj_dim: int = 384, width: int = 64, layers: int = 4,
                    heads: int = 4, patch: int = 8, steps: int = 1500, n_frames: int = 6000, batch: int = 64) -> dict:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from affectkit.tasks.au_fe.clips import clip_tensor

    output = get_output()
    output.log(f"{PHASE} (once, cached): rendering {n_frames} faces at {size} px")
    torch.manual_seed(seed)
    images, targets = _pool(seed, n_frames, size)
    x = torch.cat([clip_tensor(list(images[i : i + 256]), size, False, False) for i in range(0, len(images), 256)])
    y = torch.from_numpy((targets - targets.mean(0)) / (targets.std(0) + 1e-6))
    config = CLIPVisionConfig(image_size=size, patch_size=patch, hidden_size=width, intermediate_size=4 * width,
                              num_hidden_layers=layers, num_attention_heads=heads, projection_dim=proj_dim)
    tower = CLIPVisionModelWithProjection(config)
    head = torch.nn.Linear(proj_dim, y.shape[1])
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    n_val = n_frames // 10
    gen = torch.Generator().manual_seed(seed)
    losses = []
    # a bar on a terminal; otherwise a log line at the start, at each quarter ("375/1500") and at the end
    with output.progress(PHASE, total=steps) as bar:
        for _ in range(steps):
            idx = torch.randint(n_val, len(x), (batch,), generator=gen)
            xb = x[idx]
            if bool(torch.rand(1, generator=gen) < 0.5):  # brightness jitter; no flip (landmarks are sided)
                xb = xb * float(torch.empty(1).uniform_(0.8, 1.2))
            loss = torch.nn.functional.mse_loss(head(tower(pixel_values=xb).image_embeds), y[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
            bar.advance(status=f"landmark MSE {np.mean(losses[-50:]):.3f}")
    with torch.no_grad():
        val = float(torch.nn.functional.mse_loss(head(tower(pixel_values=x[:n_val]).image_embeds), y[:n_val]))
    from affectkit.components.hf import quiet_transformers

    quiet_transformers()
    tower.save_pretrained(str(out))
    info = {"objective": "landmark regression (14 points, standardised)", "frames": n_frames, "steps": steps,
            "train_mse_last100": float(np.mean(losses[-100:])), "val_mse": val, "identities": 80, "seed": seed}
    (out / "pretraining.json").write_text(json.dumps(info, indent=2))
    return info


def pretrained_vision_dir(seed: int = 0, image_size: int = 48) -> Path:
    """Where the tower of these settings lives: the task cache, keyed by everything that shapes it."""
    identity = {"render_version": RENDER_VERSION, "seed": seed, "size": image_size, **SETTINGS}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return task_cache("au-fe") / f"{DIRNAME}-{image_size}px-seed{seed}-{digest}"


def ensure_pretrained_vision(seed: int = 0, image_size: int = 48) -> Path:
    """The pretrained tower, trained on first use into the cache (atomically) and reused after."""
    final = pretrained_vision_dir(seed, image_size)
    if not (final / "config.json").is_file():
        materialize(final, lambda d: pretrain_vision(d, seed, size=image_size, **SETTINGS))
    return final
