"""A folder of images per class, optionally under split folders.

Two layouts are recognised:

* ``root/<class>/<image>`` — no splits; a test split is carved later.
* ``root/<split>/<class>/<image>`` — when every top-level folder is a split name
  (train, test, validation, val, valid, dev).

Images in folders below a class folder belong to that class, as torchvision's
``ImageFolder`` finds them (``cat/indoor/1.png`` is a cat). Images beside the class folders
belong to none: they are left out and listed. Hidden files and folders and files without
an image extension are ignored (and counted).
Symbolic links that lead outside the root are left out and listed, so a source never pulls
in files from elsewhere, unless ``source.follow_symlinks`` says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.errors import SourceError
from pipeline.core.images import dataset_mode, header_modes
from pipeline.core.workers import Calls, run_all
from pipeline.sources.base import Encoded, Sample, SourceReader, check_class_names, split_name

_HEADER_CHUNK = 1024
# The raster formats Pillow reads (AVIF since Pillow 11.3); others (HEIC, RAW, vector
# formats) are counted as ignored files.
IMAGE_EXTENSIONS = {
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".webp", ".avif",
    ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".qoi", ".jp2", ".j2k", ".pcx",
}  # fmt: skip


def open_imagefolder(
    root: Path, workers: int = 1, *, skip_bad: bool = False, follow_symlinks: bool = False
) -> SourceReader:
    """Index ``root`` (file names and image headers only; pixels are decoded lazily).

    The headers are read on ``workers`` processes. Links leading outside ``root`` are left
    out (listed as skipped) unless ``follow_symlinks``.

    Raises:
        SourceError: no class folders, no images, an empty class folder or an unreadable
            image header (the last two only without ``skip_bad``, which skips them).
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root}: not a directory")
    scan = _Scan(root, follow_symlinks, skip_bad)
    top = scan.dirs(root)
    splits = [split_name(d.name) for d in top]
    if top and all(splits):
        groups = [(split, d) for split, d in zip(splits, top, strict=True)]
    elif any(splits):
        # Read as classes, split folders would take the classes below them as one class.
        named = [d.name for d, split in zip(top, splits, strict=True) if split]
        others = [d.name for d, split in zip(top, splits, strict=True) if not split]
        raise SourceError(
            f"{root}: the folders {', '.join(named)} are split names but {', '.join(others)} "
            f"{'is' if len(others) == 1 else 'are'} not: use <split>/<class>/<image> or "
            "<class>/<image> (move the other folders out)"
        )
    else:
        groups = [(None, root)]

    listing = _Listing()
    scan.strays(root)
    for split, group in groups:
        if group != root:
            scan.strays(group)
        for class_dir in top if group == root else scan.dirs(group):  # the root is listed once
            prefix = class_dir.relative_to(root).as_posix()
            listing.add(class_dir.name, split, [f"{prefix}/{name}" for name in scan.images(class_dir)])
    for name in listing.empty_classes():
        if not skip_bad:
            raise SourceError(
                f"{root}: class folder '{name}' has no images (remove it, or set source.on_bad_image: skip)"
            )
        scan.skipped.append({"source_id": f"{name}/", "reason": "empty class folder: not a class"})
    class_names = check_class_names(listing.classes(), str(root))
    ids, labels, splits = listing.rows(class_names)
    if not len(ids):
        raise SourceError(f"{root}: no images found (expected <class>/<image> folders)")
    chunks = Calls(
        math.ceil(len(ids) / _HEADER_CHUNK),
        lambda k: (str(root), ids.slice(k * _HEADER_CHUNK, _HEADER_CHUNK).to_pylist(), skip_bad),
    )
    modes = set().union(*run_all(header_modes_under, chunks, workers))
    if not modes:
        raise SourceError(f"{root}: none of the {len(ids)} image files is readable")
    mode = dataset_mode(modes)

    def samples() -> Iterator[Sample]:
        for start in range(0, len(ids), _HEADER_CHUNK):
            stop = start + _HEADER_CHUNK
            rows = zip(
                ids.slice(start, _HEADER_CHUNK).to_pylist(),
                labels[start:stop].tolist(),
                splits[start:stop].tolist(),
                strict=True,
            )
            for source_id, label, split in rows:
                path = os.path.join(root, source_id)
                yield Sample(source_id, label, SPLITS[split], Encoded(path, path))

    return SourceReader(
        class_names=class_names,
        mode=mode,
        samples=samples,
        count=len(ids),
        skipped=scan.skipped,
        ignored=scan.ignored,
    )


def header_modes_under(root: str, source_ids: list[str], skip_bad: bool) -> set[str]:
    """:func:`pipeline.core.images.header_modes` of the images ``root/<source id>``."""
    return header_modes([os.path.join(root, source_id) for source_id in source_ids], skip_bad)


SPLITS = (None, "train", "validation", "test")  # a listed image's split, by code


