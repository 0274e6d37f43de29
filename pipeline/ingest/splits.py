"""Split rules, all seeded and order-free: duplicate groups, leaks across splits, the
carved test split, the validation part of the training split, and seeded ranks."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.seeds import derive_seed
from pipeline.ingest.store import (
    DIGEST,
    EXCLUDED,
    digest_bytes,
    digests,
    iter_strings,
    string_array,
    values_at,
)


def duplicate_groups(ids, hashes) -> list[list[int]]:
    """Rows with identical pixels, grouped; each group and the groups sorted by source id.

    Args:
        ids, hashes: source ids and content hashes (see :func:`digests`), Arrow arrays or lists.
    """
    ids, hashes = string_array(ids), digests(hashes)
    if not len(hashes):
        return []
    # Candidates found in numpy on the digests' first 64 bits (a dict, or a sort of the whole
    # digests, over every image would cost more than the index itself), then grouped by the
    # whole digest: only the rows that share a prefix become Python objects.
    prefixes = np.ascontiguousarray(digest_bytes(hashes)[:, :8]).view(">u8").ravel()
    _, inverse, counts = np.unique(prefixes, return_inverse=True, return_counts=True)
    rows = np.flatnonzero(counts[inverse] > 1)
    by_hash: dict[bytes, list[tuple[str, int]]] = {}
    for row, source_id, digest in zip(
        rows.tolist(), values_at(ids, rows), values_at(hashes, rows), strict=True
    ):
        by_hash.setdefault(digest, []).append((source_id, row))
    groups = sorted(sorted(group) for group in by_hash.values() if len(group) > 1)
    return [[row for _, row in group] for group in groups]


def leaked_rows(ids, hashes, splits: list[str], left_out: dict[int, str]) -> dict[int, str]:
    """Training rows whose pixels are also in another split, with the reason.

    Args:
        ids, hashes: source ids and content hashes (see :func:`digests`), Arrow arrays or lists.
    """
    ids, hashes = string_array(ids), digests(hashes)
    split_of = np.asarray(splits, dtype=object)
    usable = np.ones(len(splits), dtype=bool)
    usable[list(left_out)] = False
    others = np.flatnonzero(usable & (split_of != "train") & (split_of != EXCLUDED))
    elsewhere = dict(
        zip(
            values_at(hashes, others),
            zip(split_of[others].tolist(), values_at(ids, others), strict=True),
            strict=True,
        )
    )
    train = np.flatnonzero(usable & (split_of == "train"))
    hit = pc.is_in(hashes.take(train), value_set=pa.array(list(elsewhere), DIGEST))
    leaked = train[hit.to_numpy(zero_copy_only=False)]
    return {
        row: "same pixels as {} image {} (leakage): left out of train".format(*elsewhere[digest])
        for row, digest in zip(leaked.tolist(), values_at(hashes, leaked), strict=True)
    }


def carve_test_split(ids, labels: np.ndarray, fraction: float, seed: int) -> list[str]:
    """Stratified, seeded train/test assignment that does not depend on input order.

    Within each class, images are ranked by a hash of (seed, id) and the first
    round(fraction * n) go to test, keeping at least one image in train. ``ids``: a list
    or an Arrow string array.
    """
    splits = ["train"] * len(ids)
    ranks = seeded_ranks(ids, seed, "split")
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[np.argsort(ranks[members])]
        n_test = carved_count(len(members), fraction)
        for i in members[:n_test].tolist():
            splits[i] = "test"
    return splits


def carved_count(n: int, fraction: float) -> int:
    """Images of a class of ``n`` that :func:`carve_test_split` puts in test: the nearest
    whole number to ``fraction * n``, leaving at least one in train."""
    return min(int(np.floor(fraction * n + 0.5)), n - 1)


def seeded_ranks(ids, seed: int, salt: str) -> np.ndarray:
    """Each id's position when all are ordered by ``derive_seed(seed, id, salt)``, ties by
    id (unique ids): an order that does not depend on the input order. Sorted in numpy, so
    a large source costs a few integers per image. ``ids``: a list or an Arrow string array."""
    ids = string_array(ids)
    keys = np.fromiter(
        (derive_seed(seed, i, salt) for i in iter_strings(ids)), dtype=np.uint32, count=len(ids)
    )
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[sort_by_key(keys, lambda rows: zip(values_at(ids, rows)))] = np.arange(len(ids))
    return ranks


def sort_by_key(keys: np.ndarray, tiebreak: Callable[[np.ndarray], Iterable[tuple]]) -> np.ndarray:
    """The positions that order ``keys``; positions with equal keys are ordered by the
    tuples ``tiebreak(positions)`` gives (unique, such as (id, replica)). Seeded 32-bit keys
    are rarely equal (a few among 300,000), so only those positions become Python objects,
    rather than ranking every id."""
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    tied = np.flatnonzero(ranked[1:] == ranked[:-1])
    if len(tied):
        at = np.union1d(tied, tied + 1)
        by = sorted(zip(ranked[at].tolist(), tiebreak(order[at]), order[at].tolist(), strict=True))
        order[at] = [position for *_, position in by]
    return order


def validation_masks(
    ids, labels: np.ndarray, fraction: float, seed: int, stream: str = "gate"
) -> tuple[np.ndarray, np.ndarray]:
    """Fit and validation masks over the training split for the decisions made before
    writing (augment.tune, the utility gate): stratified, seeded by ``seed`` and ``stream``."""
    splits = carve_test_split(ids, labels, fraction, derive_seed(seed, stream, 0))
    validation = np.asarray([s == "test" for s in splits])
    return ~validation, validation
