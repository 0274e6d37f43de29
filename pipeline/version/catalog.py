"""Versions on disk: the lock, the listing, refs (``latest``, tags), gc, diff and lineage.

A dataset directory ``<output.root>/<name>`` holds::

    v-<id>/          published versions (complete: manifest.json is written last)
    .incomplete-*/   staging of a running or crashed build; never listed
    latest           symlink to the version the last run published (or found unchanged)
    tags/<tag>       symlinks to tagged versions; gc never removes a tagged version
    .lock            held by whoever changes the directory (a run, gc, tag)

The lock is an exclusive ``flock``: the kernel drops it when its process dies, so a
killed run never leaves the directory locked. ``flock`` is local to one machine (and
unreliable on some network file systems), so runs on several machines need one
orchestrating process per dataset directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.core.errors import PipelineError
from pipeline.version.manifest import MANIFEST_FILE, read_manifest

VERSION_PREFIX = "v-"
STAGING_PREFIX = ".incomplete-"
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
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
    return sorted(p for p in dataset_dir.iterdir() if is_version(p))


# -- refs -----------------------------------------------------------------------------------
def refs(dataset_dir: Path) -> tuple[str | None, dict[str, str]]:
    """(version id ``latest`` points at, {tag: version id})."""
    latest = _target(dataset_dir / LATEST)
    tags_dir = dataset_dir / TAGS_DIR
    tags = {}
    if tags_dir.is_dir():
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(version: Path, latest: str | None = None, tags: dict[str, str] | None = None) -> VersionSummary:
    manifest = read_manifest(version)
    vid = manifest["version_id"]
    return VersionSummary(
        version_id=vid,
        path=str(version),
        name=manifest["name"],
        created=manifest["created"],
        source=manifest["source"]["kind"],
        fingerprint=manifest["source"]["fingerprint"],
        rows={split: dict(info["by_origin"]) for split, info in sorted(manifest["splits"].items())},
        bytes=sum(f["bytes"] for f in manifest["files"]) + (version / MANIFEST_FILE).stat().st_size,
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
    ``latest``, and the staging directories of crashed runs.

    Returns:
        ``{"removed": [...], "staging": [...], "kept": [...]}`` paths.
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
            for rank, summary in enumerate(newest_first):
                if rank < keep or summary.version_id in protected:
                    report["kept"].append(summary.path)
                    continue
                report["removed"].append(summary.path)
                if not dry_run:
                    _remove_version(Path(summary.path))
            report["staging"] += [str(p) for p in remove_stale_staging(dataset_dir, dry_run=dry_run)]
    return report


def _remove_version(version: Path) -> None:
    # Renamed out of the listing first, so a partial removal is never seen as a version.
    doomed = version.with_name(f"{STAGING_PREFIX}gc-{version.name}")
    version.rename(doomed)
    shutil.rmtree(doomed)


# -- rows: diff and lineage -----------------------------------------------------------------
def _row_files(version: Path, manifest: dict[str, Any]) -> list[tuple[str, Path]]:
    """(split, file) of each shard's row table: the shard itself or its lineage file."""
    folder = "data" if manifest["format"] == "parquet" else "lineage"
    return [(s["split"], version / folder / f"{s['shard']}.parquet") for s in manifest["shards"]]


