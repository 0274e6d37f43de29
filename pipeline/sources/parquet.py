"""Hugging Face style Parquet: an ``image`` column ({bytes, path} struct or binary) and a label.

A row whose image has no bytes but a path (``datasets``' ``to_parquet`` of local images)
is read from that file.

``source.path`` is one ``.parquet`` file or a folder searched recursively. The split of a
file comes from its name (``train-00000-of-00002.parquet``) or a parent folder
(``test/part-0.parquet``); files with neither are training data. Class names come from
the ``huggingface`` schema metadata (ClassLabel), from string labels (sorted), or from
``source.class_names`` for integer labels. The image column is ``image`` or ``img`` and the
label column ``label`` or ``labels`` unless ``source.image_column`` / ``source.label_column``
name others.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.errors import SourceError
from pipeline.core.images import dataset_mode, header_mode
from pipeline.sources.base import (
    Encoded,
    Invalid,
    Sample,
    SourceReader,
    check_class_names,
    named_classes,
    split_name,
)

IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels")
_BATCH_ROWS = 1024


def open_parquet(
    path: Path,
    class_names: list[str] | None = None,
    *,
    skip_bad: bool = False,
    columns: tuple[str | None, str | None] = (None, None),
    follow_symlinks: bool = False,
) -> SourceReader:
    """Index the Parquet files under ``path``; ``columns`` names the image and label
    columns (None: the first of :data:`IMAGE_COLUMNS`, :data:`LABEL_COLUMNS` present).

    A row whose image is a file path reads that file only when it is a regular file under
    the source's folder (``path``, or a file's folder); with ``follow_symlinks`` it may lie
    anywhere (an absolute or ``..`` path, or a link out). Other paths are refused rows, like
    any bad image (an error, or quarantined with ``skip_bad``).

    Raises:
        SourceError: no files, missing columns; rows with null or unreadable images or
            bad labels (without ``skip_bad``, which quarantines those rows at ingest);
            each message names the file (and row where it applies).
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not files:
        raise SourceError(f"{path}: no .parquet files found")
    base = path.parent if path.is_file() else path
    tables = [_ParquetFile(f, f.relative_to(base).as_posix(), columns, base, follow_symlinks) for f in files]

    modes: set[str] = set()
    string_labels: set[str] = set()
    max_label = -1
    first_problem = ""  # with skip_bad, named when no row is readable
    for table in tables:
        for row, raw, label, problem in table.rows():
            where = f"{table.where} row {row}"
            if problem is None:
                try:
                    modes.add(header_mode(raw if isinstance(raw, str) else io.BytesIO(raw), where))
                except SourceError as exc:
                    if not skip_bad:
                        raise
                    first_problem = first_problem or f" (the first: {exc})"
                    continue
            elif not skip_bad:
                raise SourceError(f"{where}: {problem}")
            else:
                first_problem = first_problem or f" (the first: {where}: {problem})"
            if isinstance(label, str):
                string_labels.add(label)
            elif label is not None:
                max_label = max(max_label, label)
    if not modes:
        raise SourceError(f"{path}: no readable images{first_problem}")
    names = _class_names(tables, string_labels, max_label, class_names, str(path))
    label_of = {name: index for index, name in enumerate(names)}
    unknown = sorted(string_labels - set(names))
    if unknown and not skip_bad:
        raise SourceError(f"{path}: label names {unknown} are not among the classes {names}")
    mode = dataset_mode(modes)

    def samples() -> Iterator[Sample]:
        for table in tables:
            for row, raw, label, problem in table.rows():
                source_id, where = f"{table.rel}:{row}", f"{table.where} row {row}"
                index = label_of.get(label, -1) if isinstance(label, str) else label
                if problem is None and isinstance(label, str) and index < 0:
                    problem = f"label {label!r} is not among the classes {names}"
                elif problem is None and not 0 <= index < len(names):
                    problem = f"label {label} is outside 0..{len(names) - 1}" + (
                        " (-1 marks an unlabelled row, as in a Hub dataset's test split)"
                        if label == -1
                        else ""
                    )
                if problem is None:
                    yield Sample(source_id, index, table.split, Encoded(raw, where))
                else:
                    digest = hashlib.sha256(raw).hexdigest() if isinstance(raw, bytes) else None
                    yield Sample(source_id, -1, table.split, Invalid(where, problem, digest))

    count = sum(table.num_rows for table in tables)
    return SourceReader(class_names=names, mode=mode, samples=samples, count=count)


