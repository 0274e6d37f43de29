"""Prefect flow ``evaluate``: does a version help a classifier? (``expand evaluate VERSION``)

One task per training subset (real, real+augmented, real+augmented+synthetic, synthetic
only), run one after another (each already uses every core; each reads the version itself,
since tasks pass paths, not arrays), then a task that writes the report into the
version's ``attachments/`` and publishes it as Prefect artifacts. A subset with the same
rows as an earlier one (real+augmented+synthetic in a version published without synthetic
rows) takes that one's result instead of training again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.config import EvaluateConfig, validate_section
from pipeline.config.evaluate import report_stem
from pipeline.evaluate.evaluation import (
    SUBSETS,
    accuracy_text,
    evaluate_subset,
    markdown,
    report,
    reused_result,
    write_report,
)
from pipeline.version.catalog import resolve_version
from pipeline.version.manifest import load_manifest


@task(name="evaluate-subset", cache_policy=NO_CACHE, task_run_name="evaluate-{subset}")
def evaluate_subset_task(version: str, subset: str, settings: EvaluateConfig) -> dict[str, Any]:
    return evaluate_subset(Path(version), subset, settings)


@task(name="write-evaluation", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def write_report_task(version: str, document: dict[str, Any]) -> list[str]:
    paths = write_report(version, document)
    key = f"{document['version_id']}-{report_stem(document['settings']['real_per_class'])}".lower()
    create_markdown_artifact(
        markdown=markdown(document), key=key, description="test accuracy by training rows"
    )
    create_table_artifact(
        table=[
            {
                "training rows": name,
                "count": r["rows"],
                "mean": r.get("mean"),
                "std": r.get("std"),
                "balanced mean": r.get("balanced_accuracy", {}).get("mean"),
            }
            for name, r in document["results"].items()
        ],
        key=f"{key}-table",
    )
    return [str(p) for p in paths]


_DEFAULTS = EvaluateConfig()


@flow(name="evaluate", log_prints=True)
def evaluate(
    version: str,
    seeds: int = _DEFAULTS.seeds,
    epochs: int = _DEFAULTS.epochs,
    real_per_class: int | None = _DEFAULTS.real_per_class,
    device: str = _DEFAULTS.device,
    grid: int = _DEFAULTS.grid,
) -> dict[str, Any]:
    """Evaluate a version; returns the report (also written to ``attachments/``).

    The parameters are :class:`~pipeline.config.EvaluateConfig`'s keys; a bad one raises
    ``ConfigError``.
    """
    logger = get_run_logger()
    path = str(resolve_version(version))
    settings = validate_section(
        EvaluateConfig,
        {"seeds": seeds, "epochs": epochs, "real_per_class": real_per_class, "device": device, "grid": grid},
    )
    results = {}
    manifest = load_manifest(path)
    for subset in SUBSETS:
        results[subset] = reused_result(manifest, results, subset) or evaluate_subset_task(
            path, subset, settings
        )
        if results[subset]["rows"]:
            logger.info("%s: %s", subset, accuracy_text(results[subset]))
    document = report(Path(path), settings, results)
    document["files"] = write_report_task(path, document)
    return document
