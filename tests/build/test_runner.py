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

def test_split_is_made_before_augmentation(tiny_config):
    version, created = build(tiny_config())
    assert created
    train, test = rows(version, "train"), rows(version, "test")
    assert {r["origin"] for r in test} == {"real"}
    test_ids = {r["source_id"] for r in test}
    train_real = {r["source_id"] for r in train if r["origin"] == "real"}
    assert not test_ids & {r["source_id"] for r in train}
    augmented = [r for r in train if r["origin"] == "augmented"]
    assert {r["source_id"] for r in augmented} == train_real
    assert len(augmented) == 2 * len(train_real)
    assert len(test) + len(train_real) == 15
    # the carved test split is stratified: each class keeps about a third of its images
    assert Counter(r["label"] for r in test) == Counter({0: 2, 1: 1, 2: 2})

def test_source_test_split_is_copied_unchanged(tmp_path, tiny_config):
    src = make_imagefolder(tmp_path / "split-src", {"a": 3, "b": 3}, splits=["train", "test"])
    version, _ = build(tiny_config(f"source.path={src}"))
    test = rows(version, "test")
    assert len(test) == 6 and {r["origin"] for r in test} == {"real"}
    assert all(r["sha256"] == r["source_sha256"] and r["seed"] is None for r in test)
    train = rows(version, "train")
    assert len(train) == 18 and all(r["source_id"].startswith("train/") for r in train)

def test_failed_shard_leaves_no_version(tiny_config, monkeypatch):
    class Boom(RuntimeError):
        pass

    def explode(self, pixels, seed):
        raise Boom("disk on fire")

    from pipeline.augment.recipe import Augmenter

    monkeypatch.setattr(Augmenter, "__call__", explode)
    config = tiny_config()
    with pytest.raises(Boom):
        build(config)
    parent = config.output.root / config.dataset_name()
    assert [p.name for p in parent.iterdir()] == [".lock"]  # no version, no staging

def test_a_build_without_synthesis_does_not_import_torch(tiny_config):
    """torch takes 3-4 s to import; a plain build and its worker processes go without it,
    and it still works where asked for (torch threads set to 1 in workers). Both use the
    system allocator for Arrow (mimalloc kept what Arrow's threads freed)."""
    config = tiny_config("runner.workers=2").model_dump(mode="json")
    script = """
import json, sys
from pipeline.build import build
from pipeline.config import Config
from pipeline.core.workers import run_one

build(Config.model_validate(json.loads(sys.argv[1])))
parent = "torch" in sys.modules
worker = run_one(eval, ("'torch' in __import__('sys').modules",), 2)
threads = run_one(eval, ("__import__('torch').get_num_threads()",), 2)
from pipeline.augment.recipe import build_transforms
to_tensor = type(build_transforms([{"ToTensorV2": {}}])[0]).__name__
pools = [
    __import__("pyarrow").default_memory_pool().backend_name,
    run_one(eval, ("__import__('pyarrow').default_memory_pool().backend_name",), 2),
]
print(json.dumps([parent, worker, threads, to_tensor, *pools]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(config)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == [False, False, 1, "ToTensorV2", "system", "system"]

def test_a_chosen_arrow_allocator_is_kept():
    script = "import pipeline, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "mimalloc"
