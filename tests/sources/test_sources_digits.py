import pickle
from dataclasses import replace
import numpy as np
import pytest
from PIL import Image
from conftest import idx_bytes, make_cifar, make_imagefolder, make_mnist, make_parquet
from pipeline.config import SourceConfig
from pipeline.core.errors import SourceError
from pipeline.core.images import content_sha256
from pipeline.sources import open_source

def test_digits_is_embedded_and_scaled():
    reader, samples = read("digits")
    assert reader.class_names == [str(i) for i in range(10)] and reader.mode == "L"
    assert len(samples) == 1797 and samples[0].pixels.shape == (8, 8)
    assert samples[0].pixels.dtype == np.uint8 and max(s.pixels.max() for s in samples) == 255
    assert all(s.split is None for s in samples)
