import json
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import make_imagefolder
from pipeline.augment.counts import allocate_copies
from pipeline.build import build
from pipeline.build.context import prepare
from pipeline.build.publish import publish
from pipeline.build.stages import plan
from pipeline.build.write import write_shard
from pipeline.ingest.splits import carve_test_split
from pipeline.ingest.store import Index
from pipeline.version.layout import file_entry
from pipeline.version.manifest import read_manifest
from __future__ import annotations
import io
import re
import struct
import zlib
import pyarrow as pa
from PIL import Image
from conftest import make_imagefolder, png_bytes, random_image
from pipeline.build import build, load_config
from pipeline.core.errors import ConfigError, SourceError
from pipeline.core.images import decode_image
from pipeline.ingest.stage import ingest
from pipeline.ingest.store import EXCLUDED
import pickle
from conftest import idx_bytes, make_cifar, make_imagefolder, make_mnist, make_parquet
from pipeline.config import SourceConfig
from pipeline.core.errors import SourceError
from pipeline.core.images import content_sha256
from pipeline.sources import open_source

def rows(version: Path, split: str) -> list[dict]:
    files = sorted((version / "data").glob(f"{split}-*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]

def test_a_source_without_a_test_split_gets_one_carved_from_train(tmp_path, tiny_config):
    """Split folders without ``test/`` (only train, or train and validation): the test split
    is carved from the training images, stratified; the validation split stays as it is."""
    src = make_imagefolder(tmp_path / "no-test", {"a": 5, "b": 5}, splits=["train", "val"])
    version, _ = build(tiny_config(f"source.path={src}", "split.test_fraction=0.4"))
    test, validation = rows(version, "test"), rows(version, "validation")
    assert Counter(r["label"] for r in test) == Counter({0: 2, 1: 2})
    assert all(r["source_id"].startswith("train/") and r["origin"] == "real" for r in test)
    assert len(validation) == 10 and all(r["source_id"].startswith("val/") for r in validation)
    real_train = {r["source_id"] for r in rows(version, "train") if r["origin"] == "real"}
    assert len(real_train) == 6 and not real_train & {r["source_id"] for r in test}
    assert read_manifest(version)["source"]["split_carved"] is True

def test_split_and_allocation_ignore_input_order(tiny_config):
    ids = [f"img{i}" for i in range(40)]
    labels = np.array([i % 3 for i in range(40)])
    order = np.random.default_rng(0).permutation(40)
    first = dict(zip(ids, carve_test_split(ids, labels, 0.25, seed=5), strict=True))
    shuffled_ids = [ids[i] for i in order]
    second = dict(zip(shuffled_ids, carve_test_split(shuffled_ids, labels[order], 0.25, seed=5), strict=True))
    assert first == second
    augment = tiny_config("augment.copies_per_image=1.3").augment
    splits = ["train"] * 40
    names = ["a", "b", "c"]
    a, _ = allocate_copies(Index(ids, labels, splits, [""] * 40), augment, 5, names)
    b, _ = allocate_copies(Index(shuffled_ids, labels[order], splits, [""] * 40), augment, 5, names)
    assert dict(zip(ids, a.tolist(), strict=True)) == dict(zip(shuffled_ids, b.tolist(), strict=True))

def test_seeded_ranks_order_by_key_then_id(monkeypatch):
    import pipeline.ingest.splits as ingest_module
    from pipeline.core.seeds import derive_seed

    ids = [f"img{i:03d}" for i in np.random.default_rng(4).permutation(200)]
    monkeypatch.setattr(ingest_module, "derive_seed", lambda seed, i, salt: derive_seed(seed, i, salt) % 7)
    keys = np.array([derive_seed(3, i, "split") % 7 for i in ids])
    expected = np.empty(len(ids), np.int64)
    expected[np.lexsort((np.argsort(np.argsort(ids)), keys))] = np.arange(len(ids))
    assert ingest_module.seeded_ranks(ids, 3, "split").tolist() == expected.tolist()

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
