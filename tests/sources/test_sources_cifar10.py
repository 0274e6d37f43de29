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
import pickle
from dataclasses import replace
from conftest import idx_bytes, make_cifar, make_imagefolder, make_mnist, make_parquet
from pipeline.config import SourceConfig
from pipeline.core.errors import SourceError
from pipeline.core.images import content_sha256
from pipeline.sources import open_source

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
