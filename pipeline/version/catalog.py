"""Versions on disk: the lock, the listing, refs (``latest``, tags) and gc (what changed
between versions and where a row came from: :mod:`pipeline.version.rows`).

A dataset directory ``<output.root>/<name>`` holds::

    v-<id>/          published versions (complete: manifest.json is written last)
    .incomplete-*/   staging of a running or crashed build; never listed
    latest           symlink to the version the last run published (or found unchanged)
    tags/<tag>       symlinks to tagged versions; gc never removes a tagged version
    digests/<id>.sha256  each version's manifest sha256, recorded when it was published
    .lock            held by whoever changes the directory (a run, gc, tag)

The lock is an exclusive ``flock``: the kernel drops it when its process dies, so a
killed run never leaves the directory locked. ``flock`` is local to one machine (and
unreliable on some network file systems), so runs on several machines need one
orchestrating process per dataset directory.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.durable import fsync_dir, write_durably
from pipeline.core.errors import PipelineError
from pipeline.version.manifest import DIGESTS_DIR, MANIFEST_FILE, digest_line, digest_record, load_manifest

VERSION_PREFIX = "v-"
STAGING_PREFIX = ".incomplete-"
DAMAGED_PREFIX = ".damaged-"  # a version that failed its check, set aside for a look (gc removes it)
DAMAGED_NOTE = "DAMAGED.txt"
LATEST = "latest"
TAGS_DIR = "tags"
LOCK_FILE = ".lock"
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_POLL_SECONDS = 0.2


# -- lock -----------------------------------------------------------------------------------
@contextmanager
def dataset_lock(dataset_dir: Path, *, purpose: str, timeout: float = 0.0) -> Iterator[None]:
    """Hold the dataset directory's lock for the ``with`` block.

    Args:
        dataset_dir: created when missing.
        purpose: what the holder does, shown to whoever finds it locked.
        timeout: seconds to wait for another holder; 0 fails at once.

    Raises:
        PipelineError: another process held the lock for longer than ``timeout``.
    """
    dataset_dir.mkdir(parents=True, exist_ok=True)
    path = dataset_dir / LOCK_FILE
    fd = _open_lock_file(path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PipelineError(_busy_message(path, timeout)) from None
                time.sleep(_POLL_SECONDS)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose}
        holder["since"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    """Open (or create) the lock file without following a symbolic link: the lock truncates
    and writes it, which through a link would clobber whatever the link points at.

    Raises:
        PipelineError: ``path`` is a symbolic link or not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PipelineError(f"{path} is a symbolic link; the lock must be a regular file") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PipelineError(f"{path} is not a regular file; the lock must be one")
    return fd


def _busy_message(path: Path, timeout: float) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    who = (
        f"{holder.get('purpose', 'another process')} (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
    )
    waited = f" after waiting {timeout:g} s" if timeout else ""
    return (
        f"{path.parent} is locked by {who}{waited}. Wait for it to finish, "
        "or set output.lock_timeout to wait for it."
    )


def remove_stale_staging(dataset_dir: Path, *, dry_run: bool = False) -> list[Path]:
    """Remove (or, dry, only list) staging directories left by crashed runs. The caller
    holds the lock."""
    stale = sorted(p for p in dataset_dir.glob(f"{STAGING_PREFIX}*") if p.is_dir())
    for path in [] if dry_run else stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def set_aside(version: Path, problems: list[str]) -> Path:
    """Move a damaged version out of the way (``.damaged-<id>-<random>``, with the problems
    in ``DAMAGED.txt``) so that a rebuild can take its place. The caller holds the lock.

    Returns:
        Where it went.
    """
    aside = version.parent / f"{DAMAGED_PREFIX}{version.name}-{uuid.uuid4().hex[:8]}"
    os.replace(version, aside)
    fsync_dir(version.parent)
    if aside.is_dir() and not aside.is_symlink():
        (aside / DAMAGED_NOTE).write_text("\n".join(problems) + "\n", encoding="utf-8")
    return aside


def record_digest(dataset_dir: Path, version_id: str, sha256: str) -> Path:
    """Record a version's manifest sha256 in ``digests/`` (durably); the caller holds the lock
    and publishes the version after this, so a published version always has its record."""
    path = Path(digest_record(str(dataset_dir), version_id))
    if path.parent.is_symlink():
        raise PipelineError(f"{path.parent} is a symbolic link; digests live in a real folder")
    path.parent.mkdir(exist_ok=True)
    write_durably(path, digest_line(version_id, sha256).encode())
    return path


