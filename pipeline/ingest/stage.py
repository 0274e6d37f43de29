"""Ingest: read a source once, validate it, stage its pixels, fix the splits.

The pixels go to a flat file of fixed-size rows that shard workers read row by row, so
no worker holds the dataset in memory and tasks pass only a path. A small index (id, label,
split, content hash) drives the rest of the build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Config
from pipeline.core.errors import SourceError
from pipeline.core.images import Fit, Mode, content_sha256, resize_to, shape_text
from pipeline.core.progress import INGEST, report
from pipeline.core.workers import run_all
from pipeline.ingest.space import check_staging_room
from pipeline.ingest.splits import carve_test_split, duplicate_groups, leaked_rows
from pipeline.ingest.store import (
    DIGEST,
    EXCLUDED,
    PIXELS_FILE,
    SPLIT_CODES,
    Index,
    iter_hex,
    iter_strings,
    values_at,
    write_pixels,
)
from pipeline.sources import open_source
from pipeline.sources.archive import extracted
from pipeline.sources.base import Encoded, Invalid, Sample, SourceReader

# Ingest hands images to workers in chunks, a window of a few chunks per worker at a time.
_CHUNK_ROWS = 256
_WINDOW_CHUNKS = 4
Resize = tuple[tuple[int, int], Fit]  # source.resize (height, width) and source.resize_mode


@dataclass(frozen=True)
class Ingested:
    """The staged source: where its pixels are, its classes and shape, its fingerprint."""

    pixels_path: Path
    index: Index
    class_names: list[str]
    mode: Mode
    shape: tuple[int, ...]
    fingerprint: str
    split_carved: bool
    skipped: list[dict[str, str | None]] = field(default_factory=list)
    ignored_files: int = 0
    duplicates: list[list[str]] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Source images per split and class name."""
        counts: dict[str, dict[str, int]] = {}
        for code, split in enumerate(SPLIT_CODES):
            labels, n = np.unique(self.index.labels[self.index.splits == code], return_counts=True)
            if len(labels):
                counts[split] = {self.class_names[label]: int(k) for label, k in zip(labels, n, strict=True)}
        return counts


def ingest(config: Config, work_dir: Path, workers: int = 1) -> Ingested:
    """Read the configured source into ``work_dir`` and assign every image a split.

    Encoded images are decoded and hashed on ``workers`` processes, a window of chunks at
    a time, so memory does not grow with the source. Bad images stop the run, or with
    ``source.on_bad_image: skip`` are left out and listed in ``skipped``. Images with
    identical pixels are reported (``duplicates``) and, with ``source.duplicates: drop``,
    all but the first are left out; a training image whose pixels are also in another
    split is always left out of training (leakage).

    Raises:
        SourceError: the source is unreadable, or (without skip) an image is bad or (without
            ``source.resize``) of another size than the first; the message names the image.
    """
    source = config.source
    work_dir.mkdir(parents=True, exist_ok=True)
    # An archive is extracted into the work folder and removed once its pixels are staged.
    with extracted(source.path, work_dir) as folder:
        reader = open_source(source.model_copy(update={"path": folder}), workers)
        room = partial(check_staging_room, reader.count, where=work_dir, root=config.output.root)
        staged = _Staged(
            skip=source.on_bad_image == "skip",
            skipped=list(reader.skipped),
            resize=source.resizing,
            check_room=room if reader.count else None,
        )
        write_pixels(work_dir / PIXELS_FILE, staged.rows(reader, workers))
        # Only these are left to take from the reader: its listing (an id, label and split
        # per image, for an image folder) or its arrays go now, before the steps below.
        class_names, mode, ignored = list(reader.class_names), reader.mode, reader.ignored
        del reader
    if staged.shape is None:
        raise SourceError(f"source {source.kind} {source.path or ''}: no images")
    ids, hashes = staged.ids.array(), staged.hashes.array()
    duplicate = _repeated_value(ids)
    if duplicate is not None:
        raise SourceError(f"source id {duplicate!r} occurs twice")

    groups = duplicate_groups(ids, hashes)
    carved = "test" not in staged.splits
    splits, left_out = _assign_splits(config, staged, ids, hashes, groups, carved)
    rows = sorted(left_out)
    for row, source_id, sha in zip(rows, values_at(ids, rows), values_at(hashes, rows), strict=True):
        staged.skipped.append({"source_id": source_id, "reason": left_out[row], "sha256": sha.hex()})
    return Ingested(
        pixels_path=work_dir / PIXELS_FILE,
        index=Index(ids, staged.labels, splits, hashes),
        class_names=class_names,
        mode=mode,
        shape=tuple(staged.shape),
        fingerprint=_fingerprint(class_names, mode, staged.shape, ids, staged.labels, staged.splits, hashes),
        split_carved=carved,
        skipped=staged.skipped,
        ignored_files=ignored,
        duplicates=[values_at(ids, group) for group in groups],
    )


