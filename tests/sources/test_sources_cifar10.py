from __future__ import annotations

import pickle

import numpy as np
import pytest

from conftest import (
    config_for,
    make_cifar,
    read_source,
)
from pipeline.core.errors import SourceError
from pipeline.ingest.stage import ingest


def test_cifar_batch_of_the_wrong_shape(tmp_path):
    import pickle

    folder = tmp_path / "cifar"
    folder.mkdir()
    with (folder / "data_batch_1").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle, protocol=2)
    with pytest.raises(SourceError, match="data_batch_1"):
        ingest(config_for(folder, tmp_path, kind="cifar10"), tmp_path / "work")


@pytest.mark.parametrize("data", [b"\x8d\x00\x00\x00\x00\x00\x00\x00\x80", b"\x8d" + b"\xff" * 8])
def test_cifar_batch_claiming_a_huge_string(tmp_path, data):
    folder = tmp_path / "cifar"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(data)  # found by the fuzzer: a BINUNICODE8 length field
    with pytest.raises(SourceError, match="data_batch_1: not a CIFAR-10 python batch"):
        ingest(config_for(folder, tmp_path, kind="cifar10"), tmp_path / "work")


def test_cifar10_batches(tmp_path):
    folder = make_cifar(tmp_path / "cifar-10-batches-py")
    reader, samples = read_source("cifar10", tmp_path)  # the parent folder works too
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
        read_source("cifar10", tmp_path)


def test_open_cifar10_reads_the_folder_and_names_a_missing_one(tmp_path):
    from pipeline.sources.cifar10 import open_cifar10

    folder = make_cifar(tmp_path / "c", per_batch=3, batches=("data_batch_1",))
    reader = open_cifar10(folder, class_names=[f"k{i}" for i in range(10)])  # over batches.meta
    samples = list(reader)
    assert reader.class_names[0] == "k0" and [s.source_id for s in samples][-1] == "data_batch_1:00002"
    assert all(s.split == "train" and s.pixels.shape == (32, 32, 3) for s in samples)
    with pytest.raises(SourceError, match=r"no CIFAR-10 batches \(data_batch_1..5, test_batch\) found"):
        open_cifar10(tmp_path / "empty")