# -- finding versions -----------------------------------------------------------------------
def is_version(path: Path) -> bool:
    """A published version: a real ``v-*`` directory with a manifest."""
    return (
        path.name.startswith(VERSION_PREFIX)
        and path.is_dir()
        and not path.is_symlink()
        and (path / MANIFEST_FILE).is_file()
    )


def resolve_version(path: str | Path) -> Path:
    """The version directory ``path`` names (directly, or through ``latest`` or a tag).

    Raises:
        PipelineError: ``path`` is not a published version.
    """
    target = Path(path)
    if not (target / MANIFEST_FILE).is_file():
        raise PipelineError(f"{path}: not a dataset version (no {MANIFEST_FILE} there)")
    return target.resolve()


def dataset_dirs(root: Path) -> list[Path]:
    """The dataset directories under ``root`` (``root`` itself when it is one)."""
    if not root.is_dir():
        raise PipelineError(f"{root}: no such directory")
    if _is_dataset_dir(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and _is_dataset_dir(p))


def _is_dataset_dir(path: Path) -> bool:
    return (path / LOCK_FILE).exists() or any(is_version(p) for p in path.iterdir())


def version_dirs(dataset_dir: Path) -> list[Path]:
    """The published versions in a dataset directory, by name."""
    return sorted(p for p in dataset_dir.iterdir() if is_version(p))


# -- refs -----------------------------------------------------------------------------------
def refs(dataset_dir: Path) -> tuple[str | None, dict[str, str]]:
    """(version id ``latest`` points at, {tag: version id})."""
    latest = _target(dataset_dir / LATEST)
    tags_dir = dataset_dir / TAGS_DIR
    tags = {}
    if tags_dir.is_dir() and not tags_dir.is_symlink():  # a linked tags folder is not followed
        for link in sorted(tags_dir.iterdir()):
            target = _target(link)
            if target:
                tags[link.name] = target
    return latest, tags


def _target(link: Path) -> str | None:
    return Path(os.readlink(link)).name if link.is_symlink() else None


