"""Bad input: every case either stops the run naming the file, or (on_bad_image: skip) is
quarantined and listed in the manifest while the run completes with the good images."""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import make_imagefolder, png_bytes, random_image
from pipeline.build import build, load_config
from pipeline.core.errors import ConfigError, SourceError
from pipeline.core.images import decode_image
from pipeline.ingest.stage import ingest
from pipeline.ingest.store import EXCLUDED
from pipeline.version.manifest import read_manifest


def config_for(path: Path, tmp_path: Path, *overrides: str, kind: str = "imagefolder"):
    return load_config(
        None,
        [
            f"source.kind={kind}",
            f"source.path={path}",
            f"output.root={tmp_path / 'out'}",
            "runner.workers=1",
            *overrides,
        ],
    )


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (no pixel data follows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def jpeg_bytes(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kw)
    return buffer.getvalue()


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
    manifest = read_manifest(version)
    skipped = {Path(s["source_id"]).name: s for s in manifest["source"]["skipped"]}
    assert set(skipped) == set(BAD_FILES)
    assert all(s["reason"] for s in skipped.values())
    assert "decompression bomb" in skipped["bomb.png"]["reason"].lower()
    readable = {n for n, data in BAD_FILES.items() if data}
    assert all((skipped[n]["sha256"] is not None) == (n in readable or n == "zero-byte.png") for n in skipped)
    real = sum(c for split in manifest["splits"].values() for c in [split["by_origin"].get("real", 0)])
    assert real == 10


def test_exotic_modes_are_normalised(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    cmyk = jpeg_bytes(Image.fromarray(rgb).convert("CMYK"))
    wide = Image.fromarray((np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16))
    one_bit = Image.fromarray(np.eye(8, dtype=bool))
    rgba = Image.fromarray(np.dstack([rgb, np.full((8, 8), 0, np.uint8)]), "RGBA")
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    palette.info["transparency"] = 0
    cases = {"cmyk.jpg": cmyk, "wide.png": wide, "bit.png": one_bit, "rgba.png": rgba, "p.png": palette}
    for name, image in cases.items():
        path = tmp_path / name
        path.write_bytes(image) if isinstance(image, bytes) else image.save(path)
    assert decode_image(tmp_path / "cmyk.jpg", "RGB", "x").shape == (8, 8, 3)
    assert decode_image(tmp_path / "wide.png", "L", "x")[0, 1] == 1000 >> 8
    assert set(np.unique(decode_image(tmp_path / "bit.png", "L", "x"))) == {0, 255}
    assert not decode_image(tmp_path / "rgba.png", "RGB", "x").any()  # transparent: on black
    assert decode_image(tmp_path / "p.png", "RGB", "x").shape == (8, 8, 3)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.fromarray(np.tile(np.arange(8, dtype=np.uint8) * 30, (4, 1)))  # 8 wide, 4 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=100)
    assert decode_image(tmp_path / "rotated.jpg", "L", "x").shape == (8, 4)


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


def test_resize_fits_crop_pad_and_stretch():
    from pipeline.core.images import resize_to

    wide = np.zeros((10, 40), np.uint8)
    wide[:, 10:30] = 200  # a bright centre band, half the width
    crop, pad, stretch = (resize_to(wide, (20, 20), fit) for fit in ("crop", "pad", "stretch"))
    assert crop.shape == pad.shape == stretch.shape == (20, 20)
    assert crop.min() > 150  # the centre only: the band fills it
    assert pad[:5].max() == 0 and pad[-5:].max() == 0 and pad[10, 10] > 150  # black above and below
    assert stretch[:, 0].max() < 50 and stretch[:, 10].min() > 150  # the whole width, squeezed
    assert resize_to(wide, (10, 40), "crop") is wide


@pytest.mark.parametrize("value", ["[0, 32]", "[32, 5000]", "[32]"])
def test_resize_out_of_range_names_the_key(value):
    with pytest.raises(ConfigError, match="source.resize"):
        load_config(None, [f"source.resize={value}"])


def test_empty_class_folder_stops_the_run_or_is_not_a_class(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"cat": 3, "dog": 3})
    (root / "eel").mkdir()
    with pytest.raises(SourceError, match="class folder 'eel' has no images"):
        ingest(config_for(root, tmp_path), tmp_path / "w1")
    staged = ingest(config_for(root, tmp_path, "source.on_bad_image=skip"), tmp_path / "w2")
    assert staged.class_names == ["cat", "dog"]
    assert staged.skipped == [{"source_id": "eel/", "reason": "empty class folder: not a class"}]


def test_hidden_and_non_image_files_are_ignored_and_counted(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"cat": 3, "dog": 3})
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0")
    (root / "cat" / "notes.txt").write_text("hello")
    (root / ".hidden").mkdir()
    random_image(np.random.default_rng(3)).save(root / "cat" / ".secret.png")
    staged = ingest(config_for(root, tmp_path), tmp_path / "work")
    assert staged.class_names == ["cat", "dog"] and len(staged.index.source_ids) == 6
    assert staged.ignored_files == 3 and staged.skipped == []


