"""au-fe speed and memory: SSM's training cost against the single-task models on the same batches,
training clips/s, and predict frames/s on a video (Haar face boxes + per-frame AUs + clip expression).

    python benchmarks/au_fe.py [--steps 10] [--threads 1]

Each configuration runs in its own process so peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

SETTINGS = ["data.image_size=48", "data.cache_frames=true", "data.augment=false", "model.moe_blocks=2",
            "model.moe_hidden=128", "model.fe_mlp=256", "model.fe_heads=4", "train.batch_size=8"]
CONFIGS = {
    "SSM (both branches, TSP + DPM)": [],
    "SSM without TSP": ["model.use_tsp=false"],
    "FE-only": ["model.branches=fe"],
    "AU-only": ["model.branches=au"],
}


def _train_speed(data: str, extra: list[str], steps: int, threads: int, queue) -> None:
    import torch

    from affectkit.core.config import apply_overrides
    from affectkit.tasks.au_fe import TASK

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = apply_overrides(TASK.Config(), SETTINGS + extra)
    bundle = TASK.build_data(cfg, Path(data))
    model = TASK.build_model(cfg)
    opt = TASK.configure_optimizer(model, cfg)
    loader = torch.utils.data.DataLoader(bundle.train, batch_size=cfg.train.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == steps + 2:
            break
    for b in batches[:2]:  # warm-up (and frame cache)
        loss, _ = TASK.train_step(model, b, cfg)
        loss.backward()
        opt.step()
        opt.zero_grad()
    t0 = time.perf_counter()
    clips = 0
    for b in batches[2:]:
        loss, _ = TASK.train_step(model, b, cfg)
        loss.backward()
        opt.step()
        opt.zero_grad()
        TASK.after_step(model, cfg, 0)
        clips += sum(len(b[k]) for k in ("fe", "au") if k in b)
    secs = (time.perf_counter() - t0) / len(batches[2:])
    queue.put({"s/step": secs, "clips/s": clips / (secs * len(batches[2:])),
               "peak MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _predict_speed(data: str, threads: int, queue) -> None:
    import cv2
    import numpy as np
    import torch

    from affectkit.core.config import apply_overrides, to_yaml
    from affectkit.core.device import get_accelerator
    from affectkit.core.loop import fit
    from affectkit.core.output import Output
    from affectkit.core.runs import RunDir, atomic_write_text
    from affectkit.tasks.au_fe import TASK
    from affectkit.tasks.au_fe.synth import _identity, render

    torch.set_num_threads(threads)
    cfg = apply_overrides(TASK.Config(), SETTINGS + ["train.max_steps=1", "train.eval_every=0"])
    tmp = Path(tempfile.mkdtemp())
    run = RunDir.open(tmp / "run")
    run.create()
    atomic_write_text(run.config_path, to_yaml(cfg))
    fit(TASK, cfg, TASK.build_data(cfg, Path(data)), get_accelerator("no"), Output(quiet=True), 0, run=run)
    video = tmp / "face.avi"
    rng = np.random.default_rng(0)
    ident = _identity(rng, "fe")
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 160))
    for k in range(200):
        writer.write(render(ident, {12: (k % 50) / 50}, 160, rng, 0.0, 1.0, 2.0, (0.0, 0.0))[:, :, ::-1])
    writer.release()
    t0 = time.perf_counter()
    res = TASK.predict(run.path, video, checkpoint="last")
    secs = time.perf_counter() - t0
    queue.put({"frames": res["frames"], "seconds": secs, "frames/s": res["frames"] / secs})


def _in_process(fn, *args):
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=fn, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=None, help="embedded benchmark dir (default: generate a quick one)")
    args = ap.parse_args()
    data = args.data
    if data is None:
        from affectkit.tasks.au_fe.synth import make

        data = tempfile.mkdtemp()
        make(Path(data), 0, quick=True)
    rows = {name: _in_process(_train_speed, data, extra, args.steps, args.threads) for name, extra in CONFIGS.items()}
    fe = rows["FE-only"]["s/step"]
    au = rows["AU-only"]["s/step"]
    print(f"training, batch 8 (FE and/or AU clips of 16 frames, 48 px), {args.threads} thread(s), {args.steps} steps")
    print(f"{'config':34s} {'s/step':>8s} {'clips/s':>8s} {'peak MB':>8s} {'vs FE-only':>10s} {'vs FE+AU':>9s}")
    for name, r in rows.items():
        print(f"{name:34s} {r['s/step']:8.3f} {r['clips/s']:8.1f} {r['peak MB']:8.0f} {r['s/step'] / fe:10.2f} "
              f"{r['s/step'] / (fe + au):9.2f}")
    pred = _in_process(_predict_speed, data, args.threads)
    print(f"predict: {pred['frames']} frames (160 px video, Haar every 5 frames) in {pred['seconds']:.2f} s = "
          f"{pred['frames/s']:.1f} frames/s")
    print(json.dumps({"train": rows, "predict": pred}))


if __name__ == "__main__":
    main()
