"""MER-Bench judge transport: throughput at concurrency 16 vs the baseline concurrency 1, cache-hit rerun.

A loopback OpenAI-compatible server answers every request after a fixed latency (100 ms by default),
so the ratio measures the client's concurrency, not a model. Also times the offline rules judge.

    python benchmarks/mer_bench.py            # 32 memes x 4 systems = 128 requests per setting
    python benchmarks/mer_bench.py --quick    # 8 memes x 4 systems
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from affectkit.core.output import rows_table  # noqa: E402
from affectkit.tasks.mer_bench.bench import rules_table, transport_table  # noqa: E402
from affectkit.tasks.mer_bench.synth import make_benchmark  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--latency", type=float, default=0.1, help="server latency per reply in seconds")
    ap.add_argument("--rows", type=int, default=None, help="memes (x 4 systems = requests per setting)")
    args = ap.parse_args()
    rows = args.rows or (8 if args.quick else 32)
    from rich.console import Console

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        make_benchmark(t / "data", seed=0, n=rows)
        t0 = time.perf_counter()
        transport = transport_table(t / "data", t / "transport", n_rows=rows, latency_s=args.latency)
        console.print(rows_table(transport, title=f"openai judge transport, loopback latency {args.latency * 1000:.0f} ms, "
                                                  f"baseline concurrency 1 ({time.perf_counter() - t0:.1f} s)"))
        rules_rows, info = rules_table(t / "data", t / "rules", t / "rules.sqlite3")
        console.print(rows_table(rules_rows, title=f"rules judge, {rows} memes x 4 systems, "
                                                   f"{info['rules_seconds']} s ({info['pairs'] / info['rules_seconds']:.1f} pairs/s)"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
