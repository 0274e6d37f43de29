"""The manifest: what a version contains, how it was made, and every file's hash.

``manifest.json`` is written last into a version; its presence marks the version complete.
Keys are sorted, and ``schema_version`` says how to read it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import posixpath
import re
import socket
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

import pipeline
from pipeline.core.durable import write_durably
from pipeline.core.errors import PipelineError
from pipeline.core.hashing import stream_sha256
from pipeline.version.layout import lineage_schema, parquet_schema
from pipeline.version.model import SCHEMA_VERSION, FileEntry, Manifest, as_manifest, config_soft_labels

SUPPORTED_SCHEMA_VERSIONS = (SCHEMA_VERSION,)
MANIFEST_FILE = "manifest.json"
# ``<dataset>/digests/<version id>.sha256``: the manifest's sha256, recorded when the version
# is published (locally and on the remote), in ``sha256sum`` form relative to the dataset
# folder. ``verify`` compares the manifest with it, so a manifest rewritten afterwards to fit
# changed files is seen (unless the record was rewritten too: keep a copy elsewhere and pass
# it to ``verify --manifest-sha256``).
DIGESTS_DIR = "digests"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_VERSION_NAME = re.compile(r"v-[0-9a-f]{16}")
# Files added to a version after publishing (evaluations): not hashed into the manifest.
ATTACHMENTS_DIR = "attachments"
# Libraries whose versions can change the bytes of a version: they enter its id. torchvision
# does: its policies (TrivialAugmentWide, RandAugment, AutoAugment; augment.backend
# torchvision, and tuning's candidates) make augmented images, and a trained generator's
# checkpoint, published in the version, records its version.
CONTENT_LIBRARIES = (
    "torch",
    "torchvision",
    "albumentations",
    "albucore",
    "opencv-python-headless",
    "numpy",
    "pillow",
    "pyarrow",
)
# Recorded for the record only.
OTHER_LIBRARIES = ("prefect", "pydantic")


def library_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` (``"not installed"`` for missing ones)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def version_id(
    content_config: dict[str, Any], source_kind: str, fingerprint: str, checkpoint_sha256: str | None = None
) -> str:
    """A content-derived id: same source content, settings, code, libraries (and given
    generator checkpoint), same id."""
    key = {
        "checkpoint": checkpoint_sha256,
        "schema_version": SCHEMA_VERSION,
        "code": pipeline.__version__,
        "libraries": library_versions(CONTENT_LIBRARIES),
        "config": content_config,
        "source": {"kind": source_kind, "fingerprint": fingerprint},
    }
    blob = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
    return "v-" + hashlib.sha256(blob).hexdigest()[:16]


def run_info(started: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Who made the version, where and when (``started``: ISO time; ``extra``: e.g. the
    orchestrator's run id)."""
    return {
        "started": started,
        "finished": utcnow().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "code_version": pipeline.__version__,
        "git": git_revision(),
        **(extra or {}),
    }


