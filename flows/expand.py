"""Prefect flows: ``expand`` (prepare -> [train GAN -> synthesize] -> plan -> shards -> publish)
and ``train_gan`` (train the generator alone).

Tasks only call :mod:`pipeline.build`; they pass a small build context, paths and shard
entries, never images. Shard writes, publish and upload are retried (I/O) unless another
attempt cannot help (bad input, a full disk, a read-only file system: see
:func:`pipeline.ingest.space.worth_retrying`); the writer removes a partial shard before a retry,
and a failed run removes its staging directory.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from flows.settings import one_off_run, temporary_server_url
from pipeline.build.stages import plan
from pipeline.build.plan import ShardSpec
from pipeline.build.stages import (
    BuildContext,
    dataset_dir,
    discard,
    load_config,
    prepare,
    publish,
    synthesize_for,
    train_gan_for,
    train_gan_only,
    tune,
    upload,
    write_shard_in_worker,
)
from pipeline.config import Config, GanTrainConfig
from pipeline.core.progress import GAN, WRITING, ProgressLog, report, reporting
from pipeline.core.workers import stop_workers, warm_up
from pipeline.ingest.space import raise_if_full, worth_retrying
from pipeline.version.catalog import dataset_lock
from pipeline.version.manifest import read_manifest
from pipeline.version.remote import remote_url
from pipeline.version.summary import count_rows, run_markdown, tune_rows


def _retry_if_it_may_help(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: the failed attempt's exception is the state's data."""
    return not isinstance(state.data, BaseException) or worth_retrying(state.data)


def _training_logger(settings: GanTrainConfig):
    """An ``on_metrics`` callback that logs GAN progress: losses, img/s and time left."""
    logger, total_steps = get_run_logger(), settings.steps

    def log(metrics: dict[str, float]) -> None:
        if "fd" in metrics:
            logger.info("GAN step %d: classifier FD %.3f", metrics["step"], metrics["fd"])
            return
        steps_per_s = metrics["img_per_s"] / settings.batch_size
        logger.info(
            "GAN step %d/%d: d_loss %.3f g_loss %.3f, %.0f img/s, about %.0f s left",
            metrics["step"],
            total_steps,
            metrics["d_loss"],
            metrics["g_loss"],
            metrics["img_per_s"],
            (total_steps - metrics["step"]) / max(steps_per_s, 1e-9),
        )

    return log


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(config: Config, run: dict[str, Any], processes: int) -> BuildContext:
    return prepare(config, run, processes)


@task(name="tune-augmentation", cache_policy=NO_CACHE)
def tune_task(context: BuildContext, processes: int) -> BuildContext:
    context = tune(context, processes)
    get_run_logger().info("augment.tune: %s", context.details["tune"]["reason"])
    return context


@task(name="train-gan", cache_policy=NO_CACHE)
def train_gan_task(context: BuildContext) -> str:
    log = _training_logger(context.config.synthesis.train)
    return train_gan_for(context, on_metrics=log)["checkpoint"]


@task(name="synthesize", cache_policy=NO_CACHE)
def synthesize_task(context: BuildContext, checkpoint: str) -> dict[str, Any]:
    report = synthesize_for(context, Path(checkpoint))
    gate = report.get("gate")
    if gate:
        get_run_logger().info("utility gate: %s", gate["reason"])
    return report


@task(name="plan", cache_policy=NO_CACHE)
def plan_task(context: BuildContext, report: dict[str, Any] | None) -> BuildContext:
    return plan(context, report)


@task(
    name="write-shard",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_if_it_may_help,
    task_run_name="write-{shard.split}-{shard.index}",
)
def write_shard_task(context: BuildContext, shard: ShardSpec, processes: int) -> dict[str, Any]:
    return write_shard_in_worker(context, shard, processes)


@task(
    name="publish",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_if_it_may_help,
)
def publish_task(context: BuildContext, entries: list[dict[str, Any]]) -> str:
    version = publish(context, entries)
    _publish_artifacts(version, created=not context.existing)
    return str(version)


@task(
    name="upload",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_if_it_may_help,
)
def upload_task(context: BuildContext) -> None:
    upload(context, context.final_dir)
    get_run_logger().info("uploaded %s to %s", context.version_id, context.config.output.remote)


def _publish_artifacts(version: Path, created: bool) -> None:
    """The run's summary and row counts as Prefect artifacts (keyed by dataset name)."""
    manifest = read_manifest(version)
    key = re.sub(r"[^a-z0-9-]+", "-", manifest["name"].lower()).strip("-") or "dataset"
    create_markdown_artifact(
        markdown=run_markdown(manifest, version, created), key=f"{key}-summary", description="expand run"
    )
    create_table_artifact(
        table=count_rows(manifest), key=f"{key}-counts", description="rows per class: source, then by origin"
    )
    if "tune" in manifest:
        create_table_artifact(
            table=tune_rows(manifest["tune"]),
            key=f"{key}-tune",
            description=f"augment.tune: {manifest['tune']['reason']}",
        )


