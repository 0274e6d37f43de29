"""A version's split as arrays for training and testing classifiers: images, labels, each
row's origin and source id, and (when the version has them) soft labels and loss weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import PipelineError
from pipeline.dataset import ExpandedDataset
from pipeline.version.manifest import load_manifest


@dataclass(frozen=True)
class VersionRows:
    """One split's rows, in the version's row order."""

    images: np.ndarray
    labels: np.ndarray
    origins: np.ndarray
    source_ids: np.ndarray
    soft_labels: np.ndarray | None = None  # (N, classes) for versions built with augment.mix
    weights: np.ndarray | None = None  # each row's loss weight, for versions built with synthesis.weight


def load_rows(version: Path, split: str) -> VersionRows:
    """Every row of ``split`` in ``version`` (decoded once; the files are not re-hashed); an
    error naming the split when it has none."""
    manifest = load_manifest(version)
    soft = manifest.soft_labels
    dataset = ExpandedDataset(
        version, split, transform=np.asarray, return_lineage=True, soft_labels=soft, check="none"
    )
    items = [dataset[i] for i in range(len(dataset))]
    if not items:
        raise PipelineError(f"{version}: the {split} split has no rows to evaluate with")
    return VersionRows(
        images=np.stack([image for image, _, _ in items]),
        labels=dataset.labels,
        origins=np.asarray([info["origin"] for _, _, info in items]),
        source_ids=np.asarray([info["source_id"] for _, _, info in items]),
        soft_labels=np.stack([label.numpy() for _, label, _ in items]) if soft else None,
        weights=dataset.loss_weights if manifest.row_weights else None,
    )
