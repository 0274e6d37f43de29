"""pipeline.version.manifest.verify: damage to any file of a version is found."""

import pytest

from pipeline.build import build
from pipeline.version.manifest import load_manifest, verify


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_verify_catches_a_flipped_byte_in_any_shard_and_a_deleted_file(tiny_config, fmt):
    version, _ = build(tiny_config(f"output.format={fmt}"))
    assert verify(version) == []
    shards = [f.path for f in load_manifest(version).files if f.path.endswith((".parquet", ".png"))]
    assert len(shards) > 2
    for relative in shards:
        path = version / relative
        original = path.read_bytes()
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0x01
        path.write_bytes(bytes(damaged))
        problems = verify(version)
        assert problems and all(p.startswith(relative) for p in problems), problems
        path.write_bytes(original)
    assert verify(version) == []
    (version / shards[0]).unlink()
    problems = verify(version, full=False)
    assert f"{shards[0]}: missing" in problems
