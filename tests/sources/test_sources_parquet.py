from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import config_for, make_parquet, png_bytes, random_image, read_source
from pipeline.build import load_config
from pipeline.config import SourceConfig
from pipeline.core.errors import ConfigError, SourceError
from pipeline.ingest.stage import ingest
from pipeline.sources import open_source


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


def test_parquet_with_classlabel_metadata_and_splits(tmp_path):
    make_parquet(
        tmp_path / "data" / "train-00000-of-00001.parquet", [0, 1, 2, 1], class_names=["ant", "bee", "cow"]
    )
    make_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [2, 0], class_names=["ant", "bee", "cow"])
    reader, samples = read_source("parquet", tmp_path)
    assert reader.class_names == ["ant", "bee", "cow"]
    assert [s.split for s in samples] == ["test", "test", "train", "train", "train", "train"]
    assert samples[0].source_id == "data/test-00000-of-00001.parquet:0"


def test_parquet_string_labels(tmp_path):
    make_parquet(tmp_path / "all.parquet", ["zebra", "ant", "zebra"], mode="L")
    reader, samples = read_source("parquet", tmp_path / "all.parquet")
    assert reader.class_names == ["ant", "zebra"] and reader.mode == "L"
    assert [s.label for s in samples] == [1, 0, 1] and samples[0].split is None


def test_parquet_label_out_of_range(tmp_path):
    make_parquet(tmp_path / "x.parquet", [0, 5], class_names=["a", "b"])
    with pytest.raises(SourceError, match="label 5"):
        read_source("parquet", tmp_path)


def test_parquet_columns_of_other_names(tmp_path, capsys):
    """CIFAR-100's layout (img, fine_label, coarse_label): the label column must be named,
    and expand init names it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cli.main import main

    file = make_parquet(tmp_path / "c100" / "train-00000-of-00001.parquet", [0, 1, 1, 0])
    table = pq.read_table(file)
    renamed = pa.table(
        {"img": table["image"], "fine_label": table["label"], "coarse_label": pa.array([5, 5, 6, 6])}
    )
    pq.write_table(renamed, file)
    with pytest.raises(SourceError, match=r"needs one of the columns label, labels; .* source.label_column"):
        read_source("parquet", file)
    reader, samples = read_source("parquet", file, label_column="fine_label")
    assert [s.label for s in samples] == [0, 1, 1, 0] and reader.class_names == ["0", "1"]
    _, samples = read_source(
        "parquet", file, label_column="coarse_label", class_names=[str(i) for i in range(7)]
    )
    assert [s.label for s in samples] == [5, 5, 6, 6]
    with pytest.raises(SourceError, match="needs the column picture"):
        read_source("parquet", file, image_column="picture", label_column="fine_label")
    out = tmp_path / "expand.yaml"
    assert main(["init", str(tmp_path / "c100"), "--out", str(out)]) == 0
    assert 'label_column: "fine_label"' in out.read_text() and "image_column" not in out.read_text()
    assert load_config(out).source.label_column == "fine_label"


def test_parquet_rows_with_a_path_instead_of_bytes(tmp_path, capsys):
    """``datasets``' to_parquet of local images keeps their paths: relative ones are read
    from the Parquet file's folder, absolute ones as they are; a missing file names the row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cli.main import main
    from conftest import png_bytes, random_image

    rng = np.random.default_rng(0)
    (tmp_path / "pics").mkdir()
    images = [random_image(rng) for _ in range(3)]
    for k, image in enumerate(images):
        image.save(tmp_path / "pics" / f"{k}.png")
    rows = [
        {"bytes": None, "path": "pics/0.png"},
        {"bytes": None, "path": str(tmp_path / "pics" / "1.png")},
        {"bytes": png_bytes(images[2]), "path": "elsewhere.png"},  # bytes come first
    ]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    file = tmp_path / "train.parquet"
    pq.write_table(pa.table({"image": pa.array(rows, image_type), "label": [0, 1, 1]}), file)
    _, samples = read_source("parquet", file)
    assert all(np.array_equal(s.pixels, np.asarray(i)) for s, i in zip(samples, images, strict=True))
    rows[0]["path"] = "pics/gone.png"
    rows[1] = {"bytes": None, "path": None}
    pq.write_table(pa.table({"image": pa.array(rows, image_type), "label": [0, 1, 1]}), file)
    with pytest.raises(SourceError, match=r"train.parquet row 0: cannot read image: .*gone.png"):
        read_source("parquet", file)
    samples = list(open_source(SourceConfig(kind="parquet", path=file, on_bad_image="skip")))
    assert "has no image bytes or path" in samples[1].pixels.reason  # ingest quarantines both
    (tmp_path / "pics" / "2.png").unlink()
    rows[2] = rows[1]
    pq.write_table(pa.table({"image": pa.array(rows, image_type), "label": [0, 1, 1]}), file)
    assert main(["init", str(file), "--out", str(tmp_path / "e.yaml")]) == 1
    assert "no readable images (the first:" in capsys.readouterr().err


