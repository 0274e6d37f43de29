"""Ingest: read a source once, validate it, stage its pixels, fix the splits.

The pixels go to a flat file of fixed-size rows that shard workers read row by row, so
no worker holds the dataset in memory and tasks pass only a path. A small index (id, label,
split, content hash) drives the rest of the build.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from pipeline.augment import derive_seed
from pipeline.config import Config
from pipeline.errors import SourceError
from pipeline.images import Fit, Mode, content_sha256, resize_to, shape_text
from pipeline.progress import INGEST, report
from pipeline.sources import open_source
from pipeline.sources.archive import extracted
from pipeline.sources.base import Encoded, Invalid, Sample, SourceReader
from pipeline.space import check_staging_room
from pipeline.workers import run_all

PIXELS_FILE = "pixels.u8"  # raw rows of height x width (x channels) bytes
INDEX_FILE = "index.arrow"  # Arrow IPC: reading a Parquet index cost ~40 MB of decode buffers at 60k
# Ingest hands images to workers in chunks, a window of a few chunks per worker at a time.
_CHUNK_ROWS = 256
_WINDOW_CHUNKS = 4
_PY_CHUNK = 8192  # Arrow values that are Python objects at once
SPLIT_ORDER = ("train", "validation", "test")
# The "split" of staged images left out of the version (dropped duplicates, leakage).
EXCLUDED = "excluded"
SPLIT_CODES = (*SPLIT_ORDER, EXCLUDED)  # an index's split of an image: a position here
DIGEST = pa.binary(32)  # a content hash in the index: the raw sha256
Resize = tuple[tuple[int, int], Fit]  # source.resize (height, width) and source.resize_mode


@dataclass(frozen=True)
class Index:
    """What the build needs to know of each source image (row i = pixel row i).

    Ids are an Arrow string array and content hashes 32-byte digests (as Python strings
    they would cost ~190 bytes per image, most of a large build's memory); a split is an
    int8 code (:data:`SPLIT_CODES`). Lists of ids, hex hashes and split names are converted.
    """

    source_ids: pa.Array
    labels: np.ndarray
    splits: np.ndarray
    sha256: pa.Array

    def __post_init__(self) -> None:
        object.__setattr__(self, "source_ids", _strings(self.source_ids))
        object.__setattr__(self, "sha256", digests(self.sha256))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.int64))
        if not (isinstance(self.splits, np.ndarray) and self.splits.dtype.kind in "iu"):  # names
            codes = [SPLIT_CODES.index(str(split)) for split in self.splits]
            object.__setattr__(self, "splits", np.asarray(codes, dtype=np.int8))

    def in_split(self, split: str) -> np.ndarray:
        """Which images are in ``split`` (a mask)."""
        return self.splits == SPLIT_CODES.index(split)

    def rows_in(self, split: str) -> np.ndarray:
        """The rows (pixel rows) of ``split``, in order."""
        return np.flatnonzero(self.in_split(split))

    def present(self) -> list[str]:
        """The splits that have images, in :data:`SPLIT_ORDER`."""
        return [split for split in SPLIT_ORDER if self.in_split(split).any()]

    def split_of(self, row: int) -> str:
        return SPLIT_CODES[self.splits[row]]


def digests(values) -> pa.Array:
    """Content hashes as a :data:`DIGEST` array: digests as they are, or hex strings (a
    list or an Arrow array; empty: null) converted."""
    values = _one_array(values)
    if isinstance(values, pa.Array) and values.type == DIGEST:
        return values
    hexes = iter_strings(values) if isinstance(values, pa.Array) else values
    return pa.array([bytes.fromhex(h) if h else None for h in hexes], DIGEST)


def digest_bytes(hashes: pa.Array) -> np.ndarray:
    """The bytes of :data:`DIGEST` values, one row of 32 per value (a view, not a copy;
    a null's row is undefined)."""
    n = len(hashes)
    return np.frombuffer(hashes.buffers()[1], np.uint8)[
        hashes.offset * 32 : (hashes.offset + n) * 32
    ].reshape(n, 32)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_strings(hashes: pa.Array) -> pa.Array:
    """:data:`DIGEST` values as 64-character hex strings (nulls stay null), in numpy."""
    n = len(hashes)
    if hashes.null_count == n:
        return pa.nulls(n, pa.string())
    raw = digest_bytes(hashes)
    text = np.empty((n, 64), np.uint8)
    text[:, 0::2] = _HEX[raw >> 4]
    text[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(0, 64 * n + 1, 64, dtype=np.int32)
    strings = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
    return (
        pc.if_else(hashes.is_valid(), strings, pa.scalar(None, pa.string())) if hashes.null_count else strings
    )


def _strings(values) -> pa.Array:
    """A list, or a one-chunk column read from a file, as a string array."""
    values = _one_array(values)
    return values if isinstance(values, pa.Array) else pa.array(values, pa.string())


def _one_array(values):
    """A column read from a file as one array (``values`` unchanged if not a column)."""
    if isinstance(values, pa.ChunkedArray):  # combine_chunks copies even a single chunk
        return values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    return values


def values_at(array: pa.Array, rows) -> list:
    """The values at ``rows`` (positions) as Python objects."""
    return array.take(np.asarray(rows, dtype=np.int64)).to_pylist()


def iter_strings(array: pa.Array) -> Iterator[str]:
    """The values of an Arrow string array as Python strings, a chunk at a time."""
    for start in range(0, len(array), _PY_CHUNK):
        yield from array.slice(start, _PY_CHUNK).to_pylist()


def iter_hex(hashes: pa.Array) -> Iterator[str | None]:
    """:data:`DIGEST` values as hex strings, a chunk at a time."""
    for start in range(0, len(hashes), _PY_CHUNK):
        yield from hex_strings(hashes.slice(start, _PY_CHUNK)).to_pylist()


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


def duplicate_groups(ids, hashes) -> list[list[int]]:
    """Rows with identical pixels, grouped; each group and the groups sorted by source id.

    Args:
        ids, hashes: source ids and content hashes (see :func:`digests`), Arrow arrays or lists.
    """
    ids, hashes = _strings(ids), digests(hashes)
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
    ids, hashes = _strings(ids), digests(hashes)
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
    ids = _strings(ids)
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


def validation_masks(ids, labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit and validation masks over the training split for the decisions made before
    writing (augment.tune, the utility gate): stratified, seeded, the same carve for both
    at the same fraction."""
    splits = carve_test_split(ids, labels, fraction, derive_seed(seed, "gate", 0))
    validation = np.asarray([s == "test" for s in splits])
    return ~validation, validation


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


def write_pixels(path: Path, images) -> int:
    """Stage raw uint8 pixel bytes (or arrays), all of one size, row after row; return the
    count."""
    count = 0
    with open(path, "wb") as sink:
        for image in images:
            sink.write(image if isinstance(image, bytes) else np.ascontiguousarray(image).tobytes())
            count += 1
    return count


def save_index(index: Index, path: Path) -> None:
    """Persist the index (for stages that run in other processes) as an Arrow IPC file."""
    table = pa.table(
        {
            "source_id": index.source_ids,
            "label": pa.array(index.labels, pa.int64()),
            "split": pa.DictionaryArray.from_arrays(index.splits, pa.array(SPLIT_CODES)),
            "sha256": index.sha256,
        }
    )
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def load_index(path: Path) -> Index:
    with pa.OSFile(str(path), "rb") as source:
        table = ipc.open_file(source).read_all()
    splits = table["split"].combine_chunks()
    codes = np.asarray([SPLIT_CODES.index(name) for name in splits.dictionary.to_pylist()], np.int8)
    return Index(
        table["source_id"], table["label"].to_numpy(), codes[splits.indices.to_numpy()], table["sha256"]
    )


class PixelStore:
    """Random access to staged pixels by row; use as a context manager.

    Rows are read with ``pread``, not through a memory map: mapped pages a process touches
    count in its resident memory, the kernel maps a large block of the file per touch, and
    a shard's rows are spread over the whole file, so a worker would grow with the source.
    """

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self._path = path
        self._shape = shape
        self._row_bytes = math.prod(shape)
        self._fd = os.open(path, os.O_RDONLY)

    def __getitem__(self, row: int) -> np.ndarray:
        raw = os.pread(self._fd, self._row_bytes, row * self._row_bytes) if row >= 0 else b""
        if len(raw) != self._row_bytes:
            raise IndexError(f"{self._path}: no pixel row {row}")
        return np.frombuffer(raw, dtype=np.uint8).reshape(self._shape)

    def __enter__(self) -> PixelStore:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)


def _fingerprint(class_names, mode, shape, ids, labels, splits, hashes) -> str:
    digest = hashlib.sha256()
    digest.update(f"{list(class_names)}\x1e{mode}\x1e{tuple(shape)}\x1e".encode())
    for row in zip(iter_strings(ids), labels, splits, iter_hex(hashes), strict=True):
        digest.update(("\x1f".join(str(v or "") for v in row) + "\x1e").encode())
    return digest.hexdigest()
