import errno
import os
from concurrent.futures import CancelledError
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest

from pipeline.build import build, load_config
from pipeline.build.context import dataset_dir, discard, prepare
from pipeline.core.errors import PipelineError, SourceError
from pipeline.ingest.space import DiskFullError, SpaceEstimate, most_rows, raise_if_full, worth_retrying
from pipeline.version.catalog import dataset_lock
from pipeline.version.manifest import load_manifest

COUNTS = {"train": {"cat": 10, "dog": 4}, "test": {"cat": 3, "dog": 2}}


def _config(*overrides: str):
    return load_config(None, list(overrides))


@pytest.mark.parametrize(
    ("overrides", "rows"),
    [
        ([], 19),  # nothing augmented: the source images
        (["augment.copies_per_image=1.5"], 19 + 15 + 6),
        (["augment.target_per_class=8"], 19 + 0 + 4),
        (["augment.copies_per_image=1", "augment.classes={dog: {target_per_class: 10}}"], 19 + 10 + 6),
        # augment.tune may choose the largest of its copies: the most it can write
        (
            ["augment.copies_per_image=1", "augment.tune.enabled=true", "augment.tune.copies=[0.5, 3]"],
            19 + 42,
        ),
        (["synthesis.enabled=true", "synthesis.ratio=0.5"], 19 + 5 + 2),
        (["synthesis.enabled=true", "synthesis.per_class=7"], 19 + 14),
    ],
)
def test_most_rows_counts_what_the_config_can_add_to_the_training_split(overrides, rows):
    assert most_rows(_config(*overrides), COUNTS) == rows


def test_the_estimate_covers_what_a_build_writes(tiny_config, tmp_path):
    for layout in ("parquet", "imagefolder"):
        config = tiny_config(f"output.format={layout}", f"output.root={tmp_path / layout}")
        with dataset_lock(dataset_dir(config), purpose="test"):
            context = prepare(config)
            discard(context)
        version, _ = build(config)
        written = sum(f.stat().st_blocks * 512 for f in version.rglob("*") if f.is_file())
        rows = sum(s.rows for s in load_manifest(version).shards)
        assert context.space.rows == rows == 35  # 15 sources, 2 copies of each of the 10 training images
        assert context.space.free > 0 and not context.space.short
        assert written <= context.space.needed <= 4 * written + (1 << 20), layout  # 1 MB: metadata allowance


def test_a_full_disk_is_said_with_output_root_and_the_estimate(tmp_path):
    estimate = SpaceEstimate(rows=19_053, row_bytes=633, other_bytes=1_000_000, free=5_000_000)
    assert estimate.short and estimate.needed == 13_060_549
    full = OSError(errno.ENOSPC, "Error writing bytes to file")
    with pytest.raises(DiskFullError) as caught:
        raise_if_full(full, tmp_path / "out", estimate)
    assert caught.value.errno == errno.ENOSPC and caught.value.__cause__ is full
    assert str(caught.value) == (
        f"[Errno 28] No space left on device under output.root ({tmp_path / 'out'}): this version needs "
        "about 13.1 MB (19,053 rows of about 633 bytes, its pictures and metadata) and 5.0 MB was free after "
        "ingest; free some space, or point output.root at a disk with more"
    )
    quota = r"Disk quota exceeded under output.root .* [MG]B is free there now"
    with pytest.raises(DiskFullError, match=quota):  # the free space of the nearest folder
        raise_if_full(OSError(errno.EDQUOT, "quota"), tmp_path / "not" / "made")
    # anything else is left for the caller to re-raise, and an explained error is not explained twice
    for other in (OSError(errno.EIO, "Input/output error"), ValueError("x"), caught.value):
        assert raise_if_full(other, tmp_path, estimate) is None


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (OSError(errno.EIO, "Input/output error"), True),
        (OSError("connection reset"), True),
        (TimeoutError("timed out"), True),
        (RuntimeError("?"), True),
        (OSError(errno.ENOSPC, "No space left on device"), False),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), False),
        (OSError(errno.EROFS, "Read-only file system"), False),
        (PermissionError(errno.EACCES, "Permission denied"), False),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), False),  # staging removed
        (BrokenProcessPool("A process in the process pool was terminated abruptly"), False),
        (CancelledError(), False),  # a call the stopped pool dropped
        (SourceError("a.png: cannot identify image file"), False),
        (PipelineError("bad input"), False),
    ],
)
def test_only_errors_another_attempt_may_fix_are_worth_retrying(exc, retry):
    assert worth_retrying(exc) is retry
    try:  # the same, raised as the cause of a pipeline error (as an upload reports it)
        raise PipelineError("uploading v-1 to s3://bucket") from exc
    except PipelineError as wrapped:
        assert worth_retrying(wrapped) is (retry and isinstance(exc, OSError))


