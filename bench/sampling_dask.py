"""Filtered sampling in this process against on a Dask cluster (the flow's ``runner.kind:
dask``): candidates per second, and whether the rows are the same.

    python bench/sampling_dask.py --candidates 8192 --workers 2 [--address tcp://host:8786]

The generator (untrained: sampling costs the same) is the default GAN at 32x32 RGB, 10
classes; the filter keeps every candidate, so exactly ``--candidates`` are made, in
chunks of :data:`pipeline.gan.filtering.CHUNK`. Each chunk on a worker loads the
checkpoint and the reference classifier from disk, samples with this process's torch
thread count (the version id records it), writes its images to the scratch folder and
returns the scores; the time includes all of it, not the cluster's start (reported apart).
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import Config  # noqa: E402
from pipeline.evaluate.classifier import ClassifierSpec, new_classifier  # noqa: E402
from pipeline.gan.checkpoint import GanShape, save_checkpoint  # noqa: E402
from pipeline.gan.filtering import CHUNK, Sampler, SamplerFiles, sample_until_filled  # noqa: E402
from pipeline.gan.train import GanTrainer  # noqa: E402

SHAPE = GanShape(10, 3, 32, 32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=8192)
    parser.add_argument("--workers", type=int, default=2, help="local cluster workers (no --address)")
    parser.add_argument("--address", help="scheduler of an existing cluster")
    args = parser.parse_args()
    import distributed

    config = Config.model_validate(
        {"synthesis": {"enabled": True, "device": "cpu", "filter": {"min_confidence": 0.0}}}
    )
    wanted = dict.fromkeys(range(SHAPE.num_classes), args.candidates // SHAPE.num_classes)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = _files(config, folder)
        sampler = Sampler.load(files)
        started = time.perf_counter()
        here = sample_until_filled(sampler, wanted)
        in_process = time.perf_counter() - started
        started = time.perf_counter()
        if args.address:
            cluster, workers = None, None
            client = distributed.Client(args.address)
        else:
            cluster = distributed.LocalCluster(
                n_workers=args.workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
            )
            client, workers = distributed.Client(cluster), args.workers
        cluster_start = time.perf_counter() - started
        try:

            def spread(fn, calls):
                return client.gather(client.map(fn, *zip(*calls, strict=True), pure=False))

            started = time.perf_counter()
            there = sample_until_filled(sampler, wanted, spread=spread, files=files, scratch=folder / "c")
            on_cluster = time.perf_counter() - started
            workers = workers or len(client.scheduler_info()["workers"])
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    made = len(here[0]["labels"])
    same = all(np.array_equal(here[0][k], there[0][k]) for k in here[0]) and np.array_equal(here[1], there[1])
    print(
        json.dumps(
            {
                "candidates": made,
                "chunk": CHUNK,
                "shape": [SHAPE.channels, SHAPE.height, SHAPE.width],
                "width": config.synthesis.train.width,
                "threads": files.threads,
                "workers": workers,
                "in_process_s": round(in_process, 2),
                "in_process_per_s": round(made / in_process, 1),
                "cluster_s": round(on_cluster, 2),
                "cluster_per_s": round(made / on_cluster, 1),
                "cluster_start_s": round(cluster_start, 2),
                "same_rows": bool(same),
            },
            indent=1,
        )
    )
    return 0


def _files(config: Config, folder: Path) -> SamplerFiles:
    trainer = GanTrainer(
        images=np.zeros((8, 32, 32, 3), np.uint8),
        labels=np.arange(8) % SHAPE.num_classes,
        shape=SHAPE,
        settings=config.synthesis.train.model_copy(update={"device": "cpu"}),
        seed=config.seed,
    )
    save_checkpoint(trainer.state_dict(), folder / "best.pt")
    spec = ClassifierSpec()
    torch.save(new_classifier((3, 32, 32), SHAPE.num_classes, spec).state_dict(), folder / "reference.pt")
    threads = torch.get_num_threads()
    return SamplerFiles(config, SHAPE, folder / "best.pt", folder / "reference.pt", spec, threads)


if __name__ == "__main__":
    sys.exit(main())
