from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import config_for, jpeg_bytes, make_imagefolder, make_parquet, png_bytes, random_image
from pipeline.build import build, load_config
from pipeline.core.errors import ConfigError, SourceError
from pipeline.ingest.stage import ingest
from pipeline.ingest.store import EXCLUDED
from pipeline.version.manifest import load_manifest


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (no pixel data follows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


BAD_FILES = {
    "zero-byte.png": b"",
    "text.png": b"this is not an image\n",
    "truncated.png": png_bytes(random_image(np.random.default_rng(1)))[:40],
    "truncated.jpg": jpeg_bytes(random_image(np.random.default_rng(2), size=(64, 64)))[:300],
    "bomb.png": png_with_size(20000, 20000),
    "cut-header.png": b"P1",  # a PPM signature and nothing after it (found by the fuzzer)
}


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    root = make_imagefolder(tmp_path / "src", {"cat": 5, "dog": 5})
    for name, data in BAD_FILES.items():
        (root / "dog" / name).write_bytes(data)
    return root


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_image_stops_the_run_naming_it(tmp_path, name):
    root = make_imagefolder(tmp_path / "src", {"cat": 3, "dog": 3})
    (root / "dog" / name).write_bytes(BAD_FILES[name])
    with pytest.raises(SourceError, match=name):
        ingest(config_for(root, tmp_path), tmp_path / "work")


def test_skip_quarantines_bad_images_and_keeps_every_good_one(messy_folder, tmp_path):
    version, _ = build(config_for(messy_folder, tmp_path, "source.on_bad_image=skip"))
    manifest = load_manifest(version)
    skipped = {Path(s.source_id).name: s for s in manifest.source.skipped}
    assert set(skipped) == set(BAD_FILES)
    assert all(s.reason for s in skipped.values())
    assert "decompression bomb" in skipped["bomb.png"].reason.lower()
    readable = {n for n, data in BAD_FILES.items() if data}
    assert all((skipped[n].sha256 is not None) == (n in readable or n == "zero-byte.png") for n in skipped)
    real = sum(c for split in manifest.splits.values() for c in [split.by_origin.get("real", 0)])
    assert real == 10


def test_other_sizes_stop_the_run_or_are_skipped(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"cat": 3, "dog": 3})
    random_image(np.random.default_rng(5), size=(9, 8)).save(root / "dog" / "wide.png")
    with pytest.raises(SourceError, match=r"dog/wide.png: image size 9x8x3 differs from 8x8x3"):
        ingest(config_for(root, tmp_path), tmp_path / "w1")
    staged = ingest(config_for(root, tmp_path, "source.on_bad_image=skip"), tmp_path / "w2")
    assert [s["source_id"] for s in staged.skipped] == ["dog/wide.png"]
    assert len(staged.index.source_ids) == 6


def test_source_resize_stages_images_of_any_size_at_one_size(tmp_path):
    """With source.resize every image is staged at that size, a large JPEG included (decoded
    at a reduced scale), and the preview shows the images as staged."""
    from pipeline.augment.preview import preview
    from pipeline.ingest.store import PixelStore

    root = make_imagefolder(tmp_path / "src", {"cat": 3, "dog": 3})
    random_image(np.random.default_rng(5), size=(9, 8)).save(root / "dog" / "wide.png")
    random_image(np.random.default_rng(6), size=(640, 480)).save(root / "cat" / "photo.jpg", quality=90)
    for fit in ("crop", "pad", "stretch"):
        config = config_for(root, tmp_path, "source.resize=[6, 10]", f"source.resize_mode={fit}")
        staged = ingest(config, tmp_path / fit)
        assert staged.shape == (6, 10, 3) and len(staged.index.source_ids) == 8 and not staged.skipped
        with PixelStore(staged.pixels_path, staged.shape) as pixels:
            assert pixels[7].shape == (6, 10, 3)
    assert config.content_dict()["source"]["resize"] == [6, 10]
    assert "resize" not in load_config(None).content_dict()["source"]  # ids made before it stay
    out = preview(config, 2, tmp_path / "preview.png")
    assert Image.open(out).size[1] > 0


@pytest.mark.parametrize("value", ["[0, 32]", "[32, 5000]", "[32]"])
def test_resize_out_of_range_names_the_key(value):
    with pytest.raises(ConfigError, match="source.resize"):
        load_config(None, [f"source.resize={value}"])


