from __future__ import annotations

import numpy as np
import pytest

from conftest import config_for, idx_bytes, make_mnist, read_source
from pipeline.config import SourceConfig
from pipeline.core.errors import SourceError
from pipeline.ingest.stage import ingest
from pipeline.sources import open_source


def test_mnist_of_the_wrong_size(tmp_path):
    from conftest import idx_bytes

    folder = tmp_path / "mnist"
    folder.mkdir()
    images = idx_bytes(np.zeros((4, 8, 8), np.uint8))
    (folder / "train-images-idx3-ubyte").write_bytes(images[:-10])
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(SourceError, match="train-images-idx3-ubyte"):
        ingest(config_for(folder, tmp_path, kind="mnist-idx"), tmp_path / "work")


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx(tmp_path, gz):
    make_mnist(tmp_path, gz=gz)
    reader, samples = read_source("mnist-idx", tmp_path, class_names=["zero", "one", "two"])
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
    _, samples = read_source("mnist-idx", tmp_path)
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
        read_source("mnist-idx", tmp_path)


def test_find_idx_and_open_mnist_idx(tmp_path):
    from pipeline.sources.mnist_idx import find_idx, open_mnist_idx

    make_mnist(tmp_path / "gz", gz=True)
    assert (
        find_idx(tmp_path / "gz", "train-images-idx3-ubyte") == tmp_path / "gz" / "train-images-idx3-ubyte.gz"
    )
    assert find_idx(tmp_path / "gz", "nothing-idx1-ubyte") is None
    dotted = tmp_path / "dotted"
    dotted.mkdir()
    (dotted / "train-images.idx3-ubyte").write_bytes(b"")
    assert find_idx(dotted, "train-images-idx3-ubyte") == dotted / "train-images.idx3-ubyte"
    reader = open_mnist_idx(tmp_path / "gz")
    assert reader.class_names == ["0", "1", "2"] and reader.mode == "L"
    samples = list(reader)
    assert samples[0].source_id == "train:00000" and samples[0].pixels.shape == (8, 8)
    (tmp_path / "gz" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SourceError, match=r"t10k-labels-idx1-ubyte\[.gz\] is missing for the test split"):
        open_mnist_idx(tmp_path / "gz")
    with pytest.raises(SourceError, match="no IDX files"):
        open_mnist_idx(tmp_path / "nothing")