def test_parquet_column_keys_need_a_parquet_source():

    with pytest.raises(ConfigError, match="source.label_column is used only with source kind 'parquet'"):
        load_config(None, ["source.label_column=fine_label"])


def test_open_parquet_names_its_columns_and_files(tmp_path):
    from pipeline.sources.parquet import open_parquet

    file = make_parquet(tmp_path / "a.parquet", [1, 0, 1], class_names=["ant", "bee"])
    reader = open_parquet(file)
    assert reader.class_names == ["ant", "bee"] and [s.label for s in reader] == [1, 0, 1]
    assert [s.source_id for s in reader] == ["a.parquet:0", "a.parquet:1", "a.parquet:2"]
    assert open_parquet(file, ["x", "y"]).class_names == ["x", "y"]
    with pytest.raises(SourceError, match="needs the column pic"):
        open_parquet(file, columns=("pic", None))
    with pytest.raises(SourceError, match="empty: no .parquet files found"):
        open_parquet(tmp_path / "empty")


def test_guess_columns_names_only_unusual_columns(tmp_path):
    from pipeline.sources.parquet import guess_columns

    usual = make_parquet(tmp_path / "usual" / "train.parquet", [0, 1])
    assert guess_columns(usual) == (None, None)
    table = pq.read_table(usual)
    pq.write_table(
        pa.table({"picture": table["image"], "fine_label": table["label"], "note": ["x", "y"]}),
        tmp_path / "other.parquet",
    )
    assert guess_columns(tmp_path / "other.parquet") == ("picture", "fine_label")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "b.parquet").write_bytes(b"not parquet")
    assert guess_columns(tmp_path / "broken") == (None, None)


def _path_rows(tmp_path: Path, path: str) -> Path:
    """A Parquet source of two good rows and a third whose image is the file at ``path``."""
    return parquet_rows(
        tmp_path / "src" / "train.parquet",
        [good_image(0), good_image(1), {"bytes": None, "path": path}],
        [0, 1, 0],
        pa.int64(),
    )


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "link"])
def test_an_image_path_outside_the_source_is_refused_unless_allowed(tmp_path, kind):
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes(random_image(np.random.default_rng(5))))
    (tmp_path / "src").mkdir()
    if kind == "link":
        (tmp_path / "src" / "inside.png").symlink_to(outside)
    path = {"absolute": str(outside), "dotdot": "../secret.png", "link": "inside.png"}[kind]
    source = _path_rows(tmp_path, path)
    with pytest.raises(
        SourceError, match=re.escape("row 2: image path") + ".*leads outside the source folder"
    ):
        ingest(config_for(source, tmp_path, kind="parquet"), tmp_path / "w1")
    staged = ingest(config_for(source, tmp_path, "source.on_bad_image=skip", kind="parquet"), tmp_path / "w2")
    [skipped] = staged.skipped
    assert (
        skipped["source_id"] == "train.parquet:2" and "leads outside the source folder" in skipped["reason"]
    )
    assert len(staged.index.source_ids) == 2  # the file outside was never read
    allowed = config_for(source, tmp_path, "source.follow_symlinks=true", kind="parquet")
    assert len(ingest(allowed, tmp_path / "w3").index.source_ids) == 3  # opted in: read


def test_an_image_path_that_is_not_a_regular_file_is_refused_without_opening_it(tmp_path):
    (tmp_path / "src").mkdir()
    os.mkfifo(tmp_path / "src" / "pipe.png")  # opening a FIFO to read would wait forever
    source = _path_rows(tmp_path, "pipe.png")
    with pytest.raises(SourceError, match=re.escape("row 2: image path 'pipe.png' is not a regular file")):
        ingest(config_for(source, tmp_path, kind="parquet"), tmp_path / "w1")
    staged = ingest(config_for(source, tmp_path, "source.on_bad_image=skip", kind="parquet"), tmp_path / "w2")
    [skipped] = staged.skipped
    assert skipped["reason"].endswith("row 2: image path 'pipe.png' is not a regular file")
