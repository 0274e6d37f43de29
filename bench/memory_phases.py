"""Where a build's memory goes: the parent process's anonymous RSS (RssAnon, sampled every
10 ms) at its peak and at the end of each stage (prepare = ingest, plan, write, publish),
for an image-folder source, 4 copies per image, 2 workers. Linux only (/proc).

    python bench/memory_phases.py SOURCE_FOLDER OUT_DIR
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path


def anon_mb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon"):
                return int(line.split()[1]) // 1024
    return 0


def main() -> int:
    import pipeline.build as b
    from pipeline.config import load_config

    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = load_config(
        None,
        [
            "source.kind=imagefolder",
            f"source.path={source}",
            f"output.root={out}",
            "split.test_fraction=0.01",
            "augment.copies_per_image=4",
            'augment.transforms=[{"HorizontalFlip": {"p": 0.5}}]',
            "runner.workers=2",
        ],
    )
    stage, peaks, done = ["start"], {}, threading.Event()

    def sample() -> None:
        while not done.is_set():
            peaks[stage[0]] = max(peaks.get(stage[0], 0), anon_mb())
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    b.warm_up(2)
    time.sleep(0.2)
    results = {"start": {"after_mb": anon_mb()}}
    stage[0] = "prepare"
    context = b.prepare(config, None, 2)
    results["prepare"] = {"peak_mb": peaks["prepare"], "after_mb": anon_mb()}
    stage[0] = "plan"
    context = b.plan(context, None)
    results["plan"] = {"peak_mb": peaks["plan"], "after_mb": anon_mb()}
    stage[0] = "write"
    entries = b.write_shards(context, 2)
    results["write"] = {"peak_mb": peaks["write"], "after_mb": anon_mb()}
    stage[0] = "publish"
    b.publish(context, entries)
    results["publish"] = {"peak_mb": peaks["publish"], "after_mb": anon_mb()}
    done.set()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
