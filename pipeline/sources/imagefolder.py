"""A folder of images per class, optionally under split folders.

Two layouts are recognised:

* ``root/<class>/<image>`` — no splits; a test split is carved later.
* ``root/<split>/<class>/<image>`` — when every top-level folder is a split name
  (train, test, validation, val, valid, dev).

Hidden files and folders and files without an image extension are ignored (and counted).
Symbolic links that lead outside the root are left out and listed, so a source never pulls
in files from elsewhere, unless ``source.follow_symlinks`` says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import SourceError
from pipeline.images import dataset_mode, header_modes
from pipeline.sources.base import Encoded, Sample, SourceReader, check_class_names, split_name
from pipeline.workers import run_all

_HEADER_CHUNK = 1024
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


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
    scan = _Scan(root, follow_symlinks)
    top = scan.dirs(root)
    splits = [split_name(d.name) for d in top]
    if top and all(splits):
        groups = [(split, d) for split, d in zip(splits, top, strict=True)]
    else:
        groups = [(None, root)]

    # Relative paths only (strings): one Path object per file would cost more than the image.
    found: dict[str, list[tuple[str, str | None]]] = {}
    for split, group in groups:
        for class_dir in scan.dirs(group):
            images = found.setdefault(class_dir.name, [])
            prefix = class_dir.relative_to(root).as_posix()
            images.extend((f"{prefix}/{name}", split) for name in scan.images(class_dir))
    for name in sorted(n for n, images in found.items() if not images):
        if not skip_bad:
            raise SourceError(
                f"{root}: class folder '{name}' has no images (remove it, or set source.on_bad_image: skip)"
            )
        scan.skipped.append({"source_id": f"{name}/", "reason": "empty class folder: not a class"})
        del found[name]
    class_names = check_class_names(sorted(found), str(root))
    files = sorted(
        (source_id, label, split)
        for label, name in enumerate(class_names)
        for source_id, split in found.pop(name)
    )
    if not files:
        raise SourceError(f"{root}: no images found (expected <class>/<image> folders)")
    chunks = [
        ([os.path.join(root, source_id) for source_id, _, _ in files[i : i + _HEADER_CHUNK]], skip_bad)
        for i in range(0, len(files), _HEADER_CHUNK)
    ]
    modes = set().union(*run_all(header_modes, chunks, workers))
    if not modes:
        raise SourceError(f"{root}: none of the {len(files)} image files is readable")
    mode = dataset_mode(modes)

    def samples() -> Iterator[Sample]:
        for source_id, label, split in files:
            path = os.path.join(root, source_id)
            yield Sample(source_id, label, split, Encoded(path, path))

    return SourceReader(
        class_names=class_names,
        mode=mode,
        samples=samples,
        count=len(files),
        skipped=scan.skipped,
        ignored=scan.ignored,
    )


class _Scan:
    """Lists folders and image files, counting what it leaves out."""

    def __init__(self, root: Path, follow_symlinks: bool):
        self.root = root
        self.resolved_root = root.resolve()
        self.follow_symlinks = follow_symlinks
        self.skipped: list[dict[str, str]] = []
        self.ignored = 0

    def dirs(self, folder: Path) -> list[Path]:
        with os.scandir(folder) as entries:
            return sorted(
                Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir() and self._inside(e)
            )

    def images(self, folder: Path) -> list[str]:
        """File names of the images in ``folder``, sorted."""
        kept = []
        with os.scandir(folder) as entries:
            for e in entries:
                image = os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                if e.name.startswith(".") or not image or not e.is_file():
                    self.ignored += e.is_file()
                elif self._inside(e):
                    kept.append(e.name)
        return sorted(kept)

    def _inside(self, entry: os.DirEntry) -> bool:
        # Entries of a folder already inside the root are inside too, unless they are links.
        if self.follow_symlinks or not entry.is_symlink():
            return True
        if Path(entry.path).resolve().is_relative_to(self.resolved_root):
            return True
        source_id = Path(entry.path).relative_to(self.root).as_posix()
        self.skipped.append({"source_id": source_id, "reason": "symbolic link leading outside source.path"})
        return False
