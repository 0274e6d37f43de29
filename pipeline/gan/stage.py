"""Glue between the build's staging area and :mod:`pipeline.gan.synthesis`.

Reads the staged training split, runs GAN training or sampling, and stages the kept
synthetic rows (``synthetic.arrow`` pixels, ``synthetic.parquet`` lineage) for the shard
writers. The generator checkpoint and a per-class sample grid go into the version.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline.config import Config, GanTrainConfig
from pipeline.ingest.store import INDEX_FILE, load_index, load_split, write_pixels
from pipeline.version.pictures import CURVES_FILE, training_curves

# pipeline.gan.synthesis (and torch, 3-4 s to import) is imported by the stages that use it, so
# that a build without synthesis, and its worker processes, never load torch.
if TYPE_CHECKING:
    from pipeline.gan.checkpoint import GanShape
    from pipeline.gan.filtering import Spread
    from pipeline.ingest.store import RealData

SYNTHETIC_PIXELS = "synthetic.u8"
SYNTHETIC_INDEX = "synthetic.parquet"
CHECKPOINT_IN_VERSION = "gan/generator.pt"
GRID_FILE = "samples.png"
CANDIDATES_DIR = "candidates"
HISTORY_FILE = "gan/history.json"
_GRID_COLUMNS = 8


def gan_shape(shape: tuple[int, ...], num_classes: int, settings: GanTrainConfig | None = None) -> GanShape:
    """What the GAN is built for: the data's ``shape`` and classes, and ``settings``'
    resolution and fit (None: the defaults)."""
    from pipeline.gan.checkpoint import GanShape

    return GanShape(
        num_classes=num_classes,
        channels=1 if len(shape) == 2 else 3,
        height=shape[0],
        width=shape[1],
        side=settings.resolution if settings else None,
        fit=settings.fit if settings else "stretch",
    )


def train_gan_stage(
    config: Config,
    work_dir: Path,
    shape: tuple[int, ...],
    num_classes: int,
    *,
    resume: Path | None = None,
    on_metrics: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train the GAN on the fit part of the staged training split (checkpoints in work_dir/gan)."""
    from pipeline.gan.synthesis import fit_validation_masks, train_gan

    train = load_split(work_dir, shape, "train")
    fit_mask, _ = fit_validation_masks(train, config)
    summary = train_gan(
        config,
        train.subset(fit_mask),
        gan_shape(shape, num_classes, config.synthesis.train),
        work_dir / "gan",
        resume=resume,
        on_metrics=on_metrics,
    )
    write_history(work_dir, summary["history"])
    return summary


def write_history(work_dir: Path, history: list[dict[str, float]]) -> None:
    """Stage the training curves for the version; speeds and memory vary from run to run,
    so they are left out."""
    curves = [{k: v for k, v in h.items() if k not in ("img_per_s", "peak_mem_gib")} for h in history]
    (work_dir / HISTORY_FILE).parent.mkdir(parents=True, exist_ok=True)
    (work_dir / HISTORY_FILE).write_text(json.dumps(curves))


def synthesize_stage(
    config: Config,
    work_dir: Path,
    version_dir: Path,
    shape: tuple[int, ...],
    class_names: list[str],
    checkpoint: Path,
    spread: Spread | None = None,
) -> dict[str, Any]:
    """Sample, filter and gate; stage the kept rows; put checkpoint and grid into the version.
    With ``spread``, the candidates are made on its workers (their images staged in
    ``work_dir/candidates``; see :mod:`pipeline.gan.filtering`).

    Returns:
        The synthesis report for the manifest (metrics, gate figures, counts, files).
    """
    from pipeline.gan.synthesis import synthesis_devices, synthesize

    index = load_index(work_dir / INDEX_FILE)
    train = load_split(work_dir, shape, "train", index)
    test = load_split(work_dir, shape, "test", index)
    result = synthesize(
        config,
        train,
        test,
        gan_shape(shape, len(class_names), config.synthesis.train),
        checkpoint,
        class_names,
        spread=spread,
        scratch=work_dir / CANDIDATES_DIR,
    )
    shutil.rmtree(work_dir / CANDIDATES_DIR, ignore_errors=True)  # the kept rows are staged below
    report = result["report"]
    sha = report["checkpoint_sha256"]
    write_pixels(work_dir / SYNTHETIC_PIXELS, iter(result["images"]))
    truncation = config.synthesis.truncation
    params = [
        json.dumps(
            {
                "checkpoint_sha256": sha,
                "latent_seed": int(s),
                "confidence": float(c),
                "d_score": float(d),
                "truncation": truncation,
            },
            sort_keys=True,
        )
        for s, c, d in zip(result["seeds"], result["confidence"], result["d_score"], strict=True)
    ]
    pq.write_table(
        pa.table(
            {
                "label": pa.array(result["labels"], pa.int64()),
                "source_id": [
                    f"gan/{sha[:12]}/{int(c)}/{int(s)}"
                    for c, s in zip(result["labels"], result["seeds"], strict=True)
                ],
                "seed": pa.array(result["seeds"], pa.int64()),
                "params": params,
                "checkpoint_sha256": [sha] * len(params),
                **(
                    {"soft_label": pa.array(result["probs"].tolist(), pa.list_(pa.float32()))}
                    if config.synthesis.soft_labels
                    else {}
                ),
            }
        ),
        work_dir / SYNTHETIC_INDEX,
    )
    target = version_dir / CHECKPOINT_IN_VERSION
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, target)
    write_grid(version_dir / GRID_FILE, train, *result["preview"], len(class_names))
    report["files"] = {"checkpoint": CHECKPOINT_IN_VERSION, "grid": GRID_FILE}
    if (work_dir / HISTORY_FILE).is_file():  # trained in this run (not a given checkpoint)
        training_curves(json.loads((work_dir / HISTORY_FILE).read_text()), version_dir / CURVES_FILE)
        report["files"]["curves"] = CURVES_FILE
    report["per_class"] = {name: int((result["labels"] == c).sum()) for c, name in enumerate(class_names)}
    report["devices"] = synthesis_devices(config)
    return report


def read_synthetic(work_dir: Path) -> pa.Table:
    """The staged synthetic rows' lineage (row i = pixel row i of ``synthetic.arrow``)."""
    return pq.read_table(work_dir / SYNTHETIC_INDEX)


def write_grid(
    path: Path, real: RealData, fake: np.ndarray, fake_labels: np.ndarray, num_classes: int, scale: int = 4
) -> None:
    """A PNG with one row per class: real images on the left, generated ones on the right."""
    h, w = real.images.shape[1:3]
    columns = 2 * _GRID_COLUMNS + 1
    canvas = np.full((num_classes * (h + 1), columns * (w + 1)) + real.images.shape[3:], 255, np.uint8)
    for c in range(num_classes):
        for side, images in ((0, real.images[real.labels == c]), (1, fake[fake_labels == c])):
            for k, image in enumerate(images[:_GRID_COLUMNS]):
                col = k + side * (_GRID_COLUMNS + 1)
                canvas[c * (h + 1) : c * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = image
    picture = Image.fromarray(canvas)
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)
