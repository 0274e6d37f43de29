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

def test_unsafe_class_folder_names_are_refused(tmp_path):
    root = make_imagefolder(tmp_path / "src", {"ok": 2, "bad\x07bell": 2})
    with pytest.raises(SourceError, match="cannot be used as a folder name"):
        ingest(config_for(root, tmp_path), tmp_path / "work")

def test_class_name_count_must_match(tmp_path):
    make_mnist(tmp_path)
    with pytest.raises(SourceError, match="has 2 names but the data has 3 classes"):
        read("mnist-idx", tmp_path, class_names=["a", "b"])
