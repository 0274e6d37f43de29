"""The staged real rows: the index (ids, labels, splits, hashes) as Arrow IPC and the raw
pixels as one flat file, read back by row (:class:`PixelStore`), plus the Arrow helpers
the stages share."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc


@dataclass(frozen=True)
class RealData:
    """Real images of one split with their labels and source ids."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]

    def subset(self, mask: np.ndarray) -> RealData:
        return RealData(
            self.images[mask], self.labels[mask], [i for i, m in zip(self.ids, mask, strict=True) if m]
        )


PIXELS_FILE = "pixels.u8"  # raw rows of height x width (x channels) bytes


INDEX_FILE = "index.arrow"  # Arrow IPC: reading a Parquet index cost ~40 MB of decode buffers at 60k


SPLIT_ORDER = ("train", "validation", "test")


# The "split" of staged images left out of the version (dropped duplicates, leakage).
EXCLUDED = "excluded"


SPLIT_CODES = (*SPLIT_ORDER, EXCLUDED)  # an index's split of an image: a position here


DIGEST = pa.binary(32)  # a content hash in the index: the raw sha256


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
        object.__setattr__(self, "source_ids", string_array(self.source_ids))
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


def string_array(values) -> pa.Array:
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


def load_split(
    work_dir: Path, shape: tuple[int, ...], split: str, index: Index | None = None
) -> RealData | None:
    """The staged real images of one split (None when the source has no such split)."""
    from pipeline.ingest.store import RealData

    index = index or load_index(work_dir / INDEX_FILE)
    rows = index.rows_in(split).tolist()
    if not rows:
        return None
    with PixelStore(work_dir / PIXELS_FILE, shape) as pixels:
        images = np.stack([pixels[i] for i in rows])
    return RealData(images, index.labels[rows], values_at(index.source_ids, rows))


_PY_CHUNK = 8192  # Arrow values that are Python objects at once
