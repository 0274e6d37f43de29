import pickle
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from conftest import idx_bytes, make_cifar, make_imagefolder, make_mnist, make_parquet
from pipeline.config import SourceConfig
from pipeline.core.errors import SourceError
from pipeline.core.images import content_sha256
from pipeline.sources import open_source


def read(kind, path=None, **kw):
    """The reader and its samples, decoded."""
    reader = open_source(SourceConfig(kind=kind, path=path, **kw))
    return reader, [replace(s, pixels=reader.pixels(s)) for s in reader]


def test_digits_is_embedded_and_scaled():
    reader, samples = read("digits")
    assert reader.class_names == [str(i) for i in range(10)] and reader.mode == "L"
    assert len(samples) == 1797 and samples[0].pixels.shape == (8, 8)
    assert samples[0].pixels.dtype == np.uint8 and max(s.pixels.max() for s in samples) == 255
    assert all(s.split is None for s in samples)


def test_imagefolder_class_layout(tmp_path):
    make_imagefolder(tmp_path, {"b": 2, "a": 3})
    (tmp_path / "a" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "a" / "notes.txt").write_text("ignored")
    reader, samples = read("imagefolder", tmp_path)
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
    reader, samples = read("imagefolder", tmp_path)
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
        read("imagefolder", tmp_path)


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_an_archive_builds_as_its_folder_would(tmp_path, suffix):
    """A tarball or zip of an image folder (under one top folder, with macOS's __MACOSX
    beside it in the zip) gives the same version as the folder; the extraction is removed."""
    import shutil
    import tarfile
    import zipfile

    from pipeline.augment.preview import preview
    from pipeline.build import build, load_config

    folder = make_imagefolder(tmp_path / "pets", {"cat": 3, "dog": 3})
    archive = tmp_path / f"pets{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zipped:
            for file in sorted(folder.rglob("*.png")):
                zipped.write(file, file.relative_to(tmp_path).as_posix())
            zipped.writestr("__MACOSX/pets/._cat", b"resource fork")
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname="pets")

    def version(path):
        overrides = ["source.kind=imagefolder", f"source.path={path}", f"output.root={tmp_path / 'out'}"]
        return build(load_config(None, [*overrides, "augment.copies_per_image=1", "runner.workers=1"]))[0]

    assert version(archive) == version(folder)  # the same id: the same content
    assert not [p for p in (tmp_path / "out").rglob("source-*")]
    config = load_config(
        None, ["source.kind=imagefolder", f"source.path={archive}", "augment.copies_per_image=1"]
    )
    assert preview(config, 1, tmp_path / "preview.png").is_file()
    shutil.rmtree(tmp_path / "out")


def test_an_archive_of_one_split_folder_keeps_its_split(tmp_path, capsys):
    """train/<class>/... stays a train split; expand init names the archive's kind and path."""
    import tarfile

    from cli.main import main
    from pipeline.build import load_config
    from pipeline.sources.archive import extracted

    make_imagefolder(tmp_path / "data", {"cat": 2, "dog": 2}, splits=["train"])
    archive = tmp_path / "pets-v2.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "data" / "train", arcname="train")
    with extracted(archive) as folder:
        reader, samples = read("imagefolder", folder)
        assert {s.split for s in samples} == {"train"} and samples[0].source_id == "train/cat/img_000.png"
    assert not folder.exists()  # the temporary extraction is removed
    out = tmp_path / "expand.yaml"
    assert main(["init", str(archive), "--out", str(out)]) == 0
    config = load_config(out)
    assert config.source.path == archive and config.source.kind == "imagefolder" and config.name == "pets-v2"


def test_an_unsafe_or_oversized_archive_member_is_refused(tmp_path, monkeypatch):
    import io
    import tarfile
    import types

    from pipeline.sources.archive import extract

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../escape.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(SourceError, match=r"evil.tar: member '../escape.png' would be extracted outside"):
        extract(archive, tmp_path / "into")
    assert not (tmp_path / "escape.png").exists()
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("cat/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(SourceError, match="member 'cat/link.png' is a link"):
        extract(archive, tmp_path / "into")
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("cat/big.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    monkeypatch.setattr("pipeline.sources.archive.shutil.disk_usage", lambda _: types.SimpleNamespace(free=2))
    with pytest.raises(SourceError, match=r"member 'cat/big.png' \(3 bytes\) does not fit on the disk"):
        extract(archive, tmp_path / "into")
    monkeypatch.undo()
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="broken.zip: cannot read the archive"):
        extract(tmp_path / "broken.zip", tmp_path / "into")


def test_imagefolder_split_layout_and_mode_normalisation(tmp_path):
    make_imagefolder(tmp_path, {"x": 2, "y": 2}, splits=["train", "val"], mode="L")
    rgb = Image.fromarray(np.full((8, 8, 3), 9, np.uint8))
    rgb.save(tmp_path / "train" / "x" / "colour.png")
    reader, samples = read("imagefolder", tmp_path)
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
        read("imagefolder", tmp_path)


def test_parquet_with_classlabel_metadata_and_splits(tmp_path):
    make_parquet(
        tmp_path / "data" / "train-00000-of-00001.parquet", [0, 1, 2, 1], class_names=["ant", "bee", "cow"]
    )
    make_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [2, 0], class_names=["ant", "bee", "cow"])
    reader, samples = read("parquet", tmp_path)
    assert reader.class_names == ["ant", "bee", "cow"]
    assert [s.split for s in samples] == ["test", "test", "train", "train", "train", "train"]
    assert samples[0].source_id == "data/test-00000-of-00001.parquet:0"


