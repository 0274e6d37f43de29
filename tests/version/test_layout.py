"""pipeline.version.layout: the entry a written file gets in the manifest's file list."""

import hashlib

from pipeline.version.layout import file_entry


def test_file_entry_names_the_file_relative_to_the_version_with_its_size_and_hash(tmp_path):
    data = b"some shard bytes"
    path = tmp_path / "data" / "train-00000.parquet"
    path.parent.mkdir()
    path.write_bytes(data)
    assert file_entry(tmp_path, path) == {
        "path": "data/train-00000.parquet",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
