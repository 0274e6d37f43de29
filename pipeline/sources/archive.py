"""A source given as an archive (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``,
``.tar.xz``): extracted into a folder, which the source's reader then reads.

Only regular files and folders are extracted, and only under the target folder: a member
with an absolute path, a ``..`` part or a link is refused, naming the archive and the
member. macOS's ``__MACOSX/`` resource forks are left out. An archive bomb stops before
it fills the disk: the members' sizes together must fit in the space free when
extraction starts, there may be at most :data:`MAX_MEMBERS` of them, and they may unpack to
at most :data:`MAX_RATIO` times the archive's size; each member is copied up to its
declared size only. An archive whose members all
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
MAX_MEMBERS = 1_000_000  # files in one archive
MAX_RATIO = 100  # bytes unpacked per byte of archive: images hardly compress, bombs do


class _Budget:
    """What an archive's members may take together: the disk's free space when extraction
    starts, :data:`MAX_MEMBERS` files and :data:`MAX_RATIO` times the archive's size."""

    def __init__(self, archive: Path, target: Path):
        self.archive, self.target = archive, target
        self.free = shutil.disk_usage(target).free
        self.ratio_bytes = MAX_RATIO * max(archive.stat().st_size, 1)
        self.members = self.bytes = 0

    def admit(self, name: str, size: int) -> None:
        """Count one member of ``size`` bytes.

        Raises:
            SourceError: a cap is passed (names the archive, the member and the cap).
        """
        self.members += 1
        self.bytes += size
        where = f"{self.archive}: member {name!r}"
        if self.members > MAX_MEMBERS:
            raise SourceError(f"{where}: the archive holds more than {MAX_MEMBERS:,} files")
        if self.bytes > self.free:
            raise SourceError(
                f"{where} ({size:,} bytes) does not fit on the disk of {self.target}: the members "
                f"so far come to {self.bytes:,} bytes, {self.free:,} were free"
            )
        if self.bytes > self.ratio_bytes:
            raise SourceError(
                f"{where}: the members so far unpack to {self.bytes:,} bytes, more than {MAX_RATIO} "
                "times the archive's size: refused as an archive bomb"
            )


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
        target.mkdir(parents=True, exist_ok=True)
        budget = _Budget(archive, target)
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                for info in zipped.infolist():
                    if not info.is_dir():
                        with zipped.open(info) as member:
                            _write(archive, info.filename, info.file_size, member, target, budget)
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
                            _write(archive, info.name, info.size, member, target, budget)
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{archive}: cannot read the archive: {exc}") from None


def _write(archive: Path, name: str, size: int, member: IO[bytes], target: Path, budget: _Budget) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or parts[0] == _SKIPPED_TOP:
        return
    if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise SourceError(f"{archive}: member {name!r} would be extracted outside its folder")
    budget.admit(name, size)  # declared sizes, before a byte is written
    destination = target.joinpath(*parts)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with destination.open("wb") as out:
        copied = 0
        for block in iter(lambda: member.read(1 << 20), b""):
            copied += len(block)
            if copied > size:  # a member larger than it declared is not copied on
                raise SourceError(
                    f"{archive}: member {name!r} holds more than the {size:,} bytes it declares"
                )
            out.write(block)


def _single_folder(target: Path) -> Path:
    """The one folder ``target`` holds, when it holds nothing else and is not named as a
    split (``train/<class>/...`` keeps its split); else ``target``."""
    entries = list(target.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and split_name(entries[0].name) is None:
        return entries[0]
    return target
