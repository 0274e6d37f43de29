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

def test_version_id_is_content_derived(tiny_config, tmp_path):
    first, created = build(tiny_config())
    again, created_again = build(tiny_config())
    assert first == again and created and not created_again
    other_seed, _ = build(tiny_config("seed=1"))
    assert other_seed.name != first.name
    elsewhere, _ = build(tiny_config(f"output.root={tmp_path / 'elsewhere'}"))
    assert elsewhere.name == first.name
    (Path(tiny_config().source.path) / "cat" / "img_000.png").unlink()
    edited, _ = build(tiny_config())
    assert edited.name != first.name
