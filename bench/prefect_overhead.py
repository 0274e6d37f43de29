"""Prefect's overhead: the ``expand`` flow against the same library calls without Prefect.

Publishes the same expansion (embedded digits, ``--copies`` augmented copies per training
image: 34 gives about 50k rows) three ways, each into a fresh output root, with the same
``runner.workers``:

0. ``pipeline.build.build`` with one worker, in-process (for scale),
1. ``pipeline.build.build`` (no Prefect), twice: the first run starts the worker pool,
2. the ``expand`` flow on a fresh ephemeral Prefect server (includes its start-up),
3. the ``expand`` flow again, server already up (what a deployment on a running server pays).

Overhead is the last against the second library run (both with the worker pool up).

    python bench/prefect_overhead.py --copies 34
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))

from pipeline.build import build  # noqa: E402
from pipeline.config import load_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=float, default=34)
    parser.add_argument("--shard-size", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from flows.expand import expand_for

    results = {}
    with tempfile.TemporaryDirectory() as tmp:

        def overrides(root: str) -> list[str]:
            return [
                f"output.root={tmp}/{root}",
                f"augment.copies_per_image={args.copies}",
                'augment.transforms=[{"Affine": {"rotate": [-10, 10], "p": 1.0}}]',
                f"output.shard_size={args.shard_size}",
                f"runner.workers={args.workers}",
            ]

        started = time.perf_counter()
        version, _ = build(load_config(None, [*overrides("one-worker"), "runner.workers=1"]))
        results["library, 1 worker (in-process)"] = time.perf_counter() - started
        for label, root in (("library (starts the worker pool)", "pool"), ("library", "library")):
            started = time.perf_counter()
            assert build(load_config(None, overrides(root)))[0].name == version.name
            results[label] = time.perf_counter() - started
        rows = sum(s["rows"] for s in json.loads((version / "manifest.json").read_text())["shards"])
        for label, root in (("flow (cold ephemeral server)", "cold"), ("flow (server up)", "warm")):
            started = time.perf_counter()
            config = load_config(None, overrides(root))
            result = expand_for(config)(config_path=None, overrides=overrides(root))
            results[label] = time.perf_counter() - started
            assert result["version_id"] == version.name
    base = results["library"]
    print(f"{rows} rows published")
    for label, seconds in results.items():
        print(f"{label:<30} {seconds:7.1f} s  ({(seconds / base - 1) * 100:+.1f}% vs library)")
    print(json.dumps({"rows": rows, "seconds": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
