"""Prefect flows: ``expand`` (the build's stage list, one task per stage and per shard)
and ``train_gan`` (train the generator alone).

The flow maps :data:`pipeline.build.stages.STAGES` to tasks through
:func:`pipeline.build.runner.run_stages`, which owns the order, the clean-up of a failed run
and the disk-full errors; tasks pass a small build context, paths and shard entries, never
images. Stages marked ``retried`` (shard writes, publish, upload) are retried unless another
attempt cannot help (bad input, a full disk, a read-only file system: see
:func:`pipeline.ingest.space.worth_retrying`); the writer removes a partial shard before a
retry. The run's artifacts are made after the stages, outside any retried task.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
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

from flows.policy import POLICY_ENV, serve_policy, served_parameters
from flows.settings import one_off_run, temporary_server_url
from pipeline.build import load_config
from pipeline.build.context import BuildContext, prepare
from pipeline.build.plan import ShardSpec
from pipeline.build.runner import gan_out_dir, run_result, run_stages, train_gan_only
from pipeline.build.stages import Stage, gan_progress_line, stage_named
from pipeline.config import Config
from pipeline.core.errors import ConfigError
from pipeline.core.progress import GAN, WRITING, ProgressLog, report, reporting
from pipeline.core.workers import run_one
from pipeline.ingest.space import worth_retrying
from pipeline.version.manifest import load_manifest
from pipeline.version.summary import count_rows, run_markdown, tune_rows

_RETRIES = 2


def _retry_if_it_may_help(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: the failed attempt's exception is the state's data."""
    return not isinstance(state.data, BaseException) or worth_retrying(state.data)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(config: Config, run: dict[str, Any], processes: int) -> BuildContext:
    return prepare(config, run, processes)


@task(cache_policy=NO_CACHE, retry_delay_seconds=1, retry_condition_fn=_retry_if_it_may_help)
def stage_task(name: str, context: BuildContext, on_cluster: bool = False) -> BuildContext:
    """One stage of :data:`~pipeline.build.stages.STAGES`, by name, logging to the task run;
    ``on_cluster``: a stage that can spread its work hands its chunks to the flow's cluster."""
    stage = stage_named(name)
    if stage.spread and on_cluster:
        return stage.run(context, get_run_logger().info, _on_cluster)
    return stage.run(context, get_run_logger().info)


@task(
    cache_policy=NO_CACHE,
    retries=_RETRIES,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_if_it_may_help,
    task_run_name="chunk-{index}",
)
def chunk_task(fn: Callable[..., Any], args: tuple[Any, ...], index: int) -> Any:
    """One chunk of a stage's work (e.g. sampling candidates), on a cluster worker."""
    return fn(*args)


