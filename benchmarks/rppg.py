"""rppg speed and memory on one 60-s 640x480 face video at 30 fps (1,800 frames), rendered by the
embedded generator (``synth.make(size=(640, 480), duration=60)``, a clean subject; MJPG).

Measured in one run (ratios are between numbers of the same run):

1. decoding alone: ``frames.open_video(...).frames()`` iterated to the end (OpenCV): frames/s.
2. preprocessing: ``traces.extract_traces`` (decoding + Haar face tracking every 30 frames + the face
   box's mean RGB + the six ROI means of R, G, B, Y, U, V): frames/s and its ratio to decoding alone;
   peak RSS above the start, against the size of the decoded video held in memory (what a reader
   that loads the whole video needs): frames stream, so memory stays near one frame, not the video.
3. classical methods on the 1,800-frame RGB trace: calls/s of each (POS, CHROM, GREEN, ICA, LGI, PBV,
   OMIT) and the real-time factor (seconds of video per second of compute).
4. FreqPhys: the MSTmap clips of the video (``mstmap.make_clips``; 10-s clips every 0.5 s), then DDIM
   sampling (5 steps) in batches of 8: clips/s for the bench's CPU network (dim 32, depth 1) and its
   time-domain-only ablation (the ratio of the two), and for the paper's size (dim 128, depth 4) on
   one batch; peak RSS of each. --threads torch threads (default 2).

    python benchmarks/rppg.py             # the numbers of docs/tasks/rppg.md
    python benchmarks/rppg.py --quick     # a 20-s video, fewer FreqPhys clips
    python benchmarks/rppg.py --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from peak_memory import PeakRSS  # noqa: E402

SUBJECT = 10  # quick plan: a clean test subject
SMALL = {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "mlp_dim": 64, "dropout": 0.0}
PAPER = {"dim": 128, "depth": 4, "heads": 4, "dim_head": 32, "mlp_dim": 128, "dropout": 0.1}


def render(work: Path, seconds: float) -> Path:
    from affectkit.tasks.rppg.synth import make

    make(work, 0, quick=True, size=(640, 480), duration=seconds, subjects=[SUBJECT])
    return work / f"subject{SUBJECT}" / "vid.avi"


def bench_decode(video: Path) -> dict[str, float]:
    from affectkit.tasks.rppg.frames import open_video

    t0 = time.perf_counter()
    n = sum(1 for _ in open_video(video).frames())
    return {"frames": n, "fps": n / (time.perf_counter() - t0)}


def bench_traces(video: Path) -> tuple[dict[str, float], object]:
    from affectkit.tasks.rppg.frames import open_video
    from affectkit.tasks.rppg.traces import extract_traces

    with PeakRSS() as mem:
        t0 = time.perf_counter()
        tr = extract_traces(open_video(video))
        dt = time.perf_counter() - t0
    return {"frames": len(tr), "fps": len(tr) / dt, "peak_mb": mem.increase_mb, "face_frames": int(tr.found.sum()),
            "memory_method": mem.method}, tr


def bench_classical(tr: object, repeats: int) -> dict[str, dict[str, float]]:
    from affectkit.tasks.rppg.baselines import METHODS
    from affectkit.tasks.rppg.traces import fill_missing

    rgb = fill_missing(tr.rgb, tr.found)
    seconds = len(rgb) / tr.fps
    out = {}
    for name, fn in METHODS.items():
        fn(rgb, tr.fps)
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(rgb, tr.fps)
        per = (time.perf_counter() - t0) / repeats
        out[name] = {"calls_per_s": 1 / per, "realtime_x": seconds / per}
    return out


def bench_freqphys(tr: object, model_kwargs: dict, frequency: bool, max_clips: int, threads: int) -> dict[str, float]:
    import torch

    from affectkit.tasks.rppg.config import RppgConfig
    from affectkit.tasks.rppg.model import FreqPhys
    from affectkit.tasks.rppg.mstmap import make_clips
    from affectkit.tasks.rppg.recipe import predict_clips

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = RppgConfig()
    clips = make_clips(tr, None, "bench")[:max_clips]
    model = FreqPhys(**model_kwargs, frequency=frequency).eval()
    predict_clips(model, clips[:1], cfg, batch_size=8)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        predict_clips(model, clips, cfg, batch_size=8)
        dt = time.perf_counter() - t0
    return {"clips": len(clips), "clips_per_s": len(clips) / dt, "peak_mb": mem.increase_mb,
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    seconds = 20.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory(prefix="rppg-bench-") as tmp:
        video = render(Path(tmp), seconds)
        decode = bench_decode(video)
        traces, tr = bench_traces(video)
    video_mb = decode["frames"] * 640 * 480 * 3 / 2**20
    classical = bench_classical(tr, 3 if args.quick else 10)
    n = 16 if args.quick else 64
    deep = {"freqphys (bench size)": bench_freqphys(tr, SMALL, True, n, args.threads),
            "time-only (bench size)": bench_freqphys(tr, SMALL, False, n, args.threads),
            "freqphys (paper size)": bench_freqphys(tr, PAPER, True, 8, args.threads)}
    result = {"video": {"seconds": seconds, "size": "640x480", "frames": decode["frames"], "decoded_mb": video_mb},
              "decode_fps": decode["fps"], "traces": traces, "traces_vs_decode": traces["fps"] / decode["fps"],
              "traces_peak_vs_video": traces["peak_mb"] / video_mb, "classical": classical, "freqphys": deep,
              "freqphys_vs_time_only": deep["freqphys (bench size)"]["clips_per_s"]
              / deep["time-only (bench size)"]["clips_per_s"]}
    if args.json:
        print(json.dumps(result))
        return
    print(f"video: {seconds:.0f} s, 640x480, {decode['frames']} frames ({video_mb:.0f} MB decoded)")
    print(f"decoding alone            {decode['fps']:8.1f} frames/s")
    print(f"preprocessing (traces)    {traces['fps']:8.1f} frames/s  = {result['traces_vs_decode']:.2f}x decoding alone;"
          f" peak +{traces['peak_mb']:.0f} MB = {100 * result['traces_peak_vs_video']:.1f} % of the decoded video")
    for name, r in classical.items():
        print(f"classical {name:<6}          {r['calls_per_s']:8.1f} traces/s  ({r['realtime_x']:.0f}x real time)")
    for name, r in deep.items():
        print(f"{name:<25} {r['clips_per_s']:8.2f} clips/s  ({r['clips']} clips, {r['params']:,} params, "
              f"peak +{r['peak_mb']:.0f} MB)")
    print(f"freqphys / time-only: {result['freqphys_vs_time_only']:.2f}x the clips/s")


if __name__ == "__main__":
    main()
