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

def test_manifest_lists_every_file_with_hashes(tiny_config):
    version, _ = build(tiny_config())
    text = (version / "manifest.json").read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    assert manifest["schema_version"] == 1 and manifest["version_id"] == version.name
    on_disk = sorted(p for p in version.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert [f["path"] for f in manifest["files"]] == [p.relative_to(version).as_posix() for p in on_disk]
    for listed, path in zip(manifest["files"], on_disk, strict=True):
        assert listed == file_entry(version, path)
    assert manifest["splits"]["train"]["rows"] == len(rows(version, "train"))
    assert manifest["config"]["augment"]["copies_per_image"] == 2
    assert manifest["class_names"] == ["cat", "dog", "eel"]
    assert manifest["libraries"]["albumentations"].startswith("2.0")
    assert manifest["source"]["split_carved"] is True
    assert {"classes.png", "grid.png", "croissant.json", "README.md"} <= {
        f["path"] for f in manifest["files"]
    }
