"""Ingest: read a source once, validate it, stage its pixels, fix the splits.

The pixels go to an uncompressed Arrow IPC file that shard workers memory-map, so no
worker holds the dataset in memory and tasks pass only a path. A small index (id, label,
split, content hash) drives the rest of the build.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipeline.augment import derive_seed
from pipeline.config import Config
from pipeline.errors import SourceError
from pipeline.images import Mode, content_sha256
from pipeline.sources import open_source
from pipeline.sources.base import Encoded, Sample, SourceReader
from pipeline.workers import run_all

PIXELS_FILE = "pixels.arrow"
INDEX_FILE = "index.parquet"
_BATCH_ROWS = 2048
# Ingest hands images to workers in chunks, a window of a few chunks per worker at a time.
_CHUNK_ROWS = 256
_WINDOW_CHUNKS = 4
SPLIT_ORDER = ("train", "validation", "test")


@dataclass(frozen=True)
class Index:
    """What the build needs to know of each source image (row i = pixel row i)."""

    source_ids: list[str]
    labels: np.ndarray
    splits: list[str]
    sha256: list[str]


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

    def counts(self) -> dict[str, dict[str, int]]:
        """Source images per split and class name."""
        counts: dict[str, dict[str, int]] = {}
        for split, label in zip(self.index.splits, self.index.labels, strict=True):
            by_class = counts.setdefault(split, {})
            name = self.class_names[label]
            by_class[name] = by_class.get(name, 0) + 1
        return counts


def ingest(config: Config, work_dir: Path, workers: int = 1) -> Ingested:
    """Read the configured source into ``work_dir`` and assign every image a split.

    Encoded images are decoded and hashed on ``workers`` processes, a window of chunks at
    a time, so memory does not grow with the source.

    Raises:
        SourceError: the source is unreadable, or images differ in size (the message
            names the first image whose size differs from the first image's).
    """
    reader = open_source(config.source, workers)
    work_dir.mkdir(parents=True, exist_ok=True)
    pixels_path = work_dir / PIXELS_FILE
    ids: list[str] = []
    labels: list[int] = []
    given_splits: list[str | None] = []
    hashes: list[str] = []
    shape: tuple[int, ...] | None = None

    def checked():
        nonlocal shape
        for samples, staged in _staged(reader, workers):
            for sample, (raw, sample_shape, sha) in zip(samples, staged, strict=True):
                if shape is None:
                    shape = sample_shape
                elif sample_shape != shape:
                    raise SourceError(
                        f"{sample.source_id}: image size {_size(sample_shape)} differs from "
                        f"{_size(shape)} of the first image; all images of a dataset must match"
                    )
                ids.append(sample.source_id)
                labels.append(sample.label)
                given_splits.append(sample.split)
                hashes.append(sha)
                yield raw

    write_pixels(pixels_path, checked())
    if shape is None:
        raise SourceError(f"source {config.source.kind} {config.source.path or ''}: no images")
    if len(set(ids)) != len(ids):
        duplicate = next(i for i, n in Counter(ids).items() if n > 1)
        raise SourceError(f"source id {duplicate!r} occurs twice")

    label_array = np.asarray(labels, dtype=np.int64)
    fingerprint = _fingerprint(reader.class_names, reader.mode, shape, ids, labels, given_splits, hashes)
    carved = all(split is None for split in given_splits)
    if carved:
        splits = carve_test_split(ids, label_array, config.split.test_fraction, config.seed)
    else:
        splits = [split or "train" for split in given_splits]
    return Ingested(
        pixels_path=pixels_path,
        index=Index(ids, label_array, splits, hashes),
        class_names=list(reader.class_names),
        mode=reader.mode,
        shape=tuple(shape),
        fingerprint=fingerprint,
        split_carved=carved,
    )


def carve_test_split(ids: list[str], labels: np.ndarray, fraction: float, seed: int) -> list[str]:
    """Stratified, seeded train/test assignment that does not depend on input order.

    Within each class, images are ranked by a hash of (seed, id) and the first
    round(fraction * n) go to test, keeping at least one image in train.
    """
    splits = ["train"] * len(ids)
    for label in np.unique(labels):
        members = [i for i in np.flatnonzero(labels == label)]
        members.sort(key=lambda i: (derive_seed(seed, ids[i], "split"), ids[i]))
        n_test = min(int(np.floor(fraction * len(members) + 0.5)), len(members) - 1)
        for i in members[:n_test]:
            splits[i] = "test"
    return splits


def _staged(reader: SourceReader, workers: int) -> Iterator[tuple[list[Sample], list[tuple]]]:
    """Chunks of samples with their (raw pixel bytes, shape, content hash), in order."""
    window: list[list[Sample]] = []
    chunk: list[Sample] = []
    for sample in reader:
        chunk.append(sample)
        if len(chunk) == _CHUNK_ROWS:
            window.append(chunk)
            chunk = []
            if len(window) == _WINDOW_CHUNKS * workers:
                yield from _stage_window(window, reader.mode, workers)
                window = []
    yield from _stage_window([*window, chunk] if chunk else window, reader.mode, workers)


def _stage_window(window: list[list[Sample]], mode: Mode, workers: int):
    calls = [([s.pixels for s in chunk], mode) for chunk in window]
    encoded = any(isinstance(s.pixels, Encoded) for chunk in window for s in chunk)
    # Decoding is worth a worker process; hashing arrays a source has decoded is not.
    results = run_all(stage_chunk, calls, workers if encoded else 1)
    yield from zip(window, results, strict=True)


def stage_chunk(images: list[np.ndarray | Encoded], mode: Mode) -> list[tuple[bytes, tuple, str]]:
    """Decode what is still encoded; return each image's raw bytes, shape and content hash."""
    staged = []
    for image in images:
        pixels = image.decode(mode) if isinstance(image, Encoded) else image
        staged.append((np.ascontiguousarray(pixels).tobytes(), pixels.shape, content_sha256(pixels)))
    return staged


def write_pixels(path: Path, images) -> int:
    """Stage raw uint8 pixel bytes (or arrays) into an uncompressed Arrow IPC file, in
    batches; return the count."""
    schema = pa.schema([("pixels", pa.binary())])
    batch: list[bytes] = []
    count = 0
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, schema) as writer:
        for image in images:
            batch.append(image if isinstance(image, bytes) else np.ascontiguousarray(image).tobytes())
            count += 1
            if len(batch) >= _BATCH_ROWS:
                writer.write_batch(pa.record_batch([pa.array(batch, pa.binary())], schema=schema))
                batch = []
        if batch:
            writer.write_batch(pa.record_batch([pa.array(batch, pa.binary())], schema=schema))
    return count