def _repeated_value(values: pa.Array) -> str | None:
    """The first value (in sort order) that occurs more than once, if any. Found by sorting:
    a hash table of a large source's ids would cost the Arrow pool more than the ids."""
    if len(values) < 2:
        return None
    ranked = values.take(pc.sort_indices(values))
    same = pc.equal(ranked.slice(1), ranked.slice(0, len(ranked) - 1)).to_numpy(zero_copy_only=False)
    return ranked[int(np.argmax(same))].as_py() if same.any() else None


def _assign_splits(
    config: Config, staged: _Staged, ids: pa.Array, hashes: pa.Array, groups: list[list[int]], carve: bool
) -> tuple[list[str], dict[int, str]]:
    """Every staged row's split, and the rows left out (``EXCLUDED``) with the reason."""
    left_out: dict[int, str] = {}
    if config.source.duplicates == "drop":
        firsts = values_at(ids, [group[0] for group in groups])
        left_out = {
            row: f"duplicate of {first}"
            for group, first in zip(groups, firsts, strict=True)
            for row in group[1:]
        }
    splits = [split or "train" for split in staged.splits]
    if carve:  # from the training images (a source's validation split stays as it is)
        rows = np.array([r for r, split in enumerate(splits) if split == "train" and r not in left_out], int)
        labels = np.asarray(staged.labels, dtype=np.int64)[rows]
        carved = carve_test_split(ids.take(rows), labels, config.split.test_fraction, config.seed)
        for row, split in zip(rows.tolist(), carved, strict=True):
            splits[row] = split
    left_out.update(leaked_rows(ids, hashes, splits, left_out))
    for row in left_out:
        splits[row] = EXCLUDED
    return splits, left_out


class _Column:
    """Values (strings, digests) appended one at a time and kept as Arrow arrays, not
    Python objects."""

    def __init__(self, kind: pa.DataType) -> None:
        self._kind = kind
        self._chunks: list[pa.Array] = []
        self._pending: list[str | bytes] = []

    def append(self, value: str | bytes) -> None:
        self._pending.append(value)
        if len(self._pending) == _CHUNK_ROWS * _WINDOW_CHUNKS:
            self._flush()

    def array(self) -> pa.Array:
        """All values as one array; it replaces the chunks, so the values are held once."""
        self._flush()
        self._chunks = [pa.concat_arrays(self._chunks) if self._chunks else pa.array([], self._kind)]
        return self._chunks[0]

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(pa.array(self._pending, self._kind))
            self._pending = []


