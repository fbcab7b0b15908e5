"""tqd speed and memory, measured in one run (ratios are between numbers of the same run):

1. Scoring: videos/s and frames/s of ``scoring.score_video`` (Farneback mean flow and the VBench top-5 %
   statistic, with the four quality features) on clips of the embedded generator at 32 px (16 frames,
   the embedded benchmark) and at 256 px (16 frames, a real clip's processing size), against decoding
   the same files alone (``scoring.iter_frames``, same resolution and frame rate): the ratio says how
   much of scoring is decoding. Peak RSS while scoring (streaming: one frame pair held).
2. Timestep sampling: noise levels/s of each sampler for one million typed clips, against diffusers'
   ``compute_density_for_timestep_sampling`` (logit-normal) where diffusers installs.
3. Training: optimizer steps/s (batch 16, AdamW, one torch thread) of the bench's 3D-conv denoiser on
   16 x 16 px x 8 frames, the default 3D-conv (width 32) and the tiny DiT on 32 x 32 px x 16 frames, each
   with the uniform sampler and with TQD categorical (the sampler's share of a step), and the peak RSS
   of 10 steps.

    python benchmarks/tqd.py            # the numbers of docs/tasks/tqd.md
    python benchmarks/tqd.py --quick    # fewer clips and steps
    python benchmarks/tqd.py --json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from peak_memory import PeakRSS, print_results  # noqa: E402


def clips(out: Path, size: int, n: int) -> list[Path]:
    from affectkit.tasks.tqd import synth

    counts = {"natural": n, "golden": 0, "motion": 0, "quality": 0, "low": 0, "heldout": 0, "pairs": 0}
    synth.make(out, seed=0, quick=True, counts=counts, size=size, frames=16)
    return sorted((out / "clips").glob("clip_*"))


def bench_scoring(paths: list[Path], label: str) -> dict[str, float]:
    from affectkit.tasks.tqd.scoring import iter_frames, score_video

    frames = 0
    t0 = time.perf_counter()
    for p in paths:
        frames += sum(1 for _ in iter_frames(p))
    decode = time.perf_counter() - t0
    out: dict[str, float] = {"clips": len(paths), "sampled_frames": frames, "decode_videos_per_s": len(paths) / decode,
                             "decode_frames_per_s": frames / decode}
    for method in ("farneback", "vbench"):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            for p in paths:
                score_video(p, method=method)
            seconds = time.perf_counter() - t0
        out[f"{method}_videos_per_s"] = len(paths) / seconds
        out[f"{method}_frames_per_s"] = frames / seconds
        out[f"{method}_time_over_decode"] = seconds / decode
        out[f"{method}_peak_rss_increase_mb"] = mem.increase_mb
    out["resolution"] = label
    return out


def bench_samplers(n: int) -> dict[str, float]:
    import torch

    from affectkit.tasks.tqd.method_sampler import TimestepSampler

    types = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(0))
    out: dict[str, float] = {"draws": n}
    for mode in ("uniform", "logit-normal", "tqd-categorical", "tqd-beta", "tqd-truncated"):
        sampler = TimestepSampler(mode=mode, base="logit_normal" if mode.startswith("tqd") else None)
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        sampler.sample(types, gen)
        out[f"{mode}_per_s"] = n / (time.perf_counter() - t0)
    try:
        from diffusers.training_utils import compute_density_for_timestep_sampling

        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        compute_density_for_timestep_sampling("logit_normal", n, logit_mean=0.0, logit_std=1.0, generator=gen)
        out["diffusers_logit_normal_per_s"] = n / (time.perf_counter() - t0)
        out["logit-normal_over_diffusers"] = out["logit-normal_per_s"] / out["diffusers_logit_normal_per_s"]
        out["tqd-categorical_over_diffusers"] = out["tqd-categorical_per_s"] / out["diffusers_logit_normal_per_s"]
    except ImportError:
        out["diffusers"] = "not installed"
    return out


def bench_training(kind: str, width: int, size: int, frames: int, steps: int) -> dict[str, float]:
    import torch

    from affectkit.tasks.tqd.method_flow import flow_training_loss
    from affectkit.tasks.tqd.method_sampler import TimestepSampler
    from affectkit.tasks.tqd.model import build_model, count_parameters

    torch.set_num_threads(1)
    out: dict[str, float] = {"model": f"{kind} width {width}, {size}x{size} px x {frames} frames"}
    x = torch.rand(16, 3, frames, size, size) * 2 - 1
    types = torch.tensor([1, 2] * 8)
    for mode in ("uniform", "tqd-categorical"):
        torch.manual_seed(0)
        model = build_model(kind, channels=3, width=width, depth=3, emb_dim=64)
        opt = torch.optim.AdamW(model.parameters(), 2e-3)
        sampler = TimestepSampler(mode=mode, base="logit_normal" if mode.startswith("tqd") else None, p_skew=0.5)
        gen = torch.Generator().manual_seed(0)

        def step(model: Any = model, opt: Any = opt, sampler: Any = sampler, gen: Any = gen) -> None:
            s = sampler.sample(types, gen)
            loss = flow_training_loss(model, x, s, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()

        step()  # warm-up
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            seconds = time.perf_counter() - t0
        out[f"{mode}_steps_per_s"] = steps / seconds
        out[f"{mode}_peak_rss_increase_mb"] = mem.increase_mb
        out["parameters"] = count_parameters(model)
    out["tqd_over_uniform_step_time"] = out["uniform_steps_per_s"] / out["tqd-categorical_steps_per_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n_small, n_large, steps = (20, 4, 5) if args.quick else (100, 12, 20)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["scoring 32 px"] = bench_scoring(clips(Path(tmp) / "s32", 32, n_small), "32x32")
        results["scoring 256 px"] = bench_scoring(clips(Path(tmp) / "s256", 256, n_large), "256x256")
    results["samplers"] = bench_samplers(200_000 if args.quick else 1_000_000)
    results["training bench size"] = bench_training("conv3d", 16, 16, 8, steps)
    results["training conv3d default"] = bench_training("conv3d", 32, 32, 16, max(2, steps // 4))
    results["training dit"] = bench_training("dit", 64, 32, 16, steps)
    print_results(results, args.json)


if __name__ == "__main__":
    main()
