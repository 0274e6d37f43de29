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

def rows(version: Path, split: str) -> list[dict]:
    files = sorted((version / "data").glob(f"{split}-*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]

def test_fractional_copies_are_floor_or_ceil(tiny_config):
    version, _ = build(tiny_config("augment.copies_per_image=1.5"))
    copies = Counter(r["source_id"] for r in rows(version, "train") if r["origin"] == "augmented")
    assert set(copies.values()) == {1, 2}

def test_target_per_class_balances(tiny_config):
    version, _ = build(tiny_config("augment.copies_per_image=null", "augment.target_per_class=9"))
    per_class = Counter(r["label"] for r in rows(version, "train"))
    assert per_class == Counter({0: 9, 1: 9, 2: 9})
    manifest = read_manifest(version)
    assert manifest["splits"]["train"]["by_origin_class"]["real"]["cat"] == 4