def test_parquet_string_labels(tmp_path):
    make_parquet(tmp_path / "all.parquet", ["zebra", "ant", "zebra"], mode="L")
    reader, samples = read("parquet", tmp_path / "all.parquet")
    assert reader.class_names == ["ant", "zebra"] and reader.mode == "L"
    assert [s.label for s in samples] == [1, 0, 1] and samples[0].split is None


def test_parquet_label_out_of_range(tmp_path):
    make_parquet(tmp_path / "x.parquet", [0, 5], class_names=["a", "b"])
    with pytest.raises(SourceError, match="label 5"):
        read("parquet", tmp_path)


def test_cifar10_batches(tmp_path):
    folder = make_cifar(tmp_path / "cifar-10-batches-py")
    reader, samples = read("cifar10", tmp_path)  # the parent folder works too
    assert reader.class_names[0] == "airplane" and reader.mode == "RGB"
    assert len(samples) == 12 and {s.split for s in samples} == {"train", "test"}
    assert samples[0].pixels.shape == (32, 32, 3)
    with (folder / "data_batch_1").open("rb") as handle:
        raw = pickle.load(handle)
    first = raw[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(samples[0].pixels, first)


def test_cifar10_refuses_code_in_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    make_cifar(tmp_path)
    with (tmp_path / "data_batch_1").open("wb") as handle:
        pickle.dump({b"data": Evil()}, handle)
    with pytest.raises(SourceError, match="refusing to load builtins.print"):
        read("cifar10", tmp_path)


def test_parquet_columns_of_other_names(tmp_path, capsys):
    """CIFAR-100's layout (img, fine_label, coarse_label): the label column must be named,
    and expand init names it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cli.main import main
    from pipeline.build import load_config

    file = make_parquet(tmp_path / "c100" / "train-00000-of-00001.parquet", [0, 1, 1, 0])
    table = pq.read_table(file)
    renamed = pa.table(
        {"img": table["image"], "fine_label": table["label"], "coarse_label": pa.array([5, 5, 6, 6])}
    )
    pq.write_table(renamed, file)
    with pytest.raises(SourceError, match=r"needs one of the columns label, labels; .* source.label_column"):
        read("parquet", file)
    reader, samples = read("parquet", file, label_column="fine_label")
    assert [s.label for s in samples] == [0, 1, 1, 0] and reader.class_names == ["0", "1"]
    _, samples = read("parquet", file, label_column="coarse_label", class_names=[str(i) for i in range(7)])
    assert [s.label for s in samples] == [5, 5, 6, 6]
    with pytest.raises(SourceError, match="needs the column picture"):
        read("parquet", file, image_column="picture", label_column="fine_label")
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
    _, samples = read("parquet", file)
    assert all(np.array_equal(s.pixels, np.asarray(i)) for s, i in zip(samples, images, strict=True))
    rows[0]["path"] = "pics/gone.png"
    rows[1] = {"bytes": None, "path": None}
    pq.write_table(pa.table({"image": pa.array(rows, image_type), "label": [0, 1, 1]}), file)
    with pytest.raises(SourceError, match=r"train.parquet row 0: cannot read image: .*gone.png"):
        read("parquet", file)
    samples = list(open_source(SourceConfig(kind="parquet", path=file, on_bad_image="skip")))
    assert "has no image bytes or path" in samples[1].pixels.reason  # ingest quarantines both
    (tmp_path / "pics" / "2.png").unlink()
    rows[2] = rows[1]
    pq.write_table(pa.table({"image": pa.array(rows, image_type), "label": [0, 1, 1]}), file)
    assert main(["init", str(file), "--out", str(tmp_path / "e.yaml")]) == 1
    assert "no readable images (the first:" in capsys.readouterr().err


def test_parquet_column_keys_need_a_parquet_source():
    from pipeline.build import load_config
    from pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="source.label_column is used only with source kind 'parquet'"):
        load_config(None, ["source.label_column=fine_label"])


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    make_mnist(tmp_path, gz=gz)
    reader, samples = read("mnist-idx", tmp_path, class_names=["zero", "one", "two"])
    assert reader.class_names == ["zero", "one", "two"] and reader.mode == "L"
    assert [s.split for s in samples].count("test") == 4 and len(samples) == 16


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_images_are_streamed_in_chunks(tmp_path, monkeypatch, gz):
    """Read 5 at a time (12 and 4 images: chunks end inside and at the end of a split), the
    pixels are the files' own."""
    import pipeline.sources.mnist_idx as mnist_idx

    monkeypatch.setattr(mnist_idx, "_CHUNK", 5)
    make_mnist(tmp_path, gz=gz, seed=3)
    rng = np.random.default_rng(3)
    expected = [
        *rng.integers(0, 256, (12, 8, 8), dtype=np.uint8),
        *rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
    ]
    _, samples = read("mnist-idx", tmp_path)
    assert [s.source_id for s in samples[11:13]] == ["train:00011", "test:00000"]
    assert all(np.array_equal(s.pixels, e) for s, e in zip(samples, expected, strict=True))


@pytest.mark.parametrize("cut", [-10, +3])
def test_mnist_gzipped_images_of_the_wrong_length(tmp_path, cut):
    """A gzipped file's length is known only once it is read: a short or a long one stops
    the pass, naming the file."""
    import gzip

    make_mnist(tmp_path, gz=True)
    file = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(file.read_bytes())
    file.write_bytes(gzip.compress(raw[:cut] if cut < 0 else raw + b"x" * cut))
    reader = open_source(SourceConfig(kind="mnist-idx", path=tmp_path))
    message = "ends after 11 of 12 images" if cut < 0 else "more bytes than the 12 images"
    with pytest.raises(SourceError, match=f"train-images-idx3-ubyte.gz: {message}"):
        list(reader)


def test_mnist_wrong_magic(tmp_path):
    make_mnist(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((2, 2), np.uint8)))
    with pytest.raises(SourceError, match="not an IDX file"):
        read("mnist-idx", tmp_path)


