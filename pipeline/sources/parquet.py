"""Hugging Face style Parquet: an ``image`` column ({bytes, path} struct or binary) and a label.

``source.path`` is one ``.parquet`` file or a folder searched recursively. The split of a
file comes from its name (``train-00000-of-00002.parquet``) or a parent folder
(``test/part-0.parquet``); files with neither are training data. Class names come from
the ``huggingface`` schema metadata (ClassLabel), from string labels (sorted), or from
``source.class_names`` for integer labels.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import SourceError
from pipeline.images import dataset_mode, header_mode
from pipeline.sources.base import (
    Encoded,
    Sample,
    SourceReader,
    check_class_names,
    named_classes,
    split_name,
)

IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels")
_BATCH_ROWS = 1024


def open_parquet(path: Path, class_names: list[str] | None = None) -> SourceReader:
    """Index the Parquet files under ``path``.

    Raises:
        SourceError: no files, missing columns, null or undecodable images, bad labels;
            each message names the file (and row where it applies).
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not files:
        raise SourceError(f"{path}: no .parquet files found")
    base = path.parent if path.is_file() else path
    tables = [_ParquetFile(f, f.relative_to(base).as_posix()) for f in files]

    modes: set[str] = set()
    string_labels: set[str] = set()
    max_label = -1
    for table in tables:
        for row, raw, label in table.rows():
            modes.add(header_mode(io.BytesIO(raw), f"{table.where} row {row}"))
            if isinstance(label, str):
                string_labels.add(label)
            else:
                max_label = max(max_label, label)
    names = _class_names(tables, string_labels, max_label, class_names, str(path))
    label_of = {name: index for index, name in enumerate(names)}
    mode = dataset_mode(modes)

    def samples() -> Iterator[Sample]:
        for table in tables:
            for row, raw, label in table.rows():
                source_id = f"{table.rel}:{row}"
                index = label_of[label] if isinstance(label, str) else label
                if not 0 <= index < len(names):
                    raise SourceError(
                        f"{table.where} row {row}: label {label} is outside 0..{len(names) - 1}"
                    )
                yield Sample(source_id, index, table.split, Encoded(raw, f"{table.where} row {row}"))

    return SourceReader(class_names=names, mode=mode, samples=samples)


class _ParquetFile:
    def __init__(self, file: Path, rel: str):
        self.where = str(file)
        self.rel = rel
        self.file = file
        try:
            self.schema = pq.read_schema(file)
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{file}: not a readable Parquet file: {exc}") from None
        self.image_column = _pick(self.schema, IMAGE_COLUMNS, self.where)
        self.label_column = _pick(self.schema, LABEL_COLUMNS, self.where)
        self.split = _split_of(Path(rel))
        self.hf_names = _hf_class_names(self.schema, self.label_column)

    def rows(self) -> Iterator[tuple[int, bytes, int | str]]:
        parquet = pq.ParquetFile(self.file)
        row = 0
        for batch in parquet.iter_batches(_BATCH_ROWS, columns=[self.image_column, self.label_column]):
            images = batch.column(0).to_pylist()
            labels = batch.column(1).to_pylist()
            for image, label in zip(images, labels, strict=True):
                yield row, self._bytes(image, row), self._label(label, row)
                row += 1

    def _bytes(self, image, row: int) -> bytes:
        if isinstance(image, dict):
            image = image.get("bytes")
        if not isinstance(image, bytes | bytearray) or not image:
            raise SourceError(f"{self.where} row {row}: column '{self.image_column}' has no image bytes")
        return bytes(image)

    def _label(self, label, row: int) -> int | str:
        if isinstance(label, bool) or label is None or not isinstance(label, int | str):
            raise SourceError(
                f"{self.where} row {row}: column '{self.label_column}' must be an integer or a "
                f"string, got {label!r}"
            )
        return label


def _pick(schema: pa.Schema, candidates: tuple[str, ...], where: str) -> str:
    for name in candidates:
        if name in schema.names:
            return name
    raise SourceError(f"{where}: needs one of the columns {', '.join(candidates)}; has {schema.names}")


def _split_of(rel: Path) -> str | None:
    token = re.split(r"[-_.]", rel.name, maxsplit=1)[0]
    for candidate in (token, *(p.name for p in reversed(rel.parents))):
        split = split_name(candidate)
        if split:
            return split
    return None


def _hf_class_names(schema: pa.Schema, label_column: str) -> list[str] | None:
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return None
    try:
        feature = json.loads(meta)["info"]["features"][label_column]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names"):
        return [str(n) for n in feature["names"]]
    return None


def _class_names(tables, string_labels, max_label, override, where) -> list[str]:
    hf = {tuple(t.hf_names) for t in tables if t.hf_names}
    if len(hf) > 1:
        raise SourceError(f"{where}: files disagree on the ClassLabel names in their metadata")
    if string_labels:
        if max_label >= 0:
            raise SourceError(f"{where}: labels mix integers and strings")
        names = list(next(iter(hf))) if hf else sorted(string_labels)
        unknown = sorted(string_labels - set(names))
        if unknown:
            raise SourceError(f"{where}: label names {unknown} are not among the classes {names}")
        return check_class_names(names, where)
    if hf and override is None:
        names = check_class_names(list(next(iter(hf))), where)
        if max_label >= len(names):
            raise SourceError(f"{where}: label {max_label} is outside the {len(names)} class names")
        return names
    return named_classes(max_label + 1, override, where)