def test_hostile_names_stay_inside_the_output_root(tmp_path):
    names = ["café ☕", 'it\'s "quoted"', "a b", "a..b", "x" * 200]
    root = make_imagefolder(tmp_path / "src", {n: 2 for n in names})
    (root / names[0] / "img_000.png").rename(root / names[0] / ("ü ' \" ..png"))
    for fmt in ("parquet", "imagefolder"):
        out = tmp_path / f"out-{fmt}"
        config = config_for(
            root, tmp_path, f"output.root={out}", f"output.format={fmt}", "split.test_fraction=0.5"
        )
        version, _ = build(config)
        manifest = read_manifest(version)
        assert manifest["class_names"] == sorted(names)
        written = [p.resolve() for p in out.rglob("*")]
        assert written and all(p.is_relative_to(out.resolve()) for p in written)
    from pipeline.dataset import ExpandedDataset

    assert len(ExpandedDataset(version, split="train")) == manifest["splits"]["train"]["rows"]


def test_unsafe_class_folder_names_are_refused(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"ok": 2, "bad\x07bell": 2})
    with pytest.raises(SourceError, match="cannot be used as a folder name"):
        ingest(config_for(root, tmp_path), tmp_path / "work")


def test_names_that_are_not_utf8_stop_the_run_or_are_skipped(tmp_path):
    import os

    root = make_imagefolder(tmp_path / "src", {"cat": 3, "dog": 3})
    os.rename(root / "cat" / "img_000.png", os.fsencode(root / "cat") + b"/caf\xe9.png")  # Latin-1
    os.makedirs(os.fsencode(root) + b"/\xfeel")  # \xfe, then "el"
    random_image(np.random.default_rng(4)).save(os.fsdecode(os.fsencode(root) + b"/\xfeel/a.png"))
    with pytest.raises(SourceError, match=r"name is not UTF-8 \(rename it"):
        ingest(config_for(root, tmp_path), tmp_path / "w1")
    staged = ingest(config_for(root, tmp_path, "source.on_bad_image=skip"), tmp_path / "w2")
    assert staged.class_names == ["cat", "dog"] and len(staged.index.source_ids) == 5
    assert sorted(staged.skipped, key=str) == [
        {"source_id": "cat/caf\ufffd.png", "reason": "file name is not UTF-8"},
        {"source_id": "\ufffdel", "reason": "folder name is not UTF-8"},
    ]


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


def test_an_image_in_train_and_test_is_left_out_of_train(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"cat": 3, "dog": 3}, splits=["train", "test"])
    (root / "train" / "cat" / "leak.png").write_bytes((root / "test" / "dog" / "img_002.png").read_bytes())
    version, _ = build(config_for(root, tmp_path, "augment.copies_per_image=2"))
    manifest = read_manifest(version)
    [leak] = manifest["source"]["skipped"]
    assert leak["source_id"] == "train/cat/leak.png"
    assert "same pixels as test image test/dog/img_002.png (leakage)" in leak["reason"]
    rows = [
        r for f in sorted((version / "data").glob("train-*.parquet")) for r in pq.read_table(f).to_pylist()
    ]
    assert rows and not [r for r in rows if r["source_id"] == "train/cat/leak.png"]


def test_links_leading_outside_the_source_are_left_out_unless_followed(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"cat": 3, "dog": 3})
    outside = make_imagefolder(tmp_path / "elsewhere", {"x": 1})
    (root / "cat" / "link.png").symlink_to(outside / "x" / "img_000.png")
    staged = ingest(config_for(root, tmp_path), tmp_path / "w1")
    assert "cat/link.png" not in staged.index.source_ids.to_pylist()
    assert staged.skipped == [
        {"source_id": "cat/link.png", "reason": "symbolic link leading outside source.path"}
    ]
    followed = ingest(config_for(root, tmp_path, "source.follow_symlinks=true"), tmp_path / "w2")
    assert "cat/link.png" in followed.index.source_ids.to_pylist()


