"""What a run did, for people: rows per class before and after, and a Markdown summary.

Both come from a published version's manifest, so the flow (as Prefect artifacts) and the
command line (``expand run --json``) show the same figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.version.layout import ORIGINS
from pipeline.version.manifest import MANIFEST_FILE
from pipeline.version.pictures import TUNE_FILE, tune_column

_LISTED_SKIPPED = 20  # quarantined files named in the summary (the manifest lists all)


def count_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per split and class: source images (before) and rows by origin (after)."""
    before = manifest["source"].get("counts", {})
    rows = []
    for split in sorted(manifest["splits"]):
        by_origin = manifest["splits"][split].get("by_origin_class", {})
        for name in manifest["class_names"]:
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


def run_markdown(manifest: dict[str, Any], version_dir: Path, created: bool) -> str:
    """A Markdown summary of the run that published (or found) ``version_dir``."""
    run, source = manifest["run"], manifest["source"]
    lines = [
        f"# {manifest['name']}: version `{manifest['version_id']}`",
        "",
        ("Published" if created else "Already published (nothing written)")
        + f" at [{version_dir}]({version_dir.resolve().as_uri()}) "
        + f"([manifest]({(version_dir / MANIFEST_FILE).resolve().as_uri()})).",
        "",
        f"Run {run.get('started', '?')} to {run.get('finished', '?')} on {run.get('host', '?')}; "
        f"code {run.get('code_version', '?')}.",
        "",
        "| split | real | augmented | synthetic | rows |",
        "|---|---:|---:|---:|---:|",
    ]
    for split, info in sorted(manifest["splits"].items()):
        counts = [info["by_origin"].get(origin, 0) for origin in ORIGINS]
        lines.append(f"| {split} | " + " | ".join(f"{c:,}" for c in counts) + f" | {info['rows']:,} |")
    lines += [
        "",
        *_source_lines(source),
        *_tune_lines(manifest, version_dir),
        *_synthesis_lines(manifest, version_dir),
    ]
    return "\n".join(lines) + "\n"


def tune_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per augmentation candidate of ``augment.tune``: its score, rows, chosen."""
    column = tune_column(summary)
    return [
        {
            "candidate": r["name"],
            column: round(r["mean"], 4),
            "std": round(r["std"], 4),
            "rows": r["rows"],
            "chosen": r["name"] == summary["chosen"],
        }
        for r in summary["candidates"]
    ]


def tune_markdown(summary: dict[str, Any]) -> list[str]:
    """The candidates of ``augment.tune`` as a Markdown table, with the choice."""
    lines = [
        f"Augmentation chosen on {summary['validation_rows']:,} validation images carved from the real "
        f"training split ({summary['seeds']} classifier seeds each): {summary['reason']}.",
        "",
        f"| candidate | {tune_column(summary)} | rows | |",
        "|---|---:|---:|---|",
    ]
    for row in tune_rows(summary):
        accuracy = f"{row[tune_column(summary)]:.4f} ± {row['std']:.4f}"
        lines.append(
            f"| {row['candidate']} | {accuracy} | {row['rows']:,} | {'chosen' if row['chosen'] else ''} |"
        )
    lines += [f"| {n['candidate']} | not run: {n['reason']} | | |" for n in summary.get("not_run", [])]
    return lines


def _tune_lines(manifest: dict[str, Any], version_dir: Path) -> list[str]:
    if "tune" not in manifest:
        return []
    chart = (version_dir / TUNE_FILE).resolve().as_uri()
    return [
        "",
        "## Augmentation tuning",
        "",
        *tune_markdown(manifest["tune"]),
        "",
        f"![{tune_column(manifest['tune'])}]({chart})",
    ]


def _source_lines(source: dict[str, Any]) -> list[str]:
    skipped = source.get("skipped", [])
    duplicates = source.get("duplicates", {})
    lines = [
        f"Source: {source['images']:,} images ({source['kind']}); {len(skipped)} left out, "
        f"{duplicates.get('groups', 0)} groups of identical images, "
        f"{source.get('ignored_files', 0)} non-image files ignored.",
    ]
    if skipped:
        lines += ["", "| left out | reason |", "|---|---|"]
        lines += [f"| `{s['source_id']}` | {s['reason']} |" for s in skipped[:_LISTED_SKIPPED]]
        if len(skipped) > _LISTED_SKIPPED:
            lines.append(f"| ... | {len(skipped) - _LISTED_SKIPPED} more in manifest.json |")
    return lines


def _synthesis_lines(manifest: dict[str, Any], version_dir: Path) -> list[str]:
    synthesis = manifest.get("synthesis")
    if not synthesis:
        return []
    lines = ["", "## GAN synthesis", ""]
    metrics = synthesis.get("metrics", {})
    names = {"fd": "FD", "kid": "KID", "precision": "precision", "recall": "recall", "cas_test": "CAS"}
    shown = [f"{label} {metrics[k]:.3f}" for k, label in names.items() if isinstance(metrics.get(k), float)]
    if shown:
        lines.append("Classifier-feature metrics: " + ", ".join(shown) + ".")
    if "wanted" in synthesis:
        short, filled = synthesis.get("short"), synthesis.get("filled_below_threshold")
        lines.append(
            f"Sampling: {synthesis['kept_after_filter']} of {synthesis['candidates']} candidates kept "
            f"for {synthesis['wanted']} wanted"
            + (f"; classes short of their count (kept): {short}" if short else "")
            + (f"; kept below the confidence threshold to fill classes: {filled}" if filled else "")
            + "."
        )
    gate = synthesis.get("gate")
    if gate:
        lines.append(f"Utility gate: {gate['reason']}")
    devices = synthesis.get("devices")
    if devices:
        ran = [f"GAN training on {devices['training']}"] if devices["training"] else []
        ran.append(f"sampling and classifiers on {devices['sampling_and_classifiers']}")
        ran += [f"{devices['cpu_threads']} CPU threads"] if "cpu_threads" in devices else []
        ran += [devices["cuda_device"]] if "cuda_device" in devices else []
        lines.append("Devices: " + ", ".join(ran) + ".")
    grid = synthesis.get("files", {}).get("grid")
    if grid:
        lines.append(f"\n![samples]({(version_dir / grid).resolve().as_uri()})")
    return lines