def _log_progress(futures, shards: list[ShardSpec]) -> None:
    """Log each written shard with the rows written so far, the rate and the time left;
    report the rows to :mod:`pipeline.core.progress` too. The first shard that fails (its
    retries spent) raises its error: the run stops there."""
    logger = get_run_logger()
    rows_of = dict(zip(futures, (s.rows for s in shards), strict=True))
    total, done, started = sum(rows_of.values()), 0, time.perf_counter()
    for count, future in enumerate(as_completed(futures), start=1):
        future.result()  # done: raises a failed shard's error
        done += rows_of[future]
        report(WRITING, done, total)
        rate = done / max(time.perf_counter() - started, 1e-9)
        logger.info(
            "shards %d/%d: %d of %d rows, %.0f rows/s, about %.0f s left",
            count,
            len(shards),
            done,
            total,
            rate,
            (total - done) / rate,
        )


def _stop(futures) -> None:
    """Cancel the shard tasks that have not started and wait for the ones running, so
    that no shard writes into the staging folder while a failed or interrupted run
    removes it (an interrupted run has stopped the worker processes first)."""
    for future in futures:
        future.wrapped_future.cancel()
    for future in futures:
        with contextlib.suppress(Exception):  # a cancelled or failed shard: nothing to wait for
            future.wait()


def _name_run(dataset: str, version_id: str) -> str:
    """Name the flow run after the dataset and version, and tag it, once the id is known."""
    name, tags = f"{dataset}-{version_id}", sorted({*flow_run.tags, "dataset-expand", f"dataset:{dataset}"})
    context = FlowRunContext.get()  # a sync flow's run: its own client and connection
    context.client.update_flow_run(context.flow_run.id, name=name, tags=tags)
    return name


def serve_expand(
    config_path: str, overrides: list[str], *, cron: str | None, interval: int | None, name: str | None
) -> None:
    """Serve the ``expand`` flow as a deployment with a schedule (long-running, like
    ``flow.serve``); runs get the config path and overrides as parameters."""
    config = load_config(config_path, overrides)
    dataset = config.dataset_name()
    expand.serve(
        name=name or dataset,
        cron=cron,
        interval=interval,
        parameters={"config_path": str(Path(config_path).resolve()), "overrides": list(overrides)},
        tags=["dataset-expand", f"dataset:{dataset}"],
        description=f"expand {config_path}: publish a new version of {dataset} when the source changed",
    )


