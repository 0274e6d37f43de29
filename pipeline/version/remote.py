"""Published versions on remote storage: any fsspec URL (``s3://``, ``gs://``, ``az://``,
``memory://``; the backend's package, such as ``s3fs``, must be installed).

A build always happens under ``output.root``, a local or shared file system: workers read
the staged pixels and write the shards there. With ``output.remote`` set, each published
version is then uploaded to ``<remote>/<name>/<version id>/``: the manifest's files first,
each read back and checked against its sha256 in the manifest, then the manifest's digest
record (``<remote>/<name>/digests/<version id>.sha256``, which ``verify`` of the remote URL
checks the manifest against), and the manifest last, so a remote version whose manifest
exists is complete. ``<remote>/<name>/latest`` is a text file naming the latest version
(object stores have no links). Versions are immutable and named by their content, so uploading one
that is already there moves only ``latest``.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

import fsspec

from pipeline.core.errors import PipelineError
from pipeline.core.failpoints import crash_point
from pipeline.core.hashing import stream_sha256
from pipeline.version.catalog import LATEST
from pipeline.version.manifest import (
    MANIFEST_FILE,
    digest_line,
    digest_record,
    load_manifest,
    manifest_digest,
)


def push(version_dir: Path, url: str, *, latest: bool = True) -> str:
    """Upload a published version under ``url`` (see the module); return its remote URL.

    Args:
        latest: also point ``<url>/<name>/latest`` at it.

    Raises:
        PipelineError: the version's manifest does not load, the storage refused a write, or
            a file arrived with another size or sha256.
    """
    manifest = load_manifest(version_dir)
    try:
        fs, base = fsspec.core.url_to_fs(url)
        dataset = posixpath.join(base, manifest.name)
        target = posixpath.join(dataset, manifest.version_id)
        if not fs.exists(posixpath.join(target, MANIFEST_FILE)):
            for entry in manifest.files:
                _upload(fs, version_dir / entry.path, posixpath.join(target, entry.path), entry.sha256)
                crash_point("upload.file")
            digest = manifest_digest(version_dir)
            record = digest_record(dataset, manifest.version_id)
            fs.makedirs(posixpath.dirname(record), exist_ok=True)
            fs.pipe_file(record, digest_line(manifest.version_id, digest).encode())
            _upload(fs, version_dir / MANIFEST_FILE, posixpath.join(target, MANIFEST_FILE), digest)  # last
        if latest:
            fs.pipe_file(posixpath.join(dataset, LATEST), f"{manifest.version_id}\n".encode())
    except (OSError, ImportError, ValueError) as exc:
        raise PipelineError(f"uploading {version_dir.name} to {url}: {exc}") from exc
    return remote_url(url, manifest.name, manifest.version_id)


def _upload(fs: Any, local: Path, remote: str, sha256: str) -> None:
    """Upload one file and read it back: it must have the sha256 the manifest records."""
    fs.makedirs(posixpath.dirname(remote), exist_ok=True)
    fs.put_file(str(local), remote)
    with fs.open(remote, "rb") as handle:
        arrived = stream_sha256(handle)
    if arrived != sha256:
        raise PipelineError(
            f"{fs.unstrip_protocol(remote)}: arrived with sha256 {arrived[:16]}..., "
            f"the manifest says {sha256[:16]}..."
        )


def remote_url(url: str | None, name: str, version_id: str) -> str | None:
    """Where :func:`push` puts version ``version_id`` of dataset ``name`` under ``url``."""
    return f"{url.rstrip('/')}/{name}/{version_id}" if url else None
