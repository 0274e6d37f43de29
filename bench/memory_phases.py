"""Where a build's memory goes, stage by stage (prepare = ingest, plan, write, publish),
for a source of any kind but digits (told by its file names, as ``expand init`` does), 4
copies per image, 2 workers. Linux only (/proc).

Sampled every 10 ms: the parent's anonymous RSS (RssAnon), at its peak and at the end of
each stage, and each worker process's anonymous and file-backed RSS (RssFile: mapped
files, which ``ru_maxrss`` counts too) at their peaks.

    python bench/memory_phases.py SOURCE OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path


def rss_mb(pid: int | str = "self") -> dict[str, int]:
    """RssAnon and RssFile of a process in MB (empty once it has exited)."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("RssAnon", "RssFile")):
                    found[line.split(":")[0]] = int(line.split()[1]) // 1024
    except OSError:
        pass
    return found


def anon_mb() -> int:
    return rss_mb().get("RssAnon", 0)


def descendants(pid: int) -> set[str]:
    """Every process below ``pid`` (the fork server's workers are grandchildren)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[entry] = stat.read().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
    found, frontier = set(), {str(pid)}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def main() -> int:
    import pipeline.build as b
    from pipeline.build import load_config
    from pipeline.sources import detect_kind
    from pipeline.sources.archive import extracted

    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    with extracted(source) as folder:  # an archive: its kind from the files it holds
        kind = detect_kind(folder)
    config = load_config(
        None,
        [
            f"source.kind={kind}",
            f"source.path={source}",
            f"output.root={out}",
            "split.test_fraction=0.01",
            "augment.copies_per_image=4",
            'augment.transforms=[{"HorizontalFlip": {"p": 0.5}}]',
            "runner.workers=2",
        ],
    )
    stage, peaks, workers, done = ["start"], {}, {}, threading.Event()

    def sample() -> None:
        while not done.is_set():
            peaks[stage[0]] = max(peaks.get(stage[0], 0), anon_mb())
            for pid in descendants(os.getpid()):
                for key, mb in rss_mb(pid).items():
                    workers[(pid, key)] = max(workers.get((pid, key), 0), mb)
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
    # The busiest process below the parent: a shard worker (the fork server and the
    # resource tracker stay small).
    busiest = max({pid for pid, _ in workers}, key=lambda pid: workers.get((pid, "RssAnon"), 0))
    results["worker"] = {
        "peak_anon_mb": workers.get((busiest, "RssAnon"), 0),
        "peak_file_mb": workers.get((busiest, "RssFile"), 0),
    }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
