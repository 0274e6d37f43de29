"""Prefect's overhead: the ``expand`` flow against the same library calls without Prefect.

Publishes the same expansion (embedded digits, ``--copies`` augmented copies per training
image: 34 gives about 50k rows) three ways, each into a fresh output root, with the same
``runner.workers``:

0. ``pipeline.build.build`` with one worker, in-process (for scale),
1. ``pipeline.build.build`` (no Prefect), twice: the first run starts the worker pool,
2. the ``expand`` flow as ``expand run --flow`` runs it, on a fresh ephemeral Prefect server
   (includes its start-up; the server records task runs in batches, see
   ``flows.expand.run_expand``),
3. the same again, server already up,
4. the flow called directly with Prefect's defaults, server up: flow-run heartbeats on,
   as in a deployment.

With ``PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE=1`` and
``PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL=5`` set, the server keeps
Prefect's defaults for those (one database write per task-run event).

Overhead is the third against the second library run (both with the worker pool up); those
and the fourth take turns ``--repeat`` times and their medians are reported, with the CPU
seconds each run cost this process and the Prefect server's process (the shard workers,
which the server and this process share the cores with, are not counted).

    python bench/prefect_overhead.py --copies 34 [--source IMAGE_FOLDER] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import psutil

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))

from pipeline.build import build, load_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=float, default=34)
    parser.add_argument("--shard-size", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--source", help="an image folder to expand instead of the embedded digits")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant once the server is up")
    args = parser.parse_args()
    from flows.expand import expand_for, run_expand

    results, cpu_of = {}, {}
    with tempfile.TemporaryDirectory() as tmp:

        def overrides(root: str) -> list[str]:
            source = ["source.kind=imagefolder", f"source.path={args.source}"] if args.source else []
            return [
                *source,
                f"output.root={tmp}/{root}",
                f"augment.copies_per_image={args.copies}",
                'augment.transforms=[{"Affine": {"rotate": [-10, 10], "p": 1.0}}]',
                f"output.shard_size={args.shard_size}",
                f"runner.workers={args.workers}",
            ]

        def timed(run, root: str, label: str | None = None) -> float:
            started, cpu = time.perf_counter(), _cpu_seconds()
            assert run(load_config(None, overrides(root)), None, overrides(root))["version_id"] == version
            seconds = time.perf_counter() - started
            if label:
                cpu_of.setdefault(label, []).append([b - a for a, b in zip(cpu, _cpu_seconds(), strict=True)])
            return seconds

        def library(config, *_):
            return {"version_id": build(config)[0].name}

        started = time.perf_counter()
        built, _ = build(load_config(None, [*overrides("one-worker"), "runner.workers=1"]))
        results["library, 1 worker (in-process)"] = [time.perf_counter() - started]
        version = built.name
        rows = sum(s["rows"] for s in json.loads((built / "manifest.json").read_text())["shards"])
        results["library (starts the worker pool)"] = [timed(library, "pool")]
        results["flow (cold ephemeral server)"] = [timed(run_expand, "cold")]
        # Server and pool up: the three take turns, --repeat times, to share the machine's drift.
        turns = (
            ("library", library),
            ("flow (server up)", run_expand),
            ("flow (server up, heartbeats on)", lambda c, *args: expand_for(c)(*args)),
        )
        for k in range(args.repeat):
            for n, (label, run) in enumerate(turns):
                results.setdefault(label, []).append(timed(run, f"turn-{k}-{n}", label))
    medians = {label: statistics.median(times) for label, times in results.items()}
    print(f"{rows} rows published; medians of {args.repeat} runs where repeated")
    for label, seconds in medians.items():
        spread = f"{min(results[label]):.1f}-{max(results[label]):.1f} s" if len(results[label]) > 1 else ""
        overhead = (seconds / medians["library"] - 1) * 100
        print(f"{label:<32} {seconds:6.2f} s  ({overhead:+5.1f}% vs library) {spread}")
    cpu = {label: [statistics.median(c) for c in zip(*runs, strict=True)] for label, runs in cpu_of.items()}
    for label, (own, server) in cpu.items():
        print(f"{label:<32} CPU: this process {own:.2f} s, Prefect server {server:.2f} s (medians)")
    report = {"rows": rows, "median_seconds": medians, "seconds": results, "median_cpu_seconds": cpu}
    print(json.dumps(report, indent=1))
    return 0


def _cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds so far of this process and of the temporary Prefect
    server it started (a uvicorn child process; 0 while there is none)."""
    me, server = psutil.Process(), 0.0
    for child in me.children():
        try:
            if "uvicorn" in child.cmdline():
                server += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return sum(me.cpu_times()[:2]), server


if __name__ == "__main__":
    sys.exit(main())