class _Listing:
    """Image files found per class folder, as Arrow arrays of relative paths (as Python
    strings, a large folder's names would cost more than its index)."""

    def __init__(self) -> None:
        self._found: dict[str, list[tuple[pa.Array, int]]] = {}

    def add(self, class_name: str, split: str | None, source_ids: list[str]) -> None:
        parts = self._found.setdefault(class_name, [])
        parts.append((pa.array(source_ids, pa.string()), SPLITS.index(split)))

    def empty_classes(self) -> list[str]:
        """Class folders without images, sorted; they are dropped from the listing."""
        empty = sorted(name for name, parts in self._found.items() if not any(len(ids) for ids, _ in parts))
        for name in empty:
            del self._found[name]
        return empty

    def classes(self) -> list[str]:
        return sorted(self._found)

    def rows(self, class_names: list[str]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """Every image's id, label and split code, sorted by id (a relative path: unique)."""
        parts = [
            (part, label, split)
            for label, name in enumerate(class_names)
            for part, split in self._found[name]
        ]
        sizes = [len(part) for part, _, _ in parts]
        ids = pa.concat_arrays([pa.array([], pa.string())] + [part for part, _, _ in parts])
        labels = np.repeat(np.array([label for _, label, _ in parts], np.int64), sizes)
        splits = np.repeat(np.array([split for _, _, split in parts], np.int8), sizes)
        order = pc.sort_indices(ids).to_numpy()
        return ids.take(order), labels[order], splits[order]


class _Scan:
    """Lists folders and image files, counting what it leaves out."""

    def __init__(self, root: Path, follow_symlinks: bool, skip_bad: bool = False):
        self.root = root
        self.skip_bad = skip_bad
        self.resolved_root = root.resolve()
        self.follow_symlinks = follow_symlinks
        self.skipped: list[dict[str, str]] = []
        self.ignored = 0

    def dirs(self, folder: Path) -> list[Path]:
        with os.scandir(folder) as entries:
            return sorted(
                Path(e.path)
                for e in entries
                if not e.name.startswith(".") and e.is_dir() and self._inside(e) and self._utf8(e)
            )

    def images(self, folder: Path, within: frozenset[str] = frozenset()) -> list[str]:
        """Paths, relative to ``folder``, of the images in it and in the folders below it,
        sorted. ``within``: the real paths of the folders being listed above it, so a link
        back to one of them is not followed round."""
        within = within | {os.path.realpath(folder)}
        kept = []
        with os.scandir(folder) as entries:
            for e in entries:
                if e.is_dir():
                    if e.name.startswith(".") or not (self._inside(e) and self._utf8(e)):
                        continue
                    if e.is_symlink() and os.path.realpath(e.path) in within:
                        self._skip(e, "link to a folder above it")
                        continue
                    kept += [f"{e.name}/{name}" for name in self.images(Path(e.path), within)]
                    continue
                if not _is_image(e.name) or not e.is_file():
                    self.ignored += e.is_file()
                elif self._inside(e) and self._utf8(e):
                    kept.append(e.name)
        return sorted(kept)

    def strays(self, folder: Path) -> None:
        """List the images directly in ``folder`` (beside its class or split folders) as left
        out, and count its other files as ignored."""
        with os.scandir(folder) as entries:
            for e in entries:
                if not e.is_file():
                    continue
                if _is_image(e.name):
                    self._skip(e, "image outside a class folder")
                else:
                    self.ignored += 1

    def _skip(self, entry: os.DirEntry, reason: str) -> None:
        source_id = Path(entry.path).relative_to(self.root).as_posix()
        self.skipped.append({"source_id": source_id, "reason": reason})

    def _utf8(self, entry: os.DirEntry) -> bool:
        """Whether the entry's name is UTF-8 (ids and class names are UTF-8 strings). Without
        ``skip_bad`` another name stops the run; with it, the entry is skipped and listed."""
        try:
            entry.name.encode("utf-8")
            return True
        except UnicodeEncodeError:
            relative = Path(entry.path).relative_to(self.root).as_posix()
            shown = os.fsencode(relative).decode("utf-8", "replace")
            kind = "folder" if entry.is_dir() else "file"
            if not self.skip_bad:
                fix = "rename it, or set source.on_bad_image: skip"
                raise SourceError(f"{self.root}/{shown}: {kind} name is not UTF-8 ({fix})") from None
            self.skipped.append({"source_id": shown, "reason": f"{kind} name is not UTF-8"})
            return False

    def _inside(self, entry: os.DirEntry) -> bool:
        # Entries of a folder already inside the root are inside too, unless they are links.
        if self.follow_symlinks or not entry.is_symlink():
            return True
        if Path(entry.path).resolve().is_relative_to(self.resolved_root):
            return True
        self._skip(entry, "symbolic link leading outside source.path")
        return False


def _is_image(name: str) -> bool:
    """Whether a file named ``name`` is read as an image: not hidden, an image extension."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