def test_duplicates_are_reported_and_optionally_dropped(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"cat": 4, "dog": 4})
    (root / "dog" / "copy.png").write_bytes((root / "cat" / "img_001.png").read_bytes())
    kept = ingest(config_for(root, tmp_path), tmp_path / "w1")
    assert kept.duplicates == [["cat/img_001.png", "dog/copy.png"]]
    ids = kept.index.source_ids.to_pylist()
    assert all(kept.index.split_of(row) != EXCLUDED for row, i in enumerate(ids) if "img" in i)
    dropped = ingest(config_for(root, tmp_path, "source.duplicates=drop"), tmp_path / "w2")
    copy = dropped.index.source_ids.to_pylist().index("dog/copy.png")
    assert dropped.skipped == [
        {
            "source_id": "dog/copy.png",
            "reason": "duplicate of cat/img_001.png",
            "sha256": dropped.index.sha256[copy].as_py().hex(),
        }
    ]
    assert dropped.index.split_of(copy) == EXCLUDED


@pytest.mark.parametrize("kind", ["imagefolder", "parquet"])
def test_ingest_on_worker_processes_matches_one_process(tmp_path, monkeypatch, kind):
    from pipeline.build import load_config
    from pipeline.ingest import stage as ingest_module
    from pipeline.ingest.stage import ingest
    from pipeline.ingest.store import PIXELS_FILE, PixelStore
    from pipeline.sources import imagefolder

    if kind == "imagefolder":
        path = make_imagefolder(tmp_path / "src", {"a": 9, "b": 8}, mode="L")
        Image.new("RGB", (8, 8), (9, 200, 30)).save(path / "b" / "img_001.png")  # makes the dataset RGB
    else:
        path = make_parquet(tmp_path / "src" / "train.parquet", [k % 3 for k in range(17)])
    # Small chunks, so that 17 images make several calls for the workers.
    monkeypatch.setattr(ingest_module, "_CHUNK_ROWS", 2)
    monkeypatch.setattr(imagefolder, "_HEADER_CHUNK", 3)
    config = load_config(None, [f"source.kind={kind}", f"source.path={path}"])
    one = ingest(config, tmp_path / "one", workers=1)
    two = ingest(config, tmp_path / "two", workers=2)
    assert one.fingerprint == two.fingerprint and one.mode == two.mode == "RGB"
    assert one.index.sha256.equals(two.index.sha256) and one.index.source_ids.equals(two.index.source_ids)
    with (
        PixelStore(tmp_path / "one" / PIXELS_FILE, one.shape) as a,
        PixelStore(tmp_path / "two" / PIXELS_FILE, two.shape) as b,
    ):
        assert all(np.array_equal(a[i], b[i]) for i in range(17))


def test_undecodable_image_in_a_worker_names_the_file(tmp_path, monkeypatch):
    from pipeline.build import load_config
    from pipeline.ingest import stage as ingest_module
    from pipeline.ingest.stage import ingest

    path = make_imagefolder(tmp_path / "src", {"a": 6, "b": 6})
    with Image.open(path / "b" / "img_003.png") as image:
        image.save(path / "b" / "img_003.jpg")  # a valid header, then cut short
    data = (path / "b" / "img_003.jpg").read_bytes()
    (path / "b" / "img_003.jpg").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ingest_module, "_CHUNK_ROWS", 2)
    config = load_config(None, ["source.kind=imagefolder", f"source.path={path}"])
    with pytest.raises(SourceError, match="img_003.jpg"):
        ingest(config, tmp_path / "work", workers=2)


def test_stage_chunk_decodes_resizes_and_rejects_or_raises(tmp_path):
    from pipeline.core.images import content_sha256
    from pipeline.ingest.stage import Rejected, stage_chunk
    from pipeline.sources.base import Encoded, Invalid

    gray = np.arange(16, dtype=np.uint8).reshape(4, 4)
    images = [gray, Encoded(png_bytes(Image.fromarray(gray)), "a.png"), Invalid("t row 1", "no image", "ab")]
    with pytest.raises(SourceError, match="t row 1: no image"):
        stage_chunk(images, "L", skip=False)
    first, second, rejected = stage_chunk(images, "L", skip=True)
    assert first == (gray.tobytes(), (4, 4), content_sha256(gray)) and second == first
    assert rejected == Rejected("t row 1: no image", "ab")
    [(raw, shape, digest)] = stage_chunk([gray], "L", skip=False, resize=((2, 3), "stretch"))
    assert shape == (2, 3) and len(raw) == 6
    junk = Encoded(b"junk", "junk.png")
    [quarantined] = stage_chunk([junk], "RGB", skip=True)
    assert "junk.png: cannot" in quarantined.reason and quarantined.sha256 == junk.sha256()