def _point(link: Path, target: str) -> None:
    """Make ``link`` a symlink to ``target`` atomically (a new link renamed over the old)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(target, temporary)
    os.replace(temporary, link)
    fsync_dir(link.parent)


def set_latest(dataset_dir: Path, version_id: str) -> None:
    """Point ``latest`` at a version. The caller holds the lock."""
    _point(dataset_dir / LATEST, version_id)


def tag_version(version: Path, tag: str, *, delete: bool = False, lock_timeout: float = 0.0) -> str | None:
    """Point ``tags/<tag>`` at ``version`` (or delete the tag).

    Returns:
        The version id the tag pointed at before, if any.

    Raises:
        PipelineError: a bad tag name, or (deleting) a tag that does not exist.
    """
    if not _TAG_RE.match(tag) or tag == LATEST:
        raise PipelineError(
            f"tag {tag!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            f"(and not {LATEST!r})"
        )
    version = resolve_version(version)
    dataset_dir = version.parent
    if (dataset_dir / TAGS_DIR).is_symlink():
        raise PipelineError(f"{dataset_dir / TAGS_DIR} is a symbolic link; tags live in a real folder")
    link = dataset_dir / TAGS_DIR / tag
    with dataset_lock(dataset_dir, purpose=f"tag {tag}", timeout=lock_timeout):
        previous = _target(link)
        if delete:
            if previous is None:
                raise PipelineError(f"{dataset_dir}: no tag {tag!r}")
            link.unlink()
        else:
            _point(link, f"../{version.name}")
    return previous


# -- listing --------------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionSummary:
    """One line of the catalog."""

    version_id: str
    path: str
    name: str
    created: str
    source: str
    fingerprint: str
    rows: dict[str, dict[str, int]]
    bytes: int
    tags: list[str] = field(default_factory=list)
    latest: bool = False
    damaged: str | None = None  # why its manifest cannot be read; the other fields are empty

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(version: Path, latest: str | None = None, tags: dict[str, str] | None = None) -> VersionSummary:
    """One version's catalog line (``latest``, ``tags``: the dataset's refs, see :func:`refs`).

    A version whose manifest is unreadable or does not fit the schema is summarised as
    damaged, with the reason, and named by its folder.
    """
    try:
        manifest = load_manifest(version)
    except PipelineError as exc:
        vid = version.name
        return VersionSummary(
            version_id=vid,
            path=str(version),
            name=version.parent.name,
            created="",
            source="",
            fingerprint="",
            rows={},
            bytes=0,
            tags=sorted(t for t, target in (tags or {}).items() if target == vid),
            latest=latest == vid,
            damaged=str(exc),
        )
    vid = manifest.version_id
    return VersionSummary(
        version_id=vid,
        path=str(version),
        name=manifest.name,
        created=manifest.created,
        source=manifest.source.kind,
        fingerprint=manifest.source.fingerprint,
        rows={split: dict(info.by_origin) for split, info in sorted(manifest.splits.items())},
        bytes=sum(f.bytes for f in manifest.files) + (version / MANIFEST_FILE).stat().st_size,
        tags=sorted(t for t, target in (tags or {}).items() if target == vid),
        latest=latest == vid,
    )


def list_versions(root: Path) -> list[VersionSummary]:
    """Every published version under ``root``, oldest first within each dataset."""
    summaries = []
    for dataset_dir in dataset_dirs(root):
        latest, tags = refs(dataset_dir)
        found = [summarize(v, latest, tags) for v in version_dirs(dataset_dir)]
        summaries += sorted(found, key=lambda s: (s.created, s.version_id))
    return summaries


# -- gc -------------------------------------------------------------------------------------
def gc(root: Path, *, keep: int, dry_run: bool = False, lock_timeout: float = 0.0) -> dict[str, list[str]]:
    """Remove all but the ``keep`` newest versions of each dataset, sparing tagged ones and
    ``latest``; damaged versions (unreadable manifest) unless tagged or ``latest``; the
    damaged versions runs set aside; and the staging directories of crashed runs.

    Returns:
        ``{"removed": [...], "staging": [...], "kept": [...]}`` paths (staging: crashed
        runs' and set-aside damaged folders).
    """
    if keep < 0:
        raise PipelineError(f"gc: --keep must be 0 or more, got {keep}")
    report: dict[str, list[str]] = {"removed": [], "staging": [], "kept": []}
    for dataset_dir in dataset_dirs(root):
        with dataset_lock(dataset_dir, purpose="gc", timeout=lock_timeout):
            latest, tags = refs(dataset_dir)
            protected = set(tags.values()) | ({latest} if latest else set())
            newest_first = sorted(
                (summarize(v) for v in version_dirs(dataset_dir)),
                key=lambda s: (s.created, s.version_id),
                reverse=True,
            )
            damaged = [s for s in newest_first if s.damaged]
            newest_first = [s for s in newest_first if not s.damaged] + damaged
            for rank, summary in enumerate(newest_first):
                if summary.version_id in protected or (rank < keep and not summary.damaged):
                    report["kept"].append(summary.path)
                    continue
                report["removed"].append(summary.path)
                if not dry_run:
                    _remove_version(Path(summary.path))
            report["staging"] += [str(p) for p in remove_stale_staging(dataset_dir, dry_run=dry_run)]
            aside = sorted(p for p in dataset_dir.glob(f"{DAMAGED_PREFIX}*") if p.is_dir())
            report["staging"] += [str(p) for p in aside]
            for path in [] if dry_run else aside:
                shutil.rmtree(path, ignore_errors=True)
            if not dry_run:
                _remove_orphan_digests(dataset_dir)
    return report


def _remove_orphan_digests(dataset_dir: Path) -> None:
    """Digest records of versions no longer there (removed, or a crash before the rename)."""
    folder = dataset_dir / DIGESTS_DIR
    if folder.is_dir() and not folder.is_symlink():
        for record in folder.glob("*.sha256"):
            if not is_version(dataset_dir / record.name.removesuffix(".sha256")):
                record.unlink()


def _remove_version(version: Path) -> None:
    # Renamed out of the listing first, so a partial removal is never seen as a version.
    doomed = version.with_name(f"{STAGING_PREFIX}gc-{version.name}")
    version.rename(doomed)
    shutil.rmtree(doomed)
