from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import config_for, make_imagefolder, random_image, read_source
from pipeline.core.errors import SourceError
from pipeline.ingest.stage import ingest


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


def test_imagefolder_class_layout(tmp_path):
    make_imagefolder(tmp_path, {"b": 2, "a": 3})
    (tmp_path / "a" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    reader, samples = read_source("imagefolder", tmp_path)
    assert reader.class_names == ["a", "b"] and reader.mode == "RGB"
    assert [s.source_id for s in samples] == sorted(s.source_id for s in samples)
    assert [s.label for s in samples] == [0, 0, 0, 1, 1]
    assert all(s.split is None for s in samples)


def test_imagefolder_reads_nested_class_folders_and_lists_strays(tmp_path):
    """As torchvision's ImageFolder: images below a class folder are of that class. Images
    beside the class folders are left out and listed; a link back up is not followed round."""
    make_imagefolder(tmp_path, {"cat": 1, "dog": 1})
    make_imagefolder(tmp_path / "cat" / "indoor", {"deep": 2}, seed=1)
    Image.new("RGB", (8, 8)).save(tmp_path / "stray.png")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "dog" / "again").symlink_to(tmp_path / "dog")
    reader, samples = read_source("imagefolder", tmp_path)
    assert reader.class_names == ["cat", "dog"]
    assert [(s.source_id, s.label) for s in samples] == [
        ("cat/img_000.png", 0),
        ("cat/indoor/deep/img_000.png", 0),
        ("cat/indoor/deep/img_001.png", 0),
        ("dog/img_000.png", 1),
    ]
    assert reader.skipped == [
        {"source_id": "stray.png", "reason": "image outside a class folder"},
        {"source_id": "dog/again", "reason": "link to a folder above it"},
    ]
    assert reader.ignored == 1


def test_imagefolder_with_split_folders_and_others_is_refused(tmp_path):
    """Read as classes, train/ and test/ would each take the classes below them as one."""
    make_imagefolder(tmp_path, {"cat": 1, "dog": 1}, splits=["train", "test"])
    make_imagefolder(tmp_path / "__MACOSX", {"cat": 1})
    with pytest.raises(SourceError, match="the folders test, train are split names but __MACOSX is not"):
        read_source("imagefolder", tmp_path)


def test_imagefolder_split_layout_and_mode_normalisation(tmp_path):
    make_imagefolder(tmp_path, {"x": 2, "y": 2}, splits=["train", "val"], mode="L")
    rgb = Image.fromarray(np.full((8, 8, 3), 9, np.uint8))
    rgb.save(tmp_path / "train" / "x" / "colour.png")
    reader, samples = read_source("imagefolder", tmp_path)
    assert reader.mode == "RGB"
    assert {s.split for s in samples} == {"train", "validation"}
    assert all(s.split == ("train" if s.source_id.startswith("train/") else "validation") for s in samples)
    assert [s.source_id for s in samples] == sorted(s.source_id for s in samples)
    assert all(s.label == ["x", "y"].index(s.source_id.split("/")[1]) for s in samples)
    assert all(s.pixels.shape == (8, 8, 3) for s in samples)


def test_imagefolder_bad_image_names_the_file(tmp_path):
    make_imagefolder(tmp_path, {"a": 1})
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match="broken.png"):
        read_source("imagefolder", tmp_path)


def test_open_imagefolder_indexes_headers_and_decodes_lazily(tmp_path):
    from pipeline.sources.base import Encoded
    from pipeline.sources.imagefolder import header_modes_under, open_imagefolder

    root = make_imagefolder(tmp_path / "src", {"b": 1, "a": 2}, mode="L")
    (root / "b" / "bad.png").write_bytes(b"junk")
    with pytest.raises(SourceError, match="bad.png"):
        open_imagefolder(root)
    reader = open_imagefolder(root, skip_bad=True)
    assert reader.class_names == ["a", "b"] and reader.mode == "L"
    samples = list(reader)
    assert [s.source_id for s in samples] == ["a/img_000.png", "a/img_001.png", "b/bad.png", "b/img_000.png"]
    assert all(isinstance(s.pixels, Encoded) for s in samples)  # decoded at ingest
    assert reader.pixels(samples[0]).shape == (8, 8)
    with pytest.raises(SourceError, match="not a directory"):
        open_imagefolder(root / "a" / "img_000.png")
    ids = ["a/img_000.png", "b/bad.png"]
    assert header_modes_under(str(root), ids, skip_bad=True) == {"L"}
    with pytest.raises(SourceError, match="bad.png: cannot read image"):
        header_modes_under(str(root), ids, skip_bad=False)
