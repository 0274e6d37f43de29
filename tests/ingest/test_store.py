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

def test_pixel_store_reads_any_row_and_names_the_file_for_a_missing_one(tmp_path):
    from pipeline.ingest.store import PixelStore, write_pixels

    images = [np.full((3, 2, 3), i, np.uint8) for i in range(5)]
    path = tmp_path / "pixels.u8"
    assert write_pixels(path, iter(images)) == 5
    with PixelStore(path, (3, 2, 3)) as pixels:
        for row in (4, 0, 2):
            assert np.array_equal(pixels[row], images[row])
        for row in (5, -1):
            with pytest.raises(IndexError, match="pixels.u8"):
                pixels[row]

def test_content_hashes_are_kept_as_digests_and_read_back_as_the_same_hex(tmp_path):
    import hashlib

    import pyarrow as pa

    from pipeline.ingest.store import DIGEST, Index, digests, hex_strings, load_index, save_index

    hexes = [hashlib.sha256(bytes([i])).hexdigest() for i in range(5)]
    stored = digests(hexes)
    assert stored.type == DIGEST and stored.to_pylist() == [bytes.fromhex(h) for h in hexes]
    assert hex_strings(stored).to_pylist() == hexes
    # a slice (an offset into the buffer), and nulls as a plan's take of synthetic rows makes
    assert hex_strings(stored.slice(1, 3)).to_pylist() == hexes[1:4]
    taken = stored.take(pa.array([4, None, 1]))
    assert hex_strings(taken).to_pylist() == [hexes[4], None, hexes[1]]
    assert hex_strings(pa.nulls(2, DIGEST)).to_pylist() == [None, None]
    # the index keeps digests and split codes through its file
    index = Index(["a", "b", "c"], [0, 1, 0], ["train", "excluded", "test"], pa.array(hexes[:3]))
    save_index(index, tmp_path / "index.arrow")
    loaded = load_index(tmp_path / "index.arrow")
    assert loaded.sha256.equals(stored.slice(0, 3)) and loaded.splits.tolist() == index.splits.tolist()
    assert [loaded.split_of(row) for row in range(3)] == ["train", "excluded", "test"]
    assert loaded.present() == ["train", "test"] and loaded.rows_in("test").tolist() == [2]
