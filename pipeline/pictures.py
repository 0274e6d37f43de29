"""Pictures that go into a version: the class histogram and the GAN training curves.

Drawn with Pillow from the version's own figures only (no dates or paths), so a rebuild
draws them byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

HISTOGRAM_FILE = "classes.png"
CURVES_FILE = "gan/curves.png"
COLOURS = {
    "source": (150, 150, 150),
    "real": (70, 110, 170),
    "augmented": (230, 140, 50),
    "synthetic": (80, 160, 90),
}


def class_histogram(manifest: dict[str, Any], path: Path) -> None:
    """Training images per class before (source, grey) and rows after, stacked by origin."""
    names = manifest["class_names"]
    before = manifest["source"].get("counts", {}).get("train", {})
    after = manifest["splits"].get("train", {}).get("by_origin_class", {})
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