def save_index(index: Index, path: Path) -> None:
    """Persist the index (for stages that run in other processes)."""
    pq.write_table(
        pa.table(
            {
                "source_id": index.source_ids,
                "label": index.labels,
                "split": index.splits,
                "sha256": index.sha256,
            }
        ),
        path,
    )


def load_index(path: Path) -> Index:
    columns = pq.read_table(path).to_pydict()
    return Index(
        columns["source_id"],
        np.asarray(columns["label"], dtype=np.int64),
        columns["split"],
        columns["sha256"],
    )


class PixelStore:
    """Random access to staged pixels through a memory map; use as a context manager."""

    def __init__(self, path: Path, shape: tuple[int, ...]):
        self._map = pa.memory_map(str(path), "r")
        self._column = ipc.open_file(self._map).read_all().column("pixels")
        self._shape = shape

    def __getitem__(self, row: int) -> np.ndarray:
        return np.frombuffer(self._column[row].as_py(), dtype=np.uint8).reshape(self._shape)

    def __enter__(self) -> PixelStore:
        return self

    def __exit__(self, *exc) -> None:
        self._column = None
        self._map.close()


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}" + (f"x{shape[2]}" if len(shape) > 2 else "")


def _fingerprint(class_names, mode, shape, ids, labels, splits, hashes) -> str:
    digest = hashlib.sha256()
    digest.update(f"{list(class_names)}\x1e{mode}\x1e{tuple(shape)}\x1e".encode())
    for row in zip(ids, labels, splits, hashes, strict=True):
        digest.update(("\x1f".join(str(v or "") for v in row) + "\x1e").encode())
    return digest.hexdigest()