def test_class_name_count_must_match(tmp_path):
    make_mnist(tmp_path)
    with pytest.raises(SourceError, match="has 2 names but the data has 3 classes"):
        read("mnist-idx", tmp_path, class_names=["a", "b"])


def test_content_hash_ignores_encoding(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    folder = tmp_path / "k"
    folder.mkdir()
    Image.fromarray(pixels).save(folder / "a.png")
    Image.fromarray(pixels).save(folder / "b.bmp")
    _, samples = read("imagefolder", tmp_path)
    assert samples[0].pixels.tolist() == samples[1].pixels.tolist()
    assert content_sha256(samples[0].pixels) == content_sha256(samples[1].pixels)


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


def test_pixel_store_reads_any_row_and_names_the_file_for_a_missing_one(tmp_path):
    from pipeline.ingest.store import PixelStore, write_pixels

    images = [np.full((3, 2, 3), i, np.uint8) for i in range(5)]
    path = tmp_path / "pixels.u8"
    assert write_pixels(path, iter(images)) == 5
    with PixelStore(path, (3, 2, 3)) as pixels:
        for row in (4, 0, 2):
            assert np.array_equal(pixels[row], images[row])
        for row in (5, -1):
            with pytest.raises(IndexError, match="pixels.u8"):
                pixels[row]


def test_repeated_source_ids_are_found():
    import pyarrow as pa

    from pipeline.ingest.splits import duplicate_groups
    from pipeline.ingest.stage import _repeated_value

    assert _repeated_value(pa.array(["b", "a", "c", "b", "a"])) == "a"
    assert _repeated_value(pa.array(["b", "a", "c"])) is None
    assert _repeated_value(pa.array([], pa.string())) is None
    # the same pixels under three ids: one group, sorted by id, lists or Arrow arrays alike
    ids, hashes = ["z", "x", "y", "w"], ["f" * 64, "0" * 64, "f" * 64, "f" * 64]
    assert duplicate_groups(ids, hashes) == duplicate_groups(pa.array(ids), pa.array(hashes)) == [[3, 2, 0]]


def test_content_hashes_are_kept_as_digests_and_read_back_as_the_same_hex(tmp_path):
    import hashlib

    import pyarrow as pa

    from pipeline.ingest.store import DIGEST, Index, digests, hex_strings, load_index, save_index

    hexes = [hashlib.sha256(bytes([i])).hexdigest() for i in range(5)]
    stored = digests(hexes)
    assert stored.type == DIGEST and stored.to_pylist() == [bytes.fromhex(h) for h in hexes]
    assert hex_strings(stored).to_pylist() == hexes
    # a slice (an offset into the buffer), and nulls as a plan's take of synthetic rows makes
    assert hex_strings(stored.slice(1, 3)).to_pylist() == hexes[1:4]
    taken = stored.take(pa.array([4, None, 1]))
    assert hex_strings(taken).to_pylist() == [hexes[4], None, hexes[1]]
    assert hex_strings(pa.nulls(2, DIGEST)).to_pylist() == [None, None]
    # the index keeps digests and split codes through its file
    index = Index(["a", "b", "c"], [0, 1, 0], ["train", "excluded", "test"], pa.array(hexes[:3]))
    save_index(index, tmp_path / "index.arrow")
    loaded = load_index(tmp_path / "index.arrow")
    assert loaded.sha256.equals(stored.slice(0, 3)) and loaded.splits.tolist() == index.splits.tolist()
    assert [loaded.split_of(row) for row in range(3)] == ["train", "excluded", "test"]
    assert loaded.present() == ["train", "test"] and loaded.rows_in("test").tolist() == [2]