class _ParquetFile:
    def __init__(
        self, file: Path, rel: str, columns: tuple[str | None, str | None], root: Path, anywhere: bool
    ):
        self.where = str(file)
        self.rel = rel
        self.file = file
        self.root = root.resolve()
        self.anywhere = anywhere
        try:
            self.schema = pq.read_schema(file)
            self.num_rows = pq.read_metadata(file).num_rows
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{file}: not a readable Parquet file: {exc}") from None
        image, label = columns
        self.image_column = _pick(self.schema, (image,) if image else IMAGE_COLUMNS, "image", self.where)
        self.label_column = _pick(self.schema, (label,) if label else LABEL_COLUMNS, "label", self.where)
        self.split = _split_of(Path(rel))
        self.hf_names = _hf_class_names(self.schema, self.label_column)

    def rows(self) -> Iterator[tuple[int, bytes | str | None, int | str | None, str | None]]:
        """(row, image bytes or file, label, problem): a row with a problem has None where
        it lies."""
        try:
            parquet = pq.ParquetFile(self.file)
            batches = parquet.iter_batches(_BATCH_ROWS, columns=[self.image_column, self.label_column])
            row = 0
            for batch in batches:
                for image, label in zip(
                    batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True
                ):
                    (raw, problem), label = self._image(image), self._label(label)
                    if problem is None and raw is None:
                        problem = f"column '{self.image_column}' has no image bytes or path"
                    elif problem is None and label is None:
                        problem = f"column '{self.label_column}' must hold an integer or a string label"
                    yield row, raw if problem is None else None, label, problem
                    row += 1
        except (OSError, pa.ArrowException) as exc:
            raise SourceError(f"{self.where}: cannot read rows: {exc}") from None

    def _image(self, image) -> tuple[bytes | str | None, str | None]:
        """(the image's bytes; else, as ``datasets`` writes local images (``to_parquet``
        keeps their paths, not their bytes), the file its path names (relative to the
        Parquet file's folder); else None, and why a path was refused, if it was)."""
        data, path = (image.get("bytes"), image.get("path")) if isinstance(image, dict) else (image, None)
        if isinstance(data, bytes | bytearray) and data:
            return bytes(data), None
        if isinstance(path, str) and path:
            file = os.path.join(self.file.parent, path)  # an absolute path stays as it is
            return file, self._refused(file, path)
        return None, None

    def _refused(self, file: str, path: str) -> str | None:
        """Why the image file at ``file`` (``path`` in the column) may not be read, or None."""
        real = Path(os.path.realpath(file))
        if not self.anywhere and not real.is_relative_to(self.root):
            return (
                f"image path {path!r} leads outside the source folder {self.root} "
                "(source.follow_symlinks: true reads it)"
            )
        try:
            mode = os.stat(real).st_mode
        except OSError:
            return None  # missing or unreadable: decoding says so, naming the row
        if not stat.S_ISREG(mode):
            return f"image path {path!r} is not a regular file"
        return None

    @staticmethod
    def _label(label) -> int | str | None:
        return None if isinstance(label, bool) or not isinstance(label, int | str) else label


def _pick(schema: pa.Schema, candidates: tuple[str, ...], role: str, where: str) -> str:
    for name in candidates:
        if name in schema.names:
            return name
    raise SourceError(
        f"{where}: needs {'one of the columns' if len(candidates) > 1 else 'the column'} "
        f"{', '.join(candidates)}; has {schema.names} (set source.{role}_column)"
    )


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
        return check_class_names(list(next(iter(hf))) if hf else sorted(string_labels), where)
    if hf and override is None:  # a label outside the names is refused (or skipped) per row
        return check_class_names(list(next(iter(hf))), where)
    return named_classes(max_label + 1, override, where)


def guess_columns(path: Path) -> tuple[str | None, str | None]:
    """For ``expand init``: the image and label columns of the first Parquet file under
    ``path`` where it lacks the usual names (None where a usual name is there, or nothing
    fits): the first column of image bytes ({bytes, path} or binary), the first integer or
    string column with "label" in its name (CIFAR-100's ``fine_label``)."""
    path = Path(path)
    first = path if path.is_file() else min(p for p in path.rglob("*.parquet") if p.is_file())
    try:
        schema = pq.read_schema(first)
    except (OSError, pa.ArrowException):
        return None, None  # opening the source names the file
    image = label = None
    if not set(IMAGE_COLUMNS) & set(schema.names):
        image = next((f.name for f in schema if _holds_images(f.type)), None)
    if not set(LABEL_COLUMNS) & set(schema.names):
        label = next(
            (
                f.name
                for f in schema
                if "label" in f.name.lower() and (pa.types.is_integer(f.type) or pa.types.is_string(f.type))
            ),
            None,
        )
    return image, label


def _holds_images(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return any(kind.field(i).name == "bytes" for i in range(kind.num_fields))
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
