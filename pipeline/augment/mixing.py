"""Offline MixUp and CutMix: augmented copies blended with a partner image, with soft labels.

With ``augment.mix`` set, a share of the augmented copies (``fraction``, decided per copy by
a hash of the run seed, source id and replica) is mixed with a partner: another training
image, chosen the same way from the whole training split. MixUp blends the two images with
weight ``lam`` drawn from Beta(alpha, alpha); CutMix pastes a box of the partner whose area
is (1 - lam) of the image. The copy's own image always dominates (``lam`` > 0.5), so its
``label`` (the argmax of the soft label) stays its source's class and per-class counts hold.

Every row of such a version has a ``soft_label`` (one probability per class: one-hot for rows
that are not mixed, ``lam`` and ``1 - lam`` on the two classes for mixed ones). The plan
decides which rows are mixed and with whom; the shard worker draws ``lam`` (and the box)
from the row's seed, so the bytes do not depend on the worker count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pipeline.config import MixConfig
from pipeline.core.seeds import derive_seed

_UNIT = float(2**32)


@dataclass(frozen=True)
class Mixed:
    """What mixing did to one image: the method, the partner's weight and the box (CutMix)."""

    method: str
    lam: float
    box: tuple[int, int, int, int] | None  # y0, x0, y1, x1 of the partner's pasted patch


def choose_partners(
    mix: MixConfig,
    seed: int,
    source_ids: Iterable[str],
    replicas: np.ndarray,
    pixel_rows: np.ndarray,
    pool: np.ndarray,
) -> tuple[list[str | None], np.ndarray]:
    """Which rows are mixed, how, and with which training image (never the row's own).

    Args:
        source_ids, replicas, pixel_rows: the rows; replica 0 (the real image) is never mixed.
        pool: pixel rows of the training split's images, where partners come from.

    Returns:
        The method of each row (None: not mixed), and its partner's pixel row (-1: none).
    """
    methods: list[str | None] = [None] * len(replicas)
    partners = np.full(len(replicas), -1, dtype=np.int64)
    if len(pool) < 2:
        return methods, partners
    choices = ("mixup", "cutmix") if mix.method == "either" else (mix.method,)
    rows = zip(source_ids, replicas.tolist(), pixel_rows.tolist(), strict=True)
    for i, (source_id, replica, own) in enumerate(rows):
        if not replica or derive_seed(seed, source_id, f"mix-{replica}") / _UNIT >= mix.fraction:
            continue
        methods[i] = choices[derive_seed(seed, source_id, f"mix-method-{replica}") % len(choices)]
        pick = derive_seed(seed, source_id, f"mix-partner-{replica}") % len(pool)
        partners[i] = pool[pick] if pool[pick] != own else pool[(pick + 1) % len(pool)]
    return methods, partners


def mix_images(
    image: np.ndarray, partner: np.ndarray, method: str, alpha: float, seed: int
) -> tuple[np.ndarray, Mixed]:
    """Mix ``partner`` into ``image`` (same shape, uint8) with weights drawn from ``seed``.

    Returns:
        The mixed image and what was done; ``lam`` is the share of ``image`` (> 0.5).
    """
    rng = np.random.default_rng(seed)
    lam = float(rng.beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)
    if method == "mixup":
        lam = max(lam, float(np.nextafter(0.5, 1.0)))
        blended = lam * image.astype(np.float32) + (1.0 - lam) * partner.astype(np.float32)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8), Mixed("mixup", lam, None)
    height, width = image.shape[:2]
    cut = np.sqrt(1.0 - lam)
    box_h, box_w = int(height * cut), int(width * cut)
    while 2 * box_h * box_w >= height * width:  # the copy's own image keeps the larger part
        box_h, box_w = max(0, box_h - 1), max(0, box_w - 1)
    y0 = int(rng.integers(0, height - box_h + 1))
    x0 = int(rng.integers(0, width - box_w + 1))
    out = image.copy()
    out[y0 : y0 + box_h, x0 : x0 + box_w] = partner[y0 : y0 + box_h, x0 : x0 + box_w]
    lam = 1.0 - box_h * box_w / (height * width)
    return out, Mixed("cutmix", lam, (y0, x0, y0 + box_h, x0 + box_w))


def mix_copy(
    image: np.ndarray,
    partner: np.ndarray,
    method: str,
    mix: MixConfig,
    run_seed: int,
    source_id: str,
    replica: int,
) -> tuple[np.ndarray, Mixed]:
    """:func:`mix_images` for augmented copy ``replica`` of ``source_id``, with its own seed."""
    return mix_images(
        image, partner, method, mix.alpha, derive_seed(run_seed, source_id, f"mix-draw-{replica}")
    )


def soft_label(label: int, classes: int, partner_label: int | None = None, lam: float = 1.0) -> list[float]:
    """One probability per class: ``lam`` on ``label``, the rest on ``partner_label``."""
    values = np.zeros(classes, dtype=np.float32)
    values[label] += lam
    if partner_label is not None:
        values[partner_label] += 1.0 - lam
    return values.tolist()
