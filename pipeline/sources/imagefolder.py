"""A folder of images per class, optionally under split folders.

Two layouts are recognised:

* ``root/<class>/<image>`` — no splits; a test split is carved later.
* ``root/<split>/<class>/<image>`` — when every top-level folder is a split name
  (train, test, validation, val, valid, dev).

Hidden files and folders and files without an image extension are ignored. Symlinks that
point outside the root are ignored too, so a source can never pull in files from elsewhere.
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


def open_imagefolder(root: Path, workers: int = 1) -> SourceReader:
    """Index ``root`` (file names and image headers only; pixels are decoded lazily).

    The headers are read on ``workers`` processes.

    Raises:
        SourceError: no class folders, no images, or an unreadable image header.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root}: not a directory")
    resolved_root = root.resolve()
    top = _visible_dirs(root, resolved_root)
    splits = [split_name(d.name) for d in top]
    if top and all(splits):
        groups = [(split, d) for split, d in zip(splits, top, strict=True)]
    else:
        groups = [(None, root)]

    class_names = sorted({c.name for _, group in groups for c in _visible_dirs(group, resolved_root)})
    check_class_names(class_names, str(root))
    label_of = {name: index for index, name in enumerate(class_names)}

    files: list[tuple[str, int, str | None, Path]] = []
    for split, group in groups:
        for class_dir in _visible_dirs(group, resolved_root):
            for path in _image_files(class_dir, resolved_root):
                source_id = path.relative_to(root).as_posix()
                files.append((source_id, label_of[class_dir.name], split, path))
    if not files:
        raise SourceError(f"{root}: no images found (expected <class>/<image> folders)")
    files.sort(key=lambda item: item[0])
    paths = [path for _, _, _, path in files]
    chunks = [(paths[i : i + _HEADER_CHUNK],) for i in range(0, len(paths), _HEADER_CHUNK)]
    mode = dataset_mode(set().union(*run_all(header_modes, chunks, workers)))

    def samples() -> Iterator[Sample]:
        for source_id, label, split, path in files:
            yield Sample(source_id, label, split, Encoded(path, str(path)))

    return SourceReader(class_names=class_names, mode=mode, samples=samples)


def _inside(entry: os.DirEntry, resolved_root: Path) -> bool:
    # Entries of a folder already inside the root are inside too, unless they are links.
    return not entry.is_symlink() or Path(entry.path).resolve().is_relative_to(resolved_root)


def _visible_dirs(folder: Path, resolved_root: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(
            Path(e.path)
            for e in entries
            if not e.name.startswith(".") and e.is_dir() and _inside(e, resolved_root)
        )


def _image_files(folder: Path, resolved_root: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(
            Path(e.path)
            for e in entries
            if not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
            and e.is_file()
            and _inside(e, resolved_root)
        )