@dataclass
class _Staged:
    """What ingest learns while it stages the pixels, one accepted image per row."""

    skip: bool
    skipped: list[dict[str, str | None]]
    ids: _Column = field(default_factory=lambda: _Column(pa.string()))
    labels: list[int] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    hashes: _Column = field(default_factory=lambda: _Column(DIGEST))
    shape: tuple[int, ...] | None = None
    resize: Resize | None = None
    check_room: Callable[[tuple[int, ...]], None] | None = None  # given the first image's shape

    def rows(self, reader: SourceReader, workers: int) -> Iterator[bytes]:
        """The raw pixels of each accepted image, in source order."""
        done = 0
        for samples, results in _staged(reader, workers, self.skip, self.resize):
            done += len(samples)
            report(INGEST, done, reader.count)
            for sample, result in zip(samples, results, strict=True):
                if isinstance(result, Rejected):
                    self._leave_out(sample, result.reason, result.sha256)
                    continue
                raw, shape, sha = result
                if self.shape is None:
                    self.shape = shape
                    if self.check_room:
                        self.check_room(shape)
                elif shape != self.shape:
                    reason = (
                        f"image size {shape_text(shape)} differs from {shape_text(self.shape)} of the first "
                        "image; all images of a dataset must match (or set source.resize)"
                    )
                    if not self.skip:
                        raise SourceError(f"{sample.source_id}: {reason}")
                    self._leave_out(sample, reason, sha)
                    continue
                self.ids.append(sample.source_id)
                self.labels.append(sample.label)
                self.splits.append(sample.split)
                self.hashes.append(bytes.fromhex(sha))
                yield raw

    def _leave_out(self, sample: Sample, reason: str, sha256: str | None) -> None:
        self.skipped.append({"source_id": sample.source_id, "reason": reason, "sha256": sha256})


@dataclass(frozen=True)
class Rejected:
    """An image that could not be staged: why, and the sha256 of its bytes if readable."""

    reason: str
    sha256: str | None


def _staged(
    reader: SourceReader, workers: int, skip: bool, resize: Resize | None
) -> Iterator[tuple[list[Sample], list]]:
    """Chunks of samples with what :func:`stage_chunk` made of them, in order."""
    window: list[list[Sample]] = []
    chunk: list[Sample] = []
    for sample in reader:
        chunk.append(sample)
        if len(chunk) == _CHUNK_ROWS:
            window.append(chunk)
            chunk = []
            if len(window) == _WINDOW_CHUNKS * workers:
                yield from _stage_window(window, reader.mode, workers, skip, resize)
                window = []
    yield from _stage_window([*window, chunk] if chunk else window, reader.mode, workers, skip, resize)


def _stage_window(window: list[list[Sample]], mode: Mode, workers: int, skip: bool, resize: Resize | None):
    calls = [([s.pixels for s in chunk], mode, skip, resize) for chunk in window]
    encoded = any(isinstance(s.pixels, Encoded) for chunk in window for s in chunk)
    # Decoding (and resizing) is worth a worker process; hashing arrays a source has
    # decoded is not.
    results = run_all(stage_chunk, calls, workers if encoded or resize else 1)
    yield from zip(window, results, strict=True)


def stage_chunk(
    images: list[np.ndarray | Encoded | Invalid], mode: Mode, skip: bool, resize: Resize | None = None
) -> list:
    """Decode what is still encoded, resize it to ``resize`` (size, fit) if given; each
    image's (raw bytes, shape, content hash), or with ``skip`` a :class:`Rejected` for one
    that cannot be decoded.

    Raises:
        SourceError: without ``skip``, for the first image that cannot be decoded.
    """
    staged: list[tuple[bytes, tuple, str] | Rejected] = []
    for image in images:
        if isinstance(image, np.ndarray):
            pixels = image
        else:
            try:
                pixels = image.decode(mode, resize[0] if resize else None)
            except SourceError as exc:
                if not skip:
                    raise
                staged.append(Rejected(str(exc), image.sha256()))
                continue
        if resize:
            pixels = resize_to(pixels, *resize)
        staged.append((np.ascontiguousarray(pixels).tobytes(), pixels.shape, content_sha256(pixels)))
    return staged


def _fingerprint(class_names, mode, shape, ids, labels, splits, hashes) -> str:
    digest = hashlib.sha256()
    digest.update(f"{list(class_names)}\x1e{mode}\x1e{tuple(shape)}\x1e".encode())
    for row in zip(iter_strings(ids), labels, splits, iter_hex(hashes), strict=True):
        digest.update(("\x1f".join(str(v or "") for v in row) + "\x1e").encode())
    return digest.hexdigest()
