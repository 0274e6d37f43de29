"""The ``expand`` Prefect flow: prepare -> one task per shard -> publish.

Tasks only call :mod:`pipeline.build`; they pass a small build context and shard entries,
never images. Shard writes are retried (I/O); the writer removes a partial shard before a
retry, and a failed run removes its staging directory.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.utilities.annotations import unmapped

from pipeline.build import BuildContext, discard, prepare, publish, write_shard
from pipeline.config import Config, load_config
from pipeline.manifest import read_manifest
from pipeline.plan import ShardSpec


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(config: Config) -> BuildContext:
    return prepare(config)


@task(
    name="write-shard",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    task_run_name="write-{shard.split}-{shard.index}",
)
def write_shard_task(context: BuildContext, shard: ShardSpec) -> dict[str, Any]:
    return write_shard(context, shard)


@task(name="publish", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def publish_task(context: BuildContext, entries: list[dict[str, Any]]) -> str:
    return str(publish(context, entries))


@flow(name="expand", log_prints=True)
def expand(config_path: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Publish one dataset version from a YAML config (plus ``dotted.key=value`` overrides).

    Returns:
        ``{"version_dir", "version_id", "created"}``; ``created`` is False when a
        version with the same content already existed and nothing was written.
    """
    logger = get_run_logger()
    config = load_config(config_path, overrides or [])
    context = prepare_task(config)
    if context.existing:
        logger.info("version %s already published at %s", context.version_id, context.final_dir)
        return _result(context, created=False)
    logger.info("building %s: %d shards", context.version_id, len(context.shards))
    try:
        futures = write_shard_task.map(unmapped(context), context.shards)
        wait(futures)  # let every shard settle before a failure removes staging
        entries = [future.result() for future in futures]
        publish_task(context, entries)
    except BaseException:
        discard(context)
        raise
    return _result(context, created=True)


def _result(context: BuildContext, created: bool) -> dict[str, Any]:
    manifest = read_manifest(context.final_dir)
    return {
        "version_dir": str(context.final_dir),
        "version_id": context.version_id,
        "created": created,
        "splits": {split: info["by_origin"] for split, info in manifest["splits"].items()},
    }
