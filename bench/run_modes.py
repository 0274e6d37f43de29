"""``expand run`` as a whole command, in-process against as a Prefect flow run.

Runs ``expand run config/digits.yaml`` with tuning and synthesis off (the embedded digits,
3 augmented copies per training image: 7,190 rows) as a user types it, in a fresh process
and output root each time, with no Prefect API configured (a temporary ``PREFECT_HOME``):

- ``in-process``: the default without a Prefect API (the stage list in the command's process),
- ``flow``: ``--flow``, a flow run on a temporary local Prefect server that the command starts
  and stops.

The modes take turns ``--repeat`` times; the medians and every run's wall-clock seconds are
printed as JSON (and written to ``--out``). Both modes must publish the same version id.

    python bench/run_modes.py [--repeat 5] [--workers N] [--out bench/results/run-modes.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPAND = Path(sys.executable).with_name("expand")
SETTINGS = ["augment.tune.enabled=false", "synthesis.enabled=false"]


def run_once(mode: str, workers: int | None, scratch: Path) -> tuple[float, str]:
    """One whole ``expand run``: its wall-clock seconds and the version id it printed."""
    out = Path(tempfile.mkdtemp(dir=scratch))
    args = [str(EXPAND), "run", "config/digits.yaml", "--quiet", "--set", f"output.root={out}"]
    args += [a for s in SETTINGS for a in ("--set", s)]
    if workers:
        args += ["--set", f"runner.workers={workers}"]
    if mode == "flow":
        args.append("--flow")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(scratch / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="60",
    )
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    return seconds, Path(done.stdout.strip().splitlines()[-1]).name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, help="runner.workers (default: the config's, all cores)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {"in-process": [], "flow": []}
    ids = set()
    with tempfile.TemporaryDirectory() as scratch:
        run_once("flow", args.workers, Path(scratch))  # Prefect's first start on a fresh home: not counted
        for _ in range(args.repeat):
            for mode in runs:
                seconds, version = run_once(mode, args.workers, Path(scratch))
                runs[mode].append(round(seconds, 2))
                ids.add(version)
    if len(ids) != 1:
        raise SystemExit(f"the modes published different versions: {sorted(ids)}")
    result = {
        "command": "expand run config/digits.yaml --set " + " --set ".join(SETTINGS),
        "workers": args.workers or os.cpu_count(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "version_id": ids.pop(),
        "median_seconds": {mode: statistics.median(s) for mode, s in runs.items()},
        "seconds": runs,
    }
    text = json.dumps(result, indent=1, sort_keys=True)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
