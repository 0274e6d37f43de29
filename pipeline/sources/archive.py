"""A source given as an archive (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``,
``.tar.xz``): extracted into a folder, which the source's reader then reads.

Only regular files and folders are extracted, and only under the target folder: a member
with an absolute path, a ``..`` part or a link is refused, naming the archive and the
member. macOS's ``__MACOSX/`` resource forks are left out. An archive whose members all
sit under one top-level folder gives that folder, so ``x.tar.gz`` holding ``x/<class>/...``
reads as the folder ``x`` would (a split folder stays: ``train/<class>/...`` is train).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from pipeline.config import ARCHIVE_SUFFIXES
from pipeline.core.errors import SourceError
from pipeline.sources.base import split_name

_SKIPPED_TOP = "__MACOSX"


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a file named as an archive this module extracts (a lone ``.gz``,
    such as an IDX file, is not one)."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


@contextmanager
def extracted(path: Path | None, scratch: Path | None = None) -> Iterator[Path | None]:
    """``path`` itself, or for an archive the folder it is extracted into: a temporary
    folder (under ``scratch`` when given), removed on exit.

    Raises:
        SourceError: the archive cannot be read, or a member is unsafe to extract.
    """
    if path is None or not is_archive(Path(path)):
        yield path
        return
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix="source-", dir=scratch))
    try:
        extract(Path(path), target)
        yield _single_folder(target)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def extract(archive: Path, target: Path) -> None:
    """Extract ``archive``'s regular files into ``target``.

    Raises:
        SourceError: unreadable, or a member that is a link or would land outside ``target``.
    """
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                for info in zipped.infolist():
                    if not info.is_dir():
                        with zipped.open(info) as member:
                            _write(archive, info.filename, info.file_size, member, target)
        else:
            with tarfile.open(archive) as tar:
                for info in tar:
                    if info.issym() or info.islnk():
                        raise SourceError(
                            f"{archive}: member {info.name!r} is a link; links are not extracted"
                        )
                    if info.isfile():
                        member = tar.extractfile(info)
                        if member is not None:
                            _write(archive, info.name, info.size, member, target)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{archive}: cannot read the archive: {exc}") from None


def _write(archive: Path, name: str, size: int, member: IO[bytes], target: Path) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or parts[0] == _SKIPPED_TOP:
        return
    if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise SourceError(f"{archive}: member {name!r} would be extracted outside its folder")
    # A member's declared size against the free space: an archive that unpacks to more than
    # the disk holds (a zip bomb, say) stops before it fills it.
    if size > shutil.disk_usage(target).free:
        raise SourceError(f"{archive}: member {name!r} ({size:,} bytes) does not fit on the disk of {target}")
    destination = target.joinpath(*parts)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("wb") as out:
        shutil.copyfileobj(member, out)


def _single_folder(target: Path) -> Path:
    """The one folder ``target`` holds, when it holds nothing else and is not named as a
    split (``train/<class>/...`` keeps its split); else ``target``."""
    entries = list(target.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and split_name(entries[0].name) is None:
        return entries[0]
    return target
