"""File hashing shared by writers, manifests and checkpoints."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    with Path(path).open("rb") as handle:
        return stream_sha256(handle)


def stream_sha256(handle: IO[bytes]) -> str:
    """sha256 of what is left to read of a binary file object, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()
