"""Running the stage list: :func:`run_stages` with an executor that says how each stage
runs (:class:`InProcess` here; ``flows.expand`` maps stages to Prefect tasks), and the
whole build in this process, :func:`build`.

The runner holds the dataset's lock, prepares, runs each stage that applies in
:data:`pipeline.build.stages.STAGES` order, and on any failure stops the worker processes
(when interrupted), removes the staging and turns a full disk into a clear error: once,
for every way of running.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from pipeline.build.context import BuildContext, dataset_dir, discard, prepare
from pipeline.build.stages import STAGES, Log, Stage, load_config, quiet
from pipeline.build.torchrun import SUMMARY_FILE, launch_train_gan
from pipeline.config import Config
from pipeline.core.progress import WRITING, report
from pipeline.core.workers import run_all, stop_workers, warm_up
from pipeline.gan.stage import train_gan_stage
from pipeline.ingest.space import raise_if_full
from pipeline.version.catalog import dataset_lock
from pipeline.version.manifest import load_manifest, manifest_digest
from pipeline.version.remote import remote_url


class Executor(Protocol):
    """How a runner runs the stages: prepare, one stage, a per-shard stage, a log line."""

    def prepare(self, config: Config, run: dict[str, Any], workers: int) -> BuildContext: ...

    def stage(self, stage: Stage, context: BuildContext) -> BuildContext: ...

    def shards(self, stage: Stage, context: BuildContext) -> BuildContext: ...

    def log(self, message: str, *, warning: bool = False) -> None: ...


class InProcess:
    """Runs every stage in this process; shards go to ``context.workers`` worker processes
    (:func:`pipeline.core.workers.run_all`). The entries come back in shard order; the bytes
    do not depend on the worker count."""

    def __init__(self, log: Log = quiet, warn: Log | None = None):
        self._log, self._warn = log, warn or log

    def prepare(self, config: Config, run: dict[str, Any], workers: int) -> BuildContext:
        return prepare(config, run, workers)

    def stage(self, stage: Stage, context: BuildContext) -> BuildContext:
        return stage.run(context, self._log)

    def shards(self, stage: Stage, context: BuildContext) -> BuildContext:
        total, written = sum(s.rows for s in context.shards), 0

        def done(_: int, entry: dict[str, Any]) -> None:
            nonlocal written
            written += entry["rows"]
            report(WRITING, written, total)

        calls = [(context, shard) for shard in context.shards]
        return replace(context, entries=run_all(stage.run, calls, context.workers, on_result=done))

    def log(self, message: str, *, warning: bool = False) -> None:
        (self._warn if warning else self._log)(message)


def local_workers(config: Config) -> int:
    """Worker processes on this machine: ``runner.workers`` for the local runner; one for
    Dask, whose cluster workers write the shards."""
    return config.runner.worker_count() if config.runner.kind == "local" else 1


def run_stages(config: Config, executor: Executor, run: dict[str, Any] | None = None) -> BuildContext:
    """Build (or find) the config's version: prepare, then each stage that applies.

    Args:
        run: recorded in the manifest's ``run`` (e.g. the orchestrator's run id).

    Returns:
        The last context: ``final_dir`` is the version, ``existing`` whether it was
        published before this run.
    """
    workers = local_workers(config)
    if workers > 1:
        warm_up(workers)  # the pool starts while this process ingests and plans
    # The lock is held here, in the runner's process, for the whole run: stages may run elsewhere.
    with dataset_lock(dataset_dir(config), purpose="expand run", timeout=config.output.lock_timeout):
        context = executor.prepare(config, dict(run or {}), workers)
        if context.existing:
            executor.log(f"version {context.version_id} already published at {context.final_dir}")
        elif context.space and context.space.short:
            executor.log(
                f"output.root {config.output.root} may run out of space: {context.space.describe()}",
                warning=True,
            )
        try:
            for stage in STAGES:
                if stage.applies(context.config) and (stage.existing or not context.existing):
                    execute = executor.shards if stage.per_shard else executor.stage
                    context = execute(stage, context)
        except BaseException as exc:
            try:
                if not isinstance(exc, Exception):  # interrupted: the workers' calls are not waited for
                    stop_workers()
            finally:  # a second Ctrl-C while the workers stop still removes the staging
                discard(context)
            raise_if_full(exc, config.output.root, context.space)
            raise
    return context


def build(config: Config, run: dict[str, Any] | None = None) -> tuple[Path, bool]:
    """Run all stages in this process, holding the dataset's lock.

    Returns:
        The version directory and whether it was newly published (False: it existed).
    """
    context = run_stages(config, InProcess(), run)
    return context.final_dir, not context.existing


def run_result(context: BuildContext) -> dict[str, Any]:
    """What ``expand run`` reports of a finished run: where the version is, what it holds,
    and what ingest, tuning and the gate decided."""
    manifest = load_manifest(context.final_dir)
    source, tune, synthesis = manifest.source, manifest.tune, manifest.synthesis
    return {
        "version_dir": str(context.final_dir),
        "version_id": context.version_id,
        "manifest_sha256": manifest_digest(context.final_dir),
        "remote": remote_url(context.config.output.remote, context.name, context.version_id),
        "created": not context.existing,
        "splits": {split: dict(info.by_origin) for split, info in manifest.splits.items()},
        "skipped": len(source.skipped),
        "ignored_files": source.ignored_files,
        "duplicate_groups": source.duplicates.groups,
        "tune": {"chosen": tune.chosen, "reason": tune.reason} if tune else None,
        "synthesis": synthesis.model_dump(
            mode="json", exclude_unset=True, include={"published", "gate", "short"}
        )
        if synthesis
        else None,
    }


def gan_out_dir(config: Config, out: str | Path | None = None) -> Path:
    """Where ``expand train-gan`` keeps the checkpoints: ``out``, else <output.root>/<name>-gan."""
    return Path(out) if out else config.output.root / f"{config.dataset_name()}-gan"


def train_gan_only(
    config: Config, out_dir: Path, *, resume: Path | None = None, on_metrics=None
) -> dict[str, Any]:
    """Train the GAN without publishing: ingest into staging, train, keep the checkpoints.
    With ``synthesis.train.processes`` above 1, on that many processes (torchrun); in a
    process torchrun started, as its rank (each rank stages the data itself, so machines
    need not share a disk; rank 0 writes ``out_dir``).

    Returns:
        The training summary; ``checkpoint`` points at ``out_dir/best.pt`` (None on the
        other ranks).
    """
    from pipeline.gan.distributed import current_world, launched_distributed
    from pipeline.gan.synthesis import REFERENCE_FILE  # torch: only for GAN training

    if config.synthesis.train.processes > 1 and not launched_distributed():
        return launch_train_gan(config, out_dir, resume=resume)
    world = current_world()
    # Staged under "<name>-gan" (rank r > 0: "-rank<r>"), where nothing is ever published.
    suffix = f"-rank{world.rank}" if world.rank else ""
    staged = config.model_copy(update={"name": f"{config.dataset_name()}-gan{suffix}"})
    with dataset_lock(dataset_dir(staged), purpose="expand train-gan", timeout=config.output.lock_timeout):
        context = prepare(staged)
        try:
            summary = train_gan_stage(
                context.config,
                context.work_dir,
                context.shape,
                len(context.class_names),
                resume=resume,
                on_metrics=on_metrics,
            )
            if not world.main:
                return summary
            out_dir.mkdir(parents=True, exist_ok=True)
            for name in ("best.pt", "last.pt", REFERENCE_FILE):
                shutil.copyfile(context.work_dir / "gan" / name, out_dir / name)
            return {**summary, "checkpoint": str(out_dir / "best.pt")}
        finally:
            discard(context)


def train_gan_distributed(
    config: Config, out_dir: Path, *, resume: Path | None = None, on_metrics=None
) -> dict[str, Any]:
    """:func:`train_gan_only` in a process torchrun started: join the process group, train
    as this rank, leave; rank 0 also writes the summary to ``out_dir/summary.json``."""
    from pipeline.core.devices import pick_device
    from pipeline.gan.distributed import joined

    with joined(pick_device(config.synthesis.train.device, "synthesis.train.device").type) as world:
        summary = train_gan_only(
            config, out_dir, resume=resume, on_metrics=on_metrics if world.main else None
        )
        if world.main:
            (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, sort_keys=True))
    return summary


def _main(argv: list[str]) -> int:
    """``python -m pipeline.build.runner CONFIG OUT_DIR [RESUME]``: one rank of
    :func:`pipeline.build.torchrun.launch_train_gan`."""
    import sys

    from pipeline.build.stages import gan_progress_line

    config = load_config(argv[0])
    settings = config.synthesis.train

    def show(metrics: dict[str, float]) -> None:
        print(gan_progress_line(metrics, settings), file=sys.stderr, flush=True)

    resume = Path(argv[2]) if len(argv) > 2 else None
    train_gan_distributed(config, Path(argv[1]), resume=resume, on_metrics=show)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
