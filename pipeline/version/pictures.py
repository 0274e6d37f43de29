"""Pictures that go into a version: the class histogram, a grid of real, augmented and
synthetic rows per class, and the GAN training curves.

Drawn with Pillow from the version's own figures only (no dates or paths), so a rebuild
draws them byte for byte.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from pipeline.config import metric_name
from pipeline.version.model import Manifest, TuneSummary, as_manifest, as_tune_summary

HISTOGRAM_FILE = "classes.png"
CURVES_FILE = "gan/curves.png"
COLOURS = {
    "source": (150, 150, 150),
    "real": (70, 110, 170),
    "augmented": (230, 140, 50),
    "synthetic": (80, 160, 90),
}


def class_histogram(manifest: Manifest | dict[str, Any], path: Path) -> None:
    """Training images per class before (source, grey) and rows after, stacked by origin
    (a dict ``manifest`` is validated as a :class:`~pipeline.version.model.Manifest`)."""
    manifest = as_manifest(manifest)
    names = manifest.class_names
    before = manifest.source.counts.get("train", {})
    after = _train_by_origin_class(manifest)
    origins = ("real", "augmented", "synthetic")
    totals = [sum(after.get(o, {}).get(n, 0) for o in origins) for n in names]
    largest = max([1, *totals, *(before.get(n, 0) for n in names)])
    left, row, width = 130, 26, 720
    image = Image.new("RGB", (width, 50 + row * len(names)), "white")
    draw = ImageDraw.Draw(image)
    span = width - left - 70
    x = left
    for label, colour in COLOURS.items():  # legend
        draw.rectangle([x, 10, x + 10, 20], fill=colour)
        draw.text((x + 14, 9), label, fill="black")
        x += 100
    for k, name in enumerate(names):
        y = 36 + k * row
        draw.text((6, y + 4), name[:20], fill="black")
        draw.rectangle([left, y, left + span * before.get(name, 0) / largest, y + 6], fill=COLOURS["source"])
        x = left
        for origin in origins:
            count = after.get(origin, {}).get(name, 0)
            draw.rectangle([x, y + 8, x + span * count / largest, y + 20], fill=COLOURS[origin])
            x += span * count / largest
        draw.text((x + 4, y + 8), f"{totals[k]:,}", fill="black")
    image.save(path)


def _train_by_origin_class(manifest: Manifest) -> dict[str, dict[str, int]]:
    train = manifest.splits.get("train")
    return train.by_origin_class if train else {}


def training_curves(history: list[dict[str, float]], path: Path) -> None:
    """Discriminator and generator losses over steps, and classifier FD where measured."""
    steps = [h["step"] for h in history]
    series = {
        "d_loss": ([h["d_loss"] for h in history if "d_loss" in h], (70, 110, 170)),
        "g_loss": ([h["g_loss"] for h in history if "g_loss" in h], (230, 140, 50)),
    }
    fd = [(h["step"], h["fd"]) for h in history if "fd" in h]
    width, height, left, top = 720, 300, 50, 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    last = max(steps, default=1) or 1
    plot_w, plot_h = width - left - 20, height - top - 40

    def line(points: list[tuple[float, float]], low: float, high: float, colour) -> None:
        scale = (high - low) or 1.0
        xy = [(left + plot_w * s / last, top + plot_h * (1 - (v - low) / scale)) for s, v in points]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)

    losses = [v for values, _ in series.values() for v in values]
    low, high = min(losses, default=0.0), max(losses, default=1.0)
    loss_steps = [h["step"] for h in history if "d_loss" in h]
    for values, colour in series.values():
        line(list(zip(loss_steps, values, strict=True)), low, high, colour)
    if fd:
        line(fd, min(v for _, v in fd), max(v for _, v in fd), (80, 160, 90))
    draw.text(
        (left, 8), f"GAN training: d_loss (blue) and g_loss (orange) {low:.2f}..{high:.2f}", fill="black"
    )
    if fd:
        draw.text(
            (left, height - 18), f"classifier FD (green) {fd[0][1]:.2f} -> {fd[-1][1]:.2f}", fill="black"
        )
    draw.text((width - 90, height - 18), f"step {last}", fill="black")
    image.save(path)


ORIGINS_GRID_FILE = "grid.png"
_GRID_PER_ORIGIN = 4


def origin_grid(
    version_dir: Path, files: list[Path], image_column: str, manifest: Manifest | dict[str, Any], path: Path
) -> None:
    """Per class, the first real, augmented and synthetic training rows side by side.

    Args:
        files: the training split's Parquet files (shards, or the image folder's lineage
            tables), read in order only until every class has its examples.
        image_column: ``image`` (encoded bytes in the shard) or ``file_name`` (a file).
        manifest: the version's manifest (class names, training rows by origin and class); a
            dict is validated as a :class:`~pipeline.version.model.Manifest`.
    """
    manifest = as_manifest(manifest)
    origins = ("real", "augmented", "synthetic")
    class_names = manifest.class_names
    by_origin = _train_by_origin_class(manifest)
    wanted = sum(min(_GRID_PER_ORIGIN, n) for counts in by_origin.values() for n in counts.values())
    found: dict[tuple[int, str], list[np.ndarray]] = {}
    for image, label, origin in _rows(files, [image_column, "label", "origin"]):
        cell = found.setdefault((label, origin), [])
        if len(cell) < _GRID_PER_ORIGIN:
            source = io.BytesIO(image["bytes"]) if isinstance(image, dict) else version_dir / image
            with Image.open(source) as decoded:
                cell.append(np.asarray(decoded.convert("RGB")))
            wanted -= 1
            if wanted <= 0:
                break
    present = [o for o in origins if any(found.get((c, o)) for c in range(len(class_names)))]
    first = next(iter(v[0] for v in found.values() if v), None)
    if first is None:
        return
    h, w = first.shape[:2]
    scale = max(1, 48 // max(h, w))
    cell_w, cell_h, left, top = w * scale + 2, h * scale + 2, 110, 22
    column = _GRID_PER_ORIGIN * cell_w + 12
    image = Image.new("RGB", (left + column * len(present), top + cell_h * len(class_names)), "white")
    draw = ImageDraw.Draw(image)
    for j, origin in enumerate(present):
        draw.text((left + j * column, 5), origin, fill=COLOURS[origin])
    for c, name in enumerate(class_names):
        draw.text((4, top + c * cell_h + cell_h // 2 - 6), name[:16], fill="black")
        for j, origin in enumerate(present):
            for k, pixels in enumerate(found.get((c, origin), [])):
                tile = Image.fromarray(pixels).resize((w * scale, h * scale), Image.NEAREST)
                image.paste(tile, (left + j * column + k * cell_w, top + c * cell_h))
    image.save(path)


def preview_grid(rows: list[tuple[str, np.ndarray, list[np.ndarray]]], path: Path) -> None:
    """One row per class: its name, the original image, then its augmented copies."""
    h, w = rows[0][1].shape[:2]
    scale = max(1, 48 // max(h, w))
    cell_w, cell_h, left, top = w * scale + 2, h * scale + 2, 110, 22
    copies = max(len(r[2]) for r in rows)
    image = Image.new("RGB", (left + cell_w * (copies + 1) + 8, top + cell_h * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 5), "original", fill="black")
    draw.text((left + cell_w + 8, 5), "augmented copies", fill=COLOURS["augmented"])
    for r, (name, original, augmented) in enumerate(rows):
        y = top + r * cell_h
        draw.text((4, y + cell_h // 2 - 6), name[:16], fill="black")
        for k, pixels in enumerate([original, *augmented]):
            tile = Image.fromarray(pixels).convert("RGB").resize((w * scale, h * scale), Image.NEAREST)
            image.paste(tile, (left + k * cell_w + (8 if k else 0), y))
    image.save(path)


_READ_ROWS = 128


def _rows(files: list[Path], columns: list[str]):
    """The rows of Parquet files as tuples, in order, a small batch at a time (the caller
    stops early; a whole row group of images as Python objects would outweigh the grid)."""
    for file in files:
        for batch in pq.ParquetFile(file).iter_batches(batch_size=_READ_ROWS, columns=columns):
            yield from zip(*(batch.column(i).to_pylist() for i in range(len(columns))), strict=True)


TUNE_FILE = "tune.png"


def tune_column(summary: TuneSummary | dict[str, Any]) -> str:
    """What ``augment.tune`` scored its candidates by: "validation accuracy", or "validation
    balanced accuracy" (``tune.metric``; versions made before it: accuracy)."""
    return f"validation {metric_name(as_tune_summary(summary).metric)}"


