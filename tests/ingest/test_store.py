import numpy as np
import pytest


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


def test_arrow_helpers_read_values_a_chunk_at_a_time(monkeypatch):
    import hashlib

    import pyarrow as pa

    from pipeline.ingest import store
    from pipeline.ingest.store import digest_bytes, digests, iter_hex, iter_strings, string_array, values_at

    monkeypatch.setattr(store, "_PY_CHUNK", 2)
    names = string_array(["a", "b", "c", "d", "e"])
    assert names.type == pa.string() and string_array(names) is names
    assert string_array(pa.chunked_array([names])).equals(names)  # one chunk, as read from a file
    assert list(iter_strings(names)) == ["a", "b", "c", "d", "e"]
    assert values_at(names, [4, 0, 4]) == ["e", "a", "e"] and values_at(names, np.array([1])) == ["b"]
    hexes = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    stored = digests(hexes)
    assert list(iter_hex(stored)) == hexes
    rows = digest_bytes(stored.slice(1, 2))
    assert rows.shape == (2, 32) and [bytes(r).hex() for r in rows] == hexes[1:]


def test_load_split_reads_the_staged_images_of_one_split(tmp_path):
    from pipeline.ingest.store import (
        INDEX_FILE,
        PIXELS_FILE,
        Index,
        RealData,
        load_split,
        save_index,
        write_pixels,
    )

    images = [np.full((2, 2), i, np.uint8) for i in range(4)]
    write_pixels(tmp_path / PIXELS_FILE, iter(images))
    index = Index(["a", "b", "c", "d"], [0, 1, 1, 0], ["train", "test", "train", "train"], ["0" * 64] * 4)
    save_index(index, tmp_path / INDEX_FILE)
    train = load_split(tmp_path, (2, 2), "train")
    assert isinstance(train, RealData) and train.ids == ["a", "c", "d"] and train.labels.tolist() == [0, 1, 0]
    assert [int(image[0, 0]) for image in train.images] == [0, 2, 3]
    assert load_split(tmp_path, (2, 2), "validation", index) is None
    kept = train.subset(np.array([True, False, True]))
    assert kept.ids == ["a", "d"] and kept.labels.tolist() == [0, 0] and len(kept.images) == 2