def test_the_sample_of_large_images_is_small(tmp_path, monkeypatch):
    """Encoding is the estimate's cost: 64 images of 32x32, at least 4 of a photo's size."""
    from pipeline.ingest import space

    class Pixels:
        def __init__(self):
            self.read = []

        def __getitem__(self, row):
            self.read.append(row)
            return np.zeros((8, 8), dtype="uint8")

    monkeypatch.setattr(space, "encode_image", lambda *args, **kwargs: b"x" * 100)
    for shape, count, sample in [((32, 32, 3), 10_000, 64), ((3000, 4000, 3), 10_000, 4), ((8, 8), 5, 5)]:
        pixels = Pixels()
        estimate = space.estimate_space(_config(), 10, pixels, shape, count, tmp_path)
        assert len(pixels.read) == sample and pixels.read[0] == 0 and pixels.read[-1] == count - 1
        assert estimate.row_bytes == 100 + space.ROW_OVERHEAD
        assert estimate.needed == 10 * estimate.row_bytes + 256 * 100 + (1 << 20)  # and the pictures


def test_an_image_folder_row_takes_whole_blocks(tmp_path, monkeypatch):
    from pipeline.ingest import space

    monkeypatch.setattr(space, "encode_image", lambda *args, **kwargs: b"x" * 100)
    pixels = {0: None}
    config = _config("output.format=imagefolder")
    block = os.statvfs(tmp_path).f_frsize
    estimate = space.estimate_space(config, 3, pixels, (8, 8), 1, tmp_path)
    assert estimate.row_bytes == block + space.ROW_OVERHEAD + space.FILE_ENTRY


def test_a_source_whose_pixels_cannot_be_staged_is_refused_at_its_first_image(tiny_config, monkeypatch):
    from pipeline.ingest import space
    from pipeline.ingest.space import check_staging_room

    monkeypatch.setattr(space, "_free", lambda where: 5_000_000)
    with pytest.raises(PipelineError) as caught:
        check_staging_room(7, (1200, 1600, 3), where=Path("/x/.incomplete-1/work"), root=Path("/x"))
    assert str(caught.value) == (
        "staging 7 images of 1600x1200x3 takes 40.3 MB under output.root (/x) and 5.0 MB is free: "
        "set source.resize to stage them smaller, or free some space"
    )
    check_staging_room(7, (28, 28), where=Path("/x"), root=Path("/x"))  # 5.5 KB: room enough
    monkeypatch.setattr(space, "_free", lambda where: 100)  # 15 images of 8x8 RGB: 2,880 bytes
    config = tiny_config()
    with pytest.raises(PipelineError, match=r"staging 15 images of 8x8x3 takes 0.0 MB under output.root"):
        build(config)
    assert not list(dataset_dir(config).glob(".incomplete-*"))


def test_most_copies_is_the_class_count_or_the_largest_tune_may_choose():
    from pipeline.ingest.space import most_copies

    assert most_copies(_config("augment.copies_per_image=1.5"), "cat", 10) == 15
    assert most_copies(_config("augment.target_per_class=8"), "dog", 4) == 4
    assert most_copies(_config("augment.target_per_class=8"), "dog", 9) == 0
    tuned = _config("augment.copies_per_image=1", "augment.tune.enabled=true", "augment.tune.copies=[0.5, 3]")
    assert most_copies(tuned, "cat", 10) == 30
    per_class = _config("augment.copies_per_image=1", "augment.classes={dog: {copies_per_image: 2}}")
    assert most_copies(per_class, "dog", 4) == 8 and most_copies(per_class, "cat", 4) == 4
