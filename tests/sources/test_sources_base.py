from __future__ import annotations

import pytest

from conftest import config_for, make_imagefolder, make_mnist, read_source
from pipeline.core.errors import SourceError
from pipeline.ingest.stage import ingest


def test_unsafe_class_folder_names_are_refused(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"ok": 2, "bad\x07bell": 2})
    with pytest.raises(SourceError, match="cannot be used as a folder name"):
        ingest(config_for(root, tmp_path), tmp_path / "work")


def test_class_name_count_must_match(tmp_path):
    make_mnist(tmp_path)
    with pytest.raises(SourceError, match="has 2 names but the data has 3 classes"):
        read_source("mnist-idx", tmp_path, class_names=["a", "b"])


def test_split_name_maps_folder_names_to_canonical_splits():
    from pipeline.sources.base import split_name

    assert [split_name(n) for n in ("train", "Training", "TEST", "val", "valid")] == [
        "train",
        "train",
        "test",
        "validation",
        "validation",
    ]
    assert split_name("cats") is None and split_name("") is None


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "no classes found"),
        (["a", ""], "class name '' cannot be used as a folder name"),
        (["..", "b"], r"class name '\.\.' cannot be used"),
        (["a/b"], "class name 'a/b' cannot be used as a folder name"),
        (["a\\b"], r"class name 'a\\\\b' cannot be used"),
        (["caf\udce9"], r"class name 'caf\\udce9' is not UTF-8"),
        (["cat", "dog", "cat"], "duplicate class name 'cat'"),
    ],
)
def test_check_class_names_refuses_names_that_are_not_one_folder(names, message):
    from pipeline.sources.base import check_class_names

    with pytest.raises(SourceError, match=f"^where: {message}"):
        check_class_names(names, "where")


def test_check_class_names_keeps_odd_but_safe_names():
    from pipeline.sources.base import check_class_names

    names = ["café ☕", 'it\'s "quoted"', "a b", "a..b"]
    assert check_class_names(names, "x") is names


def test_named_classes_are_digits_or_the_override():
    from pipeline.sources.base import named_classes

    assert named_classes(3, None, "x") == ["0", "1", "2"]
    assert named_classes(2, ["ant", "bee"], "x") == ["ant", "bee"]
    with pytest.raises(SourceError, match="x: duplicate class name 'ant'"):
        named_classes(2, ["ant", "ant"], "x")


def test_samples_keep_pixels_encoded_or_invalid_until_the_reader_decodes_them(tmp_path):
    import hashlib

    import numpy as np
    from PIL import Image

    from conftest import png_bytes
    from pipeline.sources.base import Encoded, Invalid, Sample, SourceReader

    image = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    data = png_bytes(image)
    (tmp_path / "a.png").write_bytes(data)
    samples = [
        Sample("a", 0, None, Encoded(str(tmp_path / "a.png"), "a.png")),
        Sample("b", 1, "train", Encoded(data, "b row 1")),
        Sample("c", 0, None, np.zeros((3, 4), np.uint8)),
    ]
    reader = SourceReader(class_names=["x", "y"], mode="RGB", samples=lambda: iter(samples), count=3)
    assert list(reader) == samples and list(reader) == samples  # a new pass each time
    decoded = [reader.pixels(s) for s in samples[:2]]
    assert all(p.shape == (3, 4, 3) and (p[..., 0] == np.asarray(image)).all() for p in decoded)
    assert reader.pixels(samples[2]) is samples[2].pixels
    assert samples[0].pixels.sha256() == samples[1].pixels.sha256() == hashlib.sha256(data).hexdigest()
    assert Encoded(str(tmp_path / "gone.png"), "gone.png").sha256() is None
    with pytest.raises(SourceError, match="junk: cannot"):
        Encoded(b"junk", "junk").decode("L")
    invalid = Invalid("t.parquet row 2", "label 7 is outside 0..1", digest="ab")
    with pytest.raises(SourceError, match=r"^t.parquet row 2: label 7 is outside 0..1$"):
        reader.pixels(Sample("d", -1, None, invalid))
    assert invalid.sha256() == "ab" and reader.skipped == [] and reader.ignored == 0