def _real_sources(version: Path, manifest: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """source_id -> (source_sha256, split) of the version's real rows."""
    found = {}
    for split, path in _row_files(version, manifest):
        table = pq.read_table(path, columns=["source_id", "source_sha256"], filters=[("origin", "=", "real")])
        ids, shas = table["source_id"].to_pylist(), table["source_sha256"].to_pylist()
        found.update({source_id: (sha, split) for source_id, sha in zip(ids, shas, strict=True)})
    return found


def diff_versions(a: Path, b: Path) -> dict[str, Any]:
    """What changed from version ``a`` to ``b``: source images, row counts, config, libraries
    and the devices synthesis ran on."""
    a, b = resolve_version(a), resolve_version(b)
    ma, mb = read_manifest(a), read_manifest(b)
    source: dict[str, Any] = {
        "fingerprint": [ma["source"]["fingerprint"], mb["source"]["fingerprint"]],
        "changed": ma["source"]["fingerprint"] != mb["source"]["fingerprint"],
    }
    if source["changed"]:
        ra, rb = _real_sources(a, ma), _real_sources(b, mb)
        source["added"] = sorted(set(rb) - set(ra))
        source["removed"] = sorted(set(ra) - set(rb))
        common = set(ra) & set(rb)
        source["edited"] = sorted(k for k in common if ra[k][0] != rb[k][0])
        source["moved_split"] = sorted(k for k in common if ra[k][0] == rb[k][0] and ra[k][1] != rb[k][1])
    return {
        "a": ma["version_id"],
        "b": mb["version_id"],
        "source": source,
        "counts": _count_changes(ma["splits"], mb["splits"]),
        "config": _changes(_flatten(ma["config"]), _flatten(mb["config"])),
        "libraries": _changes(ma.get("libraries", {}), mb.get("libraries", {})),
        "devices": _changes(*(m.get("synthesis", {}).get("devices", {}) for m in (ma, mb))),
    }


def _count_changes(sa: dict[str, Any], sb: dict[str, Any]) -> list[dict[str, Any]]:
    keys = set()
    for splits in (sa, sb):
        for split, info in splits.items():
            keys |= {(split, origin, name) for origin, by in info["by_origin_class"].items() for name in by}
    changes = []
    for split, origin, name in sorted(keys):
        na = sa.get(split, {}).get("by_origin_class", {}).get(origin, {}).get(name, 0)
        nb = sb.get(split, {}).get("by_origin_class", {}).get(origin, {}).get(name, 0)
        if na != nb:
            changes.append(
                {"split": split, "origin": origin, "class": name, "a": na, "b": nb, "delta": nb - na}
            )
    return changes


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _find_row(version: Path, manifest: dict[str, Any], row_id: str) -> tuple[str, Path, dict[str, Any]]:
    for split, path in _row_files(version, manifest):
        columns = [c for c in pq.read_schema(path).names if c != "image"]
        table = pq.read_table(path, columns=columns, filters=[("id", "=", row_id)])
        if table.num_rows:
            return split, path, table.to_pylist()[0]
    raise PipelineError(f"{version}: no row with id {row_id!r}")


def lineage(version: Path, row_id: str) -> dict[str, Any]:
    """Where one row came from: its columns, source image, transform or generator, run.

    Raises:
        PipelineError: no row has that id.
    """
    version = resolve_version(version)
    manifest = read_manifest(version)
    split, path, row = _find_row(version, manifest, row_id)
    params = json.loads(row["params"]) if row["params"] else None
    source = manifest["source"]
    result: dict[str, Any] = {
        "version_id": manifest["version_id"],
        "split": split,
        "file": path.relative_to(version).as_posix(),
        "row": {**row, "params": params, "class_name": manifest["class_names"][row["label"]]},
        "source": {k: source.get(k) for k in ("kind", "path", "fingerprint")},
        "run": manifest.get("run"),
    }
    if row["origin"] == "real":
        result["made_by"] = {"step": "copied from the source image", "source_id": row["source_id"]}
    elif row["origin"] == "augmented":
        result["made_by"] = {
            "step": "albumentations recipe applied to the source image",
            "source_id": row["source_id"],
            "recipe": manifest["config"]["augment"]["transforms"],
            "seed": row["seed"],
            "applied": params,
        }
    else:
        result["made_by"] = {
            "step": "class-conditional GAN sample",
            "checkpoint_sha256": (params or {}).get("checkpoint_sha256"),
            "latent_seed": row["seed"],
            "filter_scores": {k: (params or {}).get(k) for k in ("confidence", "d_score")},
        }
    return result
