"""The manifest: what a version contains, how it was made, and every file's hash.

``manifest.json`` is written last into a version; its presence marks the version complete.
Keys are sorted, and ``schema_version`` says how to read it.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pipeline

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
# Libraries whose versions can change the bytes of a version: they enter its id.
CONTENT_LIBRARIES = (
    "torch",
    "albumentations",
    "albucore",
    "opencv-python-headless",
    "numpy",
    "pillow",
    "pyarrow",
)
# Recorded for the record only.
OTHER_LIBRARIES = ("torchvision", "prefect", "pydantic", "scikit-learn")


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


def run_info(started: str) -> dict[str, Any]:
    """Who made the version, where and when (``started``: ISO time)."""
    return {
        "started": started,
        "finished": utcnow().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "code_version": pipeline.__version__,
    }


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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


def write_manifest(version_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` (sorted keys) and return its path."""
    path = version_dir / MANIFEST_FILE
    text = json.dumps({"schema_version": SCHEMA_VERSION, **manifest}, sort_keys=True, indent=2)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def read_manifest(version_dir: Path) -> dict[str, Any]:
    """Load a version's manifest."""
    return json.loads((Path(version_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))