def git_revision() -> dict[str, Any] | None:
    """The commit of the code's git checkout and whether it had local changes (None when
    the code is not in a git checkout, e.g. installed from a wheel)."""
    here = Path(pipeline.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def utcnow() -> datetime:
    return datetime.now(UTC)


def summarise_counts(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per split: rows, rows per origin, and rows per origin and class, from shard entries."""
    splits: dict[str, Any] = {}
    for entry in entries:
        split = splits.setdefault(entry["split"], {"rows": 0, "by_origin": {}, "by_origin_class": {}})
        split["rows"] += entry["rows"]
        for origin, by_class in entry["counts"].items():
            split["by_origin"][origin] = split["by_origin"].get(origin, 0) + sum(by_class.values())
            target = split["by_origin_class"].setdefault(origin, {})
            for name, n in by_class.items():
                target[name] = target.get(name, 0) + n
    return splits


def write_manifest(version_dir: Path, manifest: Manifest | dict[str, Any]) -> Path:
    """Write ``manifest.json`` (sorted keys, indented by 2) durably (temporary file, fsync,
    rename, fsync of the folder) and return its path.

    Args:
        version_dir: the version's folder.
        manifest: the manifest; a dict (as the builder assembles it, without
            ``schema_version``) is validated against :class:`Manifest` first.

    Raises:
        PipelineError: the manifest does not fit the schema (names the first failing key).
    """
    try:
        model = as_manifest(manifest)
    except ValidationError as exc:
        raise PipelineError(f"{version_dir}: the manifest to write {_first_error(exc)}") from None
    path = version_dir / MANIFEST_FILE
    write_durably(path, (json.dumps(model.as_json(), sort_keys=True, indent=2) + "\n").encode("utf-8"))
    return path


def load_manifest(version: Path | str) -> Manifest:
    """Load and validate a version's manifest (``version``: a folder, or an fsspec URL).

    Raises:
        PipelineError: no readable manifest there, a ``schema_version`` this code does not
            read, or a manifest that does not fit the schema (names the first failing key).
    """
    try:
        raw = _read_raw(version)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{version}: no readable {MANIFEST_FILE} ({exc})") from None
    return _validated(raw, str(version))


def _validated(raw: Any, where: str) -> Manifest:
    found = raw.get("schema_version") if isinstance(raw, dict) else None
    if found not in SUPPORTED_SCHEMA_VERSIONS:
        raise PipelineError(
            f"{where}: {MANIFEST_FILE} has schema_version {found!r}; this code reads "
            f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise PipelineError(
            f"{where}: {MANIFEST_FILE} (schema_version {found}) {_first_error(exc)}"
        ) from None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"does not fit the schema: {key}: {first['msg']}{more}"


def _read_raw(version: Path | str) -> dict[str, Any]:
    """A version's manifest as parsed JSON, unvalidated (``version``: a folder or an fsspec URL)."""
    fs, root = fsspec.core.url_to_fs(str(version))
    return json.loads(fs.cat_file(posixpath.join(root, MANIFEST_FILE)))


def digest_line(version_id: str, sha256: str) -> str:
    """The text of a version's digest record (``sha256sum`` form, relative to the dataset folder)."""
    return f"{sha256}  {version_id}/{MANIFEST_FILE}\n"


def digest_record(dataset: str, version_id: str) -> str:
    """Where the digest record of ``version_id`` lives under a dataset folder or URL."""
    return posixpath.join(dataset, DIGESTS_DIR, f"{version_id}.sha256")


def recorded_digest(version: Path | str) -> str | None:
    """The manifest sha256 recorded for a version when it was published (in the digests
    folder beside it, local or remote), found by the version's folder name (a ``v-*``
    folder; else by the id in its manifest); None when there is no readable record."""
    try:
        fs, root = fsspec.core.url_to_fs(str(version))
        root = root.rstrip("/")
        name = posixpath.basename(root)
        if not _VERSION_NAME.fullmatch(name):  # a copy under another name: the manifest's id
            name = str(json.loads(fs.cat_file(posixpath.join(root, MANIFEST_FILE)))["version_id"])
        record = fs.cat_file(digest_record(posixpath.dirname(root), name))
    except (OSError, ValueError, KeyError, TypeError, ImportError):
        return None
    found = record.decode("utf-8", "replace").split()
    return found[0] if found and _SHA256.fullmatch(found[0]) else None


def manifest_digest(version: Path | str) -> str:
    """sha256 of a version's ``manifest.json`` bytes (a folder or an fsspec URL)."""
    fs, root = fsspec.core.url_to_fs(str(version))
    return hashlib.sha256(fs.cat_file(posixpath.join(root, MANIFEST_FILE))).hexdigest()


def verify(version: Path | str, *, full: bool = True, manifest_sha256: str | None = None) -> list[str]:
    """Check a version against its manifest; return the problems (none: intact).

    Checks that the manifest's sha256 is the one recorded when the version was published
    (``manifest_sha256`` when given, else the digest record beside the version; none
    recorded: not checked), that every listed file exists with its size (and, when
    ``full``, its sha256), that no unlisted file is present (outside ``attachments/``), and
    that every shard has the schema and row count the manifest records. ``version``: a
    folder, or an fsspec URL of an uploaded version (see :mod:`pipeline.version.remote`).
    """
    try:
        fs, root = fsspec.core.url_to_fs(str(version))
    except (ImportError, ValueError) as exc:  # an unknown protocol, its backend not installed
        return [f"not readable: {exc}"]
    try:
        data = fs.cat_file(posixpath.join(root, MANIFEST_FILE))
        manifest = _validated(json.loads(data), str(version))
    except (OSError, ValueError) as exc:
        return [f"{MANIFEST_FILE}: unreadable ({exc})"]
    except PipelineError as exc:
        return [str(exc)]
    problems = _check_digest(hashlib.sha256(data).hexdigest(), manifest_sha256, recorded_digest(version))
    folder = posixpath.basename(root.rstrip("/"))
    if _VERSION_NAME.fullmatch(folder) and folder != manifest.version_id:
        problems.append(f"{MANIFEST_FILE}: names version {manifest.version_id}, but it is in {folder}")
    listed = {f.path: f for f in manifest.files}
    damaged = set()
    for path, entry in listed.items():
        problem = _check_file(fs, root, entry, full)
        if problem:
            problems.append(problem)
            damaged.add(path)
    for path in sorted(fs.find(root)):
        relative = posixpath.relpath(path, root)
        if relative not in listed and relative != MANIFEST_FILE:
            if not relative.startswith(ATTACHMENTS_DIR + "/"):
                problems.append(f"{relative}: present but not listed in the manifest")
    return problems + _check_rows(fs, root, manifest, damaged)


def _check_digest(found: str, given: str | None, recorded: str | None) -> list[str]:
    expected, whose = (given, "--manifest-sha256") if given else (recorded, "the record made at publishing")
    if expected is None or found == expected.lower():
        return []
    return [
        f"{MANIFEST_FILE}: sha256 {found[:16]}..., {whose} says {expected[:16]}...: "
        "changed since it was published"
    ]


def _check_file(fs: Any, root: str, entry: FileEntry, full: bool) -> str | None:
    path = posixpath.join(root, entry.path)
    if _is_link(fs, root, entry.path):
        return f"{entry.path}: a symbolic link; a version holds regular files only"
    if not fs.isfile(path):
        return f"{entry.path}: missing"
    size = fs.size(path)
    if size != entry.bytes:
        return f"{entry.path}: {size} bytes, the manifest says {entry.bytes}"
    if full:
        with fs.open(path, "rb") as handle:
            digest = stream_sha256(handle)
        if digest != entry.sha256:
            return f"{entry.path}: sha256 {digest[:16]}..., the manifest says {entry.sha256[:16]}..."
    return None


def _is_link(fs: Any, root: str, relative: str) -> bool:
    """Whether ``relative`` under ``root``, or a folder on its way there inside the version,
    is a symbolic link (on file systems that have them)."""
    islink = getattr(fs, "islink", None)
    parts = relative.split("/")
    return islink is not None and any(
        islink(posixpath.join(root, *parts[: i + 1])) for i in range(len(parts))
    )


def has_soft_labels(manifest: Manifest | dict[str, Any]) -> bool:
    """Whether the version's rows have a ``soft_label`` column (``augment.mix``, or
    ``synthesis.soft_labels``). (A dict is read as it is, unvalidated: the builder asks
    before its manifest is complete.)"""
    if isinstance(manifest, Manifest):
        return manifest.soft_labels
    return config_soft_labels(manifest.get("config", {}))


def _check_rows(fs: Any, root: str, manifest: Manifest, damaged: set[str]) -> list[str]:
    """Schema and row count of each shard's table, and split totals."""
    parquet = manifest.format == "parquet"
    schema = (parquet_schema if parquet else lineage_schema)(
        manifest.class_names, manifest.soft_labels, manifest.row_weights
    )
    problems, totals = [], {}
    for shard in manifest.shards:
        relative = f"{'data' if parquet else 'lineage'}/{shard.shard}.parquet"
        totals[shard.split] = totals.get(shard.split, 0) + shard.rows
        if relative in damaged:
            continue
        try:
            with fs.open(posixpath.join(root, relative), "rb") as handle:
                metadata = pq.read_metadata(handle)
            found = metadata.schema.to_arrow_schema()
        except (OSError, pa.ArrowException) as exc:
            problems.append(f"{relative}: not readable as Parquet ({exc})")
            continue
        if not found.equals(schema, check_metadata=True):
            problems.append(f"{relative}: schema differs from the expected shard schema")
        if metadata.num_rows != shard.rows:
            problems.append(f"{relative}: {metadata.num_rows} rows, the manifest says {shard.rows}")
    for split, info in manifest.splits.items():
        if totals.get(split, 0) != info.rows:
            held = totals.get(split, 0)
            problems.append(f"split {split}: shards hold {held} rows, the manifest says {info.rows}")
    return problems