def _on_cluster(fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
    """A stage's :data:`~pipeline.gan.filtering.Spread`: one task per chunk on the flow's
    task runner (nested in the stage's task, they go to its Dask cluster)."""
    futures = chunk_task.map(unmapped(fn), calls, range(len(calls)))
    try:
        return [future.result() for future in futures]
    except BaseException:
        _stop(futures)
        raise


@task(
    cache_policy=NO_CACHE,
    retries=_RETRIES,
    retry_delay_seconds=1,
    retry_condition_fn=_retry_if_it_may_help,
    task_run_name="write-{shard.split}-{shard.index}",
)
def shard_task(name: str, context: BuildContext, shard: ShardSpec, processes: int) -> dict[str, Any]:
    """One shard of a per-shard stage. Local: this task's thread hands the shard to a worker
    process of the ``processes``-process pool. Dask: the task already runs on a cluster
    worker and writes the shard there."""
    return run_one(stage_named(name).run, (context, shard), processes)


class PrefectTasks:
    """The runner's executor in a flow run: each stage a task named after it, each shard a
    task on the flow's task runner, log lines to the flow run's log. ``on_cluster`` (the
    Dask runner): stages that can spread their work send its chunks to the cluster too."""

    def __init__(self, logger, *, on_cluster: bool = False):
        self._logger, self._on_cluster = logger, on_cluster

    def prepare(self, config: Config, run: dict[str, Any], workers: int) -> BuildContext:
        context = prepare_task(config, run, workers)
        run_name = _name_run(context.name, context.version_id)
        if not context.existing:
            context.details["run"]["flow_run_name"] = run_name  # the manifest records the new name
        return context

    def stage(self, stage: Stage, context: BuildContext) -> BuildContext:
        retries = _RETRIES if stage.retried else 0
        run = stage_task.with_options(name=stage.name, retries=retries)
        return run(stage.name, context, self._on_cluster)

    def shards(self, stage: Stage, context: BuildContext) -> BuildContext:
        mapped = shard_task.with_options(name=stage.name)
        futures = mapped.map(
            unmapped(stage.name), unmapped(context), context.shards, unmapped(context.workers)
        )
        try:
            _log_progress(futures, context.shards)
            entries = [future.result() for future in futures]
        except BaseException:
            _stop(futures)
            raise
        return replace(context, entries=entries)

    def log(self, message: str, *, warning: bool = False) -> None:
        (self._logger.warning if warning else self._logger.info)("%s", message)


def _publish_artifacts(version: Path, created: bool) -> None:
    """The run's summary and row counts as Prefect artifacts (keyed by dataset name)."""
    manifest = load_manifest(version)
    key = re.sub(r"[^a-z0-9-]+", "-", manifest.name.lower()).strip("-") or "dataset"
    create_markdown_artifact(
        markdown=run_markdown(manifest, version, created), key=f"{key}-summary", description="expand run"
    )
    create_table_artifact(
        table=count_rows(manifest), key=f"{key}-counts", description="rows per class: source, then by origin"
    )
    if manifest.tune is not None:
        create_table_artifact(
            table=tune_rows(manifest.tune),
            key=f"{key}-tune",
            description=f"augment.tune: {manifest.tune.reason}",
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
    config_path: str,
    overrides: list[str],
    *,
    cron: str | None,
    interval: int | None,
    name: str | None,
    allow: list[str] | None = None,
) -> None:
    """Serve the ``expand`` flow as a deployment with a schedule (long-running, like
    ``flow.serve``); runs get the config path and overrides as parameters, and may add
    overrides only for the keys ``allow`` names (see :mod:`flows.policy`)."""
    config = load_config(config_path, overrides)
    dataset = config.dataset_name()
    policy = serve_policy(config_path, overrides, allow or [])
    os.environ[POLICY_ENV] = json.dumps(policy)  # the runs this process starts inherit it
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
        :func:`pipeline.build.runner.run_result`: ``version_dir``, ``version_id``,
        ``created`` (False when a version with the same content already existed and
        nothing was written), ``splits``, and what ingest, tuning and the gate decided.
    """
    logger = get_run_logger()
    config_path, overrides = served_parameters(config_path, overrides or [])
    config = load_config(config_path, overrides)
    # Long stages log their progress (GAN training and writing log their own lines).
    with reporting(ProgressLog(logger, skip=(GAN, WRITING))):
        executor = PrefectTasks(logger, on_cluster=config.runner.kind == "dask")
        context = run_stages(config, executor, _run_record())
    _publish_artifacts(context.final_dir, created=not context.existing)
    return run_result(context)


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
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ConfigError(
                "runner.kind: dask needs the dask extra: pip install 'dataset-expand[dask]'"
            ) from None

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
    target = gan_out_dir(config, out_dir)
    logger, settings = get_run_logger(), config.synthesis.train
    with reporting(ProgressLog(logger, skip=(GAN,))):
        summary = train_gan_only(
            config,
            target,
            resume=Path(resume) if resume else None,
            on_metrics=lambda metrics: logger.info("%s", gan_progress_line(metrics, settings)),
        )
    return {k: v for k, v in summary.items() if k != "history"}
