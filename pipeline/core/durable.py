"""Writes that survive a power loss: a file's bytes reach the disk before a rename makes
them visible, and the rename itself is made durable by syncing its folder."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make the entries of ``folder`` (a rename into it, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably: a temporary file beside it,
    fsync, rename over ``path``, fsync the folder. A crash leaves the old file or the new
    one, never an empty or partial one."""
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    fsync_dir(path.parent)


def sync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to the disk (before a rename publishes
    them): one ``sync`` of the file systems, then each folder's entries."""
    os.sync()
    for folder in sorted({p.parent for p in root.rglob("*")} | {root}):
        fsync_dir(folder)
