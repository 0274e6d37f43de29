"""What a run did, for people: rows per class before and after, and a Markdown summary.

Both come from a published version's manifest, so the flow (as Prefect artifacts) and the
command line (``expand run --json``) show the same figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.version.layout import ORIGINS
from pipeline.version.manifest import MANIFEST_FILE
from pipeline.version.model import Manifest, SourceInfo, TuneSummary, as_manifest, as_tune_summary
from pipeline.version.pictures import TUNE_FILE, tune_column

_LISTED_SKIPPED = 20  # quarantined files named in the summary (the manifest lists all)


def count_rows(manifest: Manifest | dict[str, Any]) -> list[dict[str, Any]]:
    """One row per split and class: source images (before) and rows by origin (after).
    (A dict ``manifest`` is validated as a :class:`~pipeline.version.model.Manifest`.)"""
    manifest = as_manifest(manifest)
    before = manifest.source.counts
    rows = []
    for split in sorted(manifest.splits):
        by_origin = manifest.splits[split].by_origin_class
        for name in manifest.class_names:
            after = {origin: by_origin.get(origin, {}).get(name, 0) for origin in ORIGINS}
            rows.append(
                {
                    "split": split,
                    "class": name,
                    "source images": before.get(split, {}).get(name, 0),
                    **after,
                    "rows": sum(after.values()),
                }
            )
    return rows


def run_markdown(manifest: Manifest | dict[str, Any], version_dir: Path, created: bool) -> str:
    """A Markdown summary of the run that published (or found) ``version_dir`` (a dict
    ``manifest`` is validated as a :class:`~pipeline.version.model.Manifest`)."""
    manifest = as_manifest(manifest)
    run = manifest.run
    lines = [
        f"# {manifest.name}: version `{manifest.version_id}`",
        "",
        ("Published" if created else "Already published (nothing written)")
        + f" at [{version_dir}]({version_dir.resolve().as_uri()}) "
        + f"([manifest]({(version_dir / MANIFEST_FILE).resolve().as_uri()})).",
        "",
        f"Run {run.started} to {run.finished} on {run.host}; code {run.code_version}.",
        "",
        "| split | real | augmented | synthetic | rows |",
        "|---|---:|---:|---:|---:|",
    ]
    for split, info in sorted(manifest.splits.items()):
        counts = [info.by_origin.get(origin, 0) for origin in ORIGINS]
        lines.append(f"| {split} | " + " | ".join(f"{c:,}" for c in counts) + f" | {info.rows:,} |")
    lines += [
        "",
        *_source_lines(manifest.source),
        *_tune_lines(manifest, version_dir),
        *_synthesis_lines(manifest, version_dir),
    ]
    return "\n".join(lines) + "\n"


def tune_rows(summary: TuneSummary | dict[str, Any]) -> list[dict[str, Any]]:
    """One row per augmentation candidate of ``augment.tune``: its score, rows, chosen (a
    dict ``summary`` is validated as a :class:`~pipeline.version.model.TuneSummary`)."""
    summary = as_tune_summary(summary)
    column = tune_column(summary)
    return [
        {
            "candidate": r.name,
            column: round(r.mean, 4),
            "std": round(r.std, 4),
            "rows": r.rows,
            "chosen": r.name == summary.chosen,
        }
        for r in summary.candidates
    ]


def tune_markdown(summary: TuneSummary | dict[str, Any]) -> list[str]:
    """The candidates of ``augment.tune`` as a Markdown table, with the choice (a dict
    ``summary`` is validated as a :class:`~pipeline.version.model.TuneSummary`)."""
    summary = as_tune_summary(summary)
    column = tune_column(summary)
    lines = [
        f"Augmentation chosen on {summary.validation_rows:,} validation images carved from the real "
        f"training split ({summary.seeds} classifier seeds each): {summary.reason}.",
        "",
        f"| candidate | {column} | rows | |",
        "|---|---:|---:|---|",
    ]
    for row in tune_rows(summary):
        accuracy = f"{row[column]:.4f} ± {row['std']:.4f}"
        lines.append(
            f"| {row['candidate']} | {accuracy} | {row['rows']:,} | {'chosen' if row['chosen'] else ''} |"
        )
    lines += [f"| {n.candidate} | not run: {n.reason} | | |" for n in summary.not_run]
    return lines


def _tune_lines(manifest: Manifest, version_dir: Path) -> list[str]:
    if manifest.tune is None:
        return []
    chart = (version_dir / TUNE_FILE).resolve().as_uri()
    return [
        "",
        "## Augmentation tuning",
        "",
        *tune_markdown(manifest.tune),
        "",
        f"![{tune_column(manifest.tune)}]({chart})",
    ]


def _source_lines(source: SourceInfo) -> list[str]:
    skipped = source.skipped
    lines = [
        f"Source: {source.images:,} images ({source.kind}); {len(skipped)} left out, "
        f"{source.duplicates.groups} groups of identical images, "
        f"{source.ignored_files} non-image files ignored.",
    ]
    if skipped:
        lines += ["", "| left out | reason |", "|---|---|"]
        lines += [f"| `{s.source_id}` | {s.reason} |" for s in skipped[:_LISTED_SKIPPED]]
        if len(skipped) > _LISTED_SKIPPED:
            lines.append(f"| ... | {len(skipped) - _LISTED_SKIPPED} more in manifest.json |")
    return lines


def _synthesis_lines(manifest: Manifest, version_dir: Path) -> list[str]:
    synthesis = manifest.synthesis
    if not synthesis:
        return []
    lines = ["", "## GAN synthesis", ""]
    metrics = synthesis.metrics
    names = {"fd": "FD", "kid": "KID", "precision": "precision", "recall": "recall", "cas_test": "CAS"}
    shown = [f"{label} {metrics[k]:.3f}" for k, label in names.items() if isinstance(metrics.get(k), float)]
    if shown:
        lines.append("Classifier-feature metrics: " + ", ".join(shown) + ".")
    if synthesis.wanted is not None:
        short, filled = synthesis.short, synthesis.filled_below_threshold
        lines.append(
            f"Sampling: {synthesis.kept_after_filter} of {synthesis.candidates} candidates kept "
            f"for {synthesis.wanted} wanted"
            + (f"; classes short of their count (kept): {short}" if short else "")
            + (f"; kept below the confidence threshold to fill classes: {filled}" if filled else "")
            + "."
        )
    if synthesis.gate:
        lines.append(f"Utility gate: {synthesis.gate.reason}")
    devices = synthesis.devices
    if devices:
        ran = [f"GAN training on {devices.training}"] if devices.training else []
        ran.append(f"sampling and classifiers on {devices.sampling_and_classifiers}")
        ran += [f"{devices.cpu_threads} CPU threads"] if devices.cpu_threads is not None else []
        ran += [devices.cuda_device] if devices.cuda_device is not None else []
        lines.append("Devices: " + ", ".join(ran) + ".")
    grid = synthesis.files.grid if synthesis.files else None
    if grid:
        lines.append(f"\n![samples]({(version_dir / grid).resolve().as_uri()})")
    return lines