def parquet_rows(path: Path, images: list, labels: list, label_type: pa.DataType, names=None) -> Path:
    table = pa.table(
        {
            "image": pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "label": pa.array(labels, label_type),
        }
    )
    if names:
        meta = {"info": {"features": {"label": {"names": names, "_type": "ClassLabel"}}}}
        table = table.replace_schema_metadata({"huggingface": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def good_image(seed: int) -> dict:
    return {"bytes": png_bytes(random_image(np.random.default_rng(seed))), "path": None}


@pytest.mark.parametrize(
    "images, labels, label_type, names, message",
    [
        ([None], [0], pa.int64(), None, "row 2: column 'image' has no image bytes or path"),
        ([{"bytes": None, "path": "x.png"}], [0], pa.int64(), None, "row 2: cannot read image: [Errno 2]"),
        ([good_image(9)], [7], pa.int64(), ["a", "b"], "row 2: label 7 is outside 0..1"),
        (
            [good_image(9)],
            [-1],
            pa.int64(),
            ["a", "b"],
            "row 2: label -1 is outside 0..1 (-1 marks an unlabelled",
        ),
        ([good_image(9)], ["zebra"], pa.string(), ["a", "b"], "label names ['zebra'] are not among"),
        ([good_image(9)], [None], pa.int64(), None, "row 2: column 'label' must hold an integer or a string"),
        ([{"bytes": b"junk", "path": None}], [0], pa.int64(), None, "row 2: cannot read image"),
    ],
)
def test_bad_parquet_rows_stop_the_run_or_are_skipped(tmp_path, images, labels, label_type, names, message):
    base = [0, 1] if label_type == pa.int64() else ["a", "b"]
    path = parquet_rows(
        tmp_path / "src" / "train.parquet",
        [good_image(0), good_image(1), *images],
        base + labels,
        label_type,
        names,
    )
    with pytest.raises(SourceError, match=re.escape(message)):
        ingest(config_for(path, tmp_path, kind="parquet"), tmp_path / "w1")
    staged = ingest(config_for(path, tmp_path, "source.on_bad_image=skip", kind="parquet"), tmp_path / "w2")
    assert len(staged.index.source_ids) == 2
    [skipped] = staged.skipped
    assert skipped["source_id"] == "train.parquet:2" and skipped["reason"]


def test_an_unlabelled_test_split_is_skipped_and_a_test_split_carved(tmp_path):
    """A Hub dataset's test split labelled -1: skipped, listed, and test carved from train."""
    folder = tmp_path / "src"
    parquet_rows(
        folder / "train.parquet", [good_image(k) for k in range(10)], [0, 1] * 5, pa.int64(), ["a", "b"]
    )
    parquet_rows(folder / "test.parquet", [good_image(k) for k in (20, 21)], [-1, -1], pa.int64(), ["a", "b"])
    staged = ingest(config_for(folder, tmp_path, "source.on_bad_image=skip", kind="parquet"), tmp_path / "w")
    assert [s["source_id"] for s in staged.skipped] == ["test.parquet:0", "test.parquet:1"]
    assert staged.split_carved and staged.counts()["test"] == {"a": 1, "b": 1}


def test_float_label_column_is_refused(tmp_path):
    path = parquet_rows(tmp_path / "src" / "train.parquet", [good_image(0)], [0.5], pa.float64())
    with pytest.raises(SourceError, match="row 0: column 'label' must hold an integer or a string"):
        ingest(config_for(path, tmp_path, kind="parquet"), tmp_path / "work")


def test_parquet_that_is_not_parquet(tmp_path):
    path = tmp_path / "src" / "train.parquet"
    path.parent.mkdir()
    path.write_bytes(b"PAR1 but not really")
    with pytest.raises(SourceError, match="train.parquet: not a readable Parquet file"):
        ingest(config_for(path, tmp_path, kind="parquet"), tmp_path / "work")


def test_cifar_batch_of_the_wrong_shape(tmp_path):
    import pickle

    folder = tmp_path / "cifar"
    folder.mkdir()
    with (folder / "data_batch_1").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle, protocol=2)
    with pytest.raises(SourceError, match="data_batch_1"):
        ingest(config_for(folder, tmp_path, kind="cifar10"), tmp_path / "work")


def test_mnist_of_the_wrong_size(tmp_path):
    from conftest import idx_bytes

    folder = tmp_path / "mnist"
    folder.mkdir()
    images = idx_bytes(np.zeros((4, 8, 8), np.uint8))
    (folder / "train-images-idx3-ubyte").write_bytes(images[:-10])
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(SourceError, match="train-images-idx3-ubyte"):
        ingest(config_for(folder, tmp_path, kind="mnist-idx"), tmp_path / "work")


def test_custom_transforms_only_when_listed(tmp_path):
    recipe = json.dumps([{"custom_transforms:Invert": {"p": 1.0}}])
    with pytest.raises(ConfigError, match="must be listed in augment.custom_transforms"):
        load_config(None, [f"augment.transforms={recipe}"])
    with pytest.raises(ConfigError, match="is not an albumentations transform"):
        load_config(
            None,
            [
                f"augment.transforms={json.dumps([{'custom_transforms:NotATransform': {}}])}",
                'augment.custom_transforms=["custom_transforms:NotATransform"]',
            ],
        )
    config = load_config(
        None, [f"augment.transforms={recipe}", 'augment.custom_transforms=["custom_transforms:Invert"]']
    )
    from pipeline.augment.recipe import Augmenter

    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    inverted, params = Augmenter(config.augment.transforms, config.augment.custom_transforms)(image, 1)
    assert np.array_equal(inverted, 255 - image) and "Invert" in params


@pytest.mark.parametrize("data", [b"\x8d\x00\x00\x00\x00\x00\x00\x00\x80", b"\x8d" + b"\xff" * 8])
def test_cifar_batch_claiming_a_huge_string(tmp_path, data):
    folder = tmp_path / "cifar"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(data)  # found by the fuzzer: a BINUNICODE8 length field
    with pytest.raises(SourceError, match="data_batch_1: not a CIFAR-10 python batch"):
        ingest(config_for(folder, tmp_path, kind="cifar10"), tmp_path / "work")