@flow(name="expand", log_prints=True)
def expand(config_path: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Publish one dataset version from a YAML config (plus ``dotted.key=value`` overrides).

    Returns:
        ``{"version_dir", "version_id", "created", "splits"}``; ``created`` is False when
        a version with the same content already existed and nothing was written.
    """
    logger = get_run_logger()
    config = load_config(config_path, overrides or [])
    # Long stages log their progress (GAN training and writing log their own lines).
    with reporting(ProgressLog(logger, skip=(GAN, WRITING))):
        return _expand(config, logger)


def _expand(config: Config, logger) -> dict[str, Any]:
    # Local: the worker processes start while the source is ingested and the plan made.
    processes = config.runner.worker_count() if config.runner.kind == "local" else 1
    if processes > 1:
        warm_up(processes)
    # The lock is held here, in the flow's process, for the whole run: tasks may run elsewhere.
    with dataset_lock(dataset_dir(config), purpose="expand run", timeout=config.output.lock_timeout):
        context = prepare_task(config, _run_record(), processes)
        run_name = _name_run(context.name, context.version_id)
        if context.existing:
            publish_task(context, [])
            logger.info("version %s already published at %s", context.version_id, context.final_dir)
            if config.output.remote:
                upload_task(context)
            return _result(context, created=False)
        context.details["run"]["flow_run_name"] = run_name  # the manifest records the new name
        if context.space and context.space.short:
            logger.warning(
                "output.root %s may run out of space: %s", config.output.root, context.space.describe()
            )
        futures = []
        try:
            if config.augment.tune.enabled:
                context = tune_task(context, processes)
            report = None
            if config.synthesis.enabled:
                checkpoint = (
                    str(config.synthesis.checkpoint)
                    if config.synthesis.checkpoint
                    else train_gan_task(context)
                )
                report = synthesize_task(context, checkpoint)
            context = plan_task(context, report)
            logger.info("building %s: %d shards", context.version_id, len(context.shards))
            # Local: the task's thread hands the shard to a worker process. Dask: the task
            # already runs on a cluster worker and writes the shard there.
            futures = write_shard_task.map(unmapped(context), context.shards, unmapped(processes))
            _log_progress(futures, context.shards)
            entries = [future.result() for future in futures]
            publish_task(context, entries)
        except BaseException as exc:
            try:
                if not isinstance(exc, Exception):  # interrupted (Ctrl-C, SIGTERM), not failed
                    stop_workers()
                _stop(futures)
            finally:  # a second Ctrl-C while the shards stop still removes the staging
                discard(context)
            raise_if_full(exc, config.output.root, context.space)
            raise
        if config.output.remote:  # the version is published here; a failed upload keeps it
            upload_task(context)
    return _result(context, created=True)


def expand_for(config: Config):
    """The ``expand`` flow with the task runner ``config.runner`` asks for.

    ``local``: one thread per concurrent shard task, each handing its shard to this
    process's pool of ``runner.workers`` worker processes (see :mod:`pipeline.core.workers`).
    ``dask``: prefect-dask's ``DaskTaskRunner`` on the cluster at ``runner.address``, or
    on a local cluster of ``runner.workers`` single-threaded worker processes. Only the
    shard tasks are submitted to the runner; the workers need the output root at the same
    path (a shared file system).
    """
    runner = config.runner
    if runner.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if runner.address:
            return expand.with_options(task_runner=DaskTaskRunner(address=runner.address))
        cluster = {"n_workers": runner.worker_count(), "threads_per_worker": 1, "dashboard_address": None}
        server = temporary_server_url()
        if server:  # the workers record their task runs with it
            cluster["env"] = {"PREFECT_API_URL": server}
        return expand.with_options(task_runner=DaskTaskRunner(cluster_kwargs=cluster))
    return expand.with_options(task_runner=ThreadPoolTaskRunner(max_workers=runner.worker_count()))


def run_expand(config: Config, config_path: str | None, overrides: list[str]) -> dict[str, Any]:
    """Run the ``expand`` flow once in this process, as ``expand run`` does.

    Under :func:`flows.settings.one_off_run`: no flow-run heartbeats, and a temporary
    server that the run starts records task runs in batches and outlives Ctrl-C.
    """
    with one_off_run():
        return expand_for(config)(config_path=config_path, overrides=overrides)


def _run_record() -> dict[str, Any]:
    # From the run's context: prefect.runtime.deployment.id asks the API for the flow run.
    run = FlowRunContext.get().flow_run
    return {
        "orchestrator": "prefect",
        "flow_run_id": str(run.id),
        "flow_run_name": run.name,
        "deployment_id": str(run.deployment_id) if run.deployment_id else None,
    }


@flow(name="train_gan", log_prints=True)
def train_gan(
    config_path: str | None = None,
    overrides: list[str] | None = None,
    out_dir: str | None = None,
    resume: str | None = None,
) -> dict[str, Any]:
    """Train the class-conditional GAN on the config's training split; keep best and last.

    Returns:
        ``{"checkpoint", "sha256", "best", ...}``; pass ``checkpoint`` as
        ``synthesis.checkpoint`` to sample from it without training again.
    """
    config = load_config(config_path, overrides or [])
    target = Path(out_dir) if out_dir else config.output.root / f"{config.dataset_name()}-gan"
    with reporting(ProgressLog(get_run_logger(), skip=(GAN,))):
        summary = train_gan_only(
            config,
            target,
            resume=Path(resume) if resume else None,
            on_metrics=_training_logger(config.synthesis.train),
        )
    return {k: v for k, v in summary.items() if k != "history"}


def _result(context: BuildContext, created: bool) -> dict[str, Any]:
    manifest = read_manifest(context.final_dir)
    return {
        "version_dir": str(context.final_dir),
        "version_id": context.version_id,
        "remote": remote_url(context.config.output.remote, context.name, context.version_id),
        "created": created,
        "splits": {split: info["by_origin"] for split, info in manifest["splits"].items()},
        "skipped": len(manifest["source"].get("skipped", [])),
        "ignored_files": manifest["source"].get("ignored_files", 0),
        "duplicate_groups": manifest["source"].get("duplicates", {}).get("groups", 0),
        "tune": {k: manifest["tune"][k] for k in ("chosen", "reason")} if "tune" in manifest else None,
        "synthesis": {
            k: manifest["synthesis"][k] for k in ("published", "gate", "short") if k in manifest["synthesis"]
        }
        if "synthesis" in manifest
        else None,
    }