def tune_chart(summary: TuneSummary | dict[str, Any], path: Path) -> None:
    """The validation score of each augmentation candidate (mean, ±std), the chosen one in
    orange (a dict ``summary``, as ``augment.tune`` reports it, is validated first)."""
    summary = as_tune_summary(summary)
    rows = summary.candidates
    means = [r.mean for r in rows]
    low = max(0.0, min(m - r.std for m, r in zip(means, rows, strict=True)) - 0.02)
    high = min(1.0, max(m + r.std for m, r in zip(means, rows, strict=True)) + 0.01)
    left, row, width = 230, 24, 760
    span = width - left - 150
    image = Image.new("RGB", (width, 46 + row * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    draw.text(
        (6, 8), f"{tune_column(summary)} ({low:.3f} .. {high:.3f}), {summary.seeds} seeds", fill="black"
    )

    def x_of(value: float) -> float:
        return left + span * (value - low) / ((high - low) or 1.0)

    for k, r in enumerate(rows):
        y = 32 + k * row
        chosen = r.name == summary.chosen
        draw.text((6, y + 4), r.name[:36], fill="black")
        draw.rectangle([left, y + 2, x_of(r.mean), y + 18], fill=COLOURS["augmented" if chosen else "real"])
        draw.line([(x_of(r.mean - r.std), y + 10), (x_of(r.mean + r.std), y + 10)], fill="black")
        label = f"{r.mean:.4f}  {r.rows:,} rows" + ("  chosen" if chosen else "")
        draw.text((x_of(high) + 6, y + 4), label, fill="black")
    image.save(path)
