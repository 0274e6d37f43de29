import pytest

from conftest import make_cifar, make_imagefolder, make_mnist, make_parquet
from pipeline.core.errors import SourceError
from pipeline.sources import detect_kind
from pipeline.sources.archive import is_archive


def test_detect_kind_by_file_names(tmp_path):
    assert detect_kind(make_cifar(tmp_path / "c" / "cifar-10-batches-py").parent) == "cifar10"
    assert detect_kind(make_mnist(tmp_path / "m", gz=True)) == "mnist-idx"
    file = make_parquet(tmp_path / "p" / "nested" / "train.parquet", [0, 1])
    assert detect_kind(file) == "parquet" and detect_kind(tmp_path / "p") == "parquet"
    assert detect_kind(make_imagefolder(tmp_path / "i", {"a": 1})) == "imagefolder"
    (tmp_path / "pets.tar.gz").write_bytes(b"x")
    with pytest.raises(SourceError, match="pets.tar.gz: an archive: extract it first"):
        detect_kind(tmp_path / "pets.tar.gz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="notes.txt: not a folder, a .parquet file or an archive"):
        detect_kind(tmp_path / "notes.txt")
    with pytest.raises(SourceError, match="gone: no such folder"):
        detect_kind(tmp_path / "gone")


def test_is_archive_by_the_name_of_an_existing_file(tmp_path):
    for name in ("a.tar.gz", "b.TGZ", "c.zip", "d.tar"):
        (tmp_path / name).write_bytes(b"")
        assert is_archive(tmp_path / name), name
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    assert not is_archive(tmp_path / "train-images-idx3-ubyte.gz")  # a lone .gz is an IDX file
    assert not is_archive(tmp_path / "missing.zip")
    (tmp_path / "folder.zip").mkdir()
    assert not is_archive(tmp_path / "folder.zip")
