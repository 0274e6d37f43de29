"""Shard writers: Hugging Face Parquet shards and torchvision image folders.

A writer is built with keyword arguments, takes rows through :meth:`write`, and returns
its entry from :meth:`finish`: the files it wrote (relative path, bytes, sha256), its row
count and counts per origin and class. Used as a context manager, a writer whose block
raises removes what it wrote, so no partial shard is left behind. Writers do not decide
the layout or the version; the builder does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.version.layout import ORIGINS, file_entry, lineage_schema, parquet_schema

ROW_GROUP_ROWS = 1000


@dataclass(frozen=True)
class Row:
    """One output image and its lineage."""

    id: str
    label: int
    origin: str
    source_id: str
    source_sha256: str
    seed: int | None
    sha256: str
    params: str | None
    encoded: bytes
    soft_label: list[float] | None = None  # one probability per class, with augment.mix
    weight: float | None = None  # the row's loss weight, with synthesis.weight below 1


class _CountingWriter:
    def __init__(self, class_names: list[str]):
        if not class_names:
            raise ValueError("class_names must not be empty")
        self._class_names = list(class_names)
        self._counts: dict[str, dict[str, int]] = {}
        self._rows = 0
        self._finished = False

    def _check(self, row: Row) -> None:
        if self._finished:
            raise RuntimeError("write() after finish()")
        if row.origin not in ORIGINS:
            raise ValueError(f"origin {row.origin!r} is not one of {ORIGINS}")
        if not 0 <= row.label < len(self._class_names):
            raise ValueError(f"label {row.label} is outside 0..{len(self._class_names) - 1}")
        by_class = self._counts.setdefault(row.origin, {})
        name = self._class_names[row.label]
        by_class[name] = by_class.get(name, 0) + 1
        self._rows += 1

    def _entry(self, files: list[dict[str, Any]]) -> dict[str, Any]:
        self._finished = True
        return {"rows": self._rows, "counts": self._counts, "files": files}


class ParquetShardWriter(_CountingWriter):
    """Writes one Parquet shard incrementally, a row group at a time."""

    def __init__(
        self,
        *,
        root: Path,
        path: Path,
        class_names: list[str],
        extension: str = ".png",
        row_group_rows: int = ROW_GROUP_ROWS,
        soft_labels: bool = False,
        weights: bool = False,
    ):
        super().__init__(class_names)
        self._extension = extension
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be positive, got {row_group_rows}")
        self._root = Path(root)
        self._path = Path(path)
        self._schema = parquet_schema(class_names, soft_labels, weights)
        self._row_group_rows = row_group_rows
        self._buffer: list[Row] = []
        _make_folder(self._root, self._path.parent)
        self._writer = pq.ParquetWriter(self._path, self._schema)

    def write(self, row: Row) -> None:
        self._check(row)
        self._buffer.append(row)
        if len(self._buffer) >= self._row_group_rows:
            self._flush()

    def finish(self) -> dict[str, Any]:
        self._flush()
        self._writer.close()
        return self._entry([file_entry(self._root, self._path)])

    def _flush(self) -> None:
        if not self._buffer:
            return
        rows = self._buffer
        columns = {
            "image": [{"bytes": r.encoded, "path": f"{r.origin}-{r.id}{self._extension}"} for r in rows],
            **{name: [getattr(r, name) for r in rows] for name in self._schema.names[1:]},
        }
        self._writer.write_table(pa.table(columns, schema=self._schema))
        self._buffer = []

    def __enter__(self) -> ParquetShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._writer.close()
            self._path.unlink(missing_ok=True)


class ImageFolderShardWriter(_CountingWriter):
    """Writes ``{split}/{class}/{origin}-{id}{extension}`` image files plus a lineage Parquet file.

    The lineage file holds every column of the Parquet format but the image bytes, and a
    ``file_name`` column relative to the version root.
    """

    def __init__(
        self,
        *,
        root: Path,
        split: str,
        lineage_path: Path,
        class_names: list[str],
        extension: str = ".png",
        soft_labels: bool = False,
        weights: bool = False,
    ):
        super().__init__(class_names)
        self._soft_labels = soft_labels
        self._weights = weights
        self._extension = extension
        self._root = Path(root)
        self._split = split
        self._lineage_path = Path(lineage_path)
        self._written: list[Path] = []
        self._lineage: list[dict[str, Any]] = []
        self._folders: set[Path] = set()

    def write(self, row: Row) -> None:
        self._check(row)
        name = f"{row.origin}-{row.id}{self._extension}"
        path = self._root / self._split / self._class_names[row.label] / name
        if path.parent not in self._folders:
            _make_folder(self._root, path.parent)
            self._folders.add(path.parent)
        path.write_bytes(row.encoded)
        self._written.append(path)
        record = {k: v for k, v in row.__dict__.items() if k != "encoded"}
        record["file_name"] = path.relative_to(self._root).as_posix()
        self._lineage.append(record)

    def finish(self) -> dict[str, Any]:
        _make_folder(self._root, self._lineage_path.parent)
        schema = lineage_schema(self._class_names, self._soft_labels, self._weights)
        table = pa.Table.from_pylist(self._lineage, schema=schema)
        pq.write_table(table, self._lineage_path)
        files = [file_entry(self._root, p) for p in [*self._written, self._lineage_path]]
        return self._entry(files)

    def __enter__(self) -> ImageFolderShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            for path in [*self._written, self._lineage_path]:
                path.unlink(missing_ok=True)


def _make_folder(root: Path, folder: Path) -> None:
    """Create ``folder`` and the folders between it and ``root``, but never ``root``: a
    shard still being written when its run failed or was interrupted must not make the
    removed staging folder again (it fails, with ``FileNotFoundError``)."""
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        current.mkdir(exist_ok=True)
