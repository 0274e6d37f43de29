"""How many augmented copies each training image gets (per-class targets), and a real
split expanded with them as a build would (for the classifiers of tuning and the gate)."""

from __future__ import annotations

import numpy as np

from pipeline.augment.recipe import ClassAugmenters
from pipeline.config import AugmentConfig
from pipeline.core.errors import PipelineError
from pipeline.ingest.splits import seeded_ranks
from pipeline.ingest.store import Index, RealData


def allocate_copies(
    index: Index, augment: AugmentConfig, seed: int, class_names: list[str]
) -> tuple[np.ndarray, dict[int, int]]:
    """Augmented copies per image (zero outside the training split), and per-class shortfall.

    With ``copies_per_image = k`` a class of n images gets round(k * n) copies; with
    ``target_per_class = T`` it gets max(0, T - n); a class named in ``augment.classes``
    may set its own. Either way the copies are spread as evenly as possible (floor or ceil
    per image), the extra ones going to the images that rank first by a hash of (seed, id).
    A class with no training images cannot be filled: its missing count is returned as
    shortfall.

    Raises:
        PipelineError: ``augment.classes`` names a class the source does not have.
    """
    unknown = sorted(set(augment.classes) - set(class_names))
    if unknown:
        raise PipelineError(f"augment.classes: {unknown} are not classes of the source {class_names}")
    copies = np.zeros(len(index.labels), dtype=np.int64)
    shortfall: dict[int, int] = {}
    if not augment.enabled:
        return copies, shortfall
    train = index.in_split("train")
    ranks = seeded_ranks(index.source_ids, seed, "extra")
    for label, name in enumerate(class_names):
        members = np.flatnonzero(train & (index.labels == label))
        n = len(members)
        total = augment.copies_for(name, n)
        if n == 0:
            if total:
                shortfall[label] = total
            continue
        members = members[np.argsort(ranks[members])]
        base, extra = divmod(total, n)
        copies[members] = base
        copies[members[:extra]] += 1
    return copies, shortfall


def expand_with(
    augment_config: AugmentConfig, seed: int, fit: RealData, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``fit`` plus its augmented copies, made as the build makes them (without augment.mix)."""
    if not augment_config.enabled:
        return fit.images, fit.labels
    index = Index(fit.ids, fit.labels, ["train"] * len(fit.ids), [""] * len(fit.ids))
    copies, _ = allocate_copies(index, augment_config, seed, class_names)
    augment = ClassAugmenters(augment_config, class_names, seed)
    extra_x, extra_y = [], []
    for i, count in enumerate(copies):
        for replica in range(1, int(count) + 1):
            image, _, _ = augment(fit.images[i], int(fit.labels[i]), fit.ids[i], replica)
            extra_x.append(image)
            extra_y.append(fit.labels[i])
    if not extra_x:
        return fit.images, fit.labels
    return np.concatenate([fit.images, np.stack(extra_x)]), np.concatenate([fit.labels, extra_y])
