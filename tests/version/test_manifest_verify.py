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


def _relabel_and_rewrite_the_manifest(version):
    """An attacker's edit: flip every label of one shard and make the manifest fit it."""
    import hashlib
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = next(f.path for f in load_manifest(version).files if f.path.startswith("data/"))
    table = pq.read_table(version / shard)
    labels = pa.array([1 - v for v in table.column("label").to_pylist()], table.schema.field("label").type)
    pq.write_table(table.set_column(table.schema.get_field_index("label"), "label", labels), version / shard)
    raw = json.loads((version / "manifest.json").read_text())
    entry = next(f for f in raw["files"] if f["path"] == shard)
    data = (version / shard).read_bytes()
    entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (version / "manifest.json").write_text(json.dumps(raw, sort_keys=True, indent=2) + "\n")


def test_a_manifest_rewritten_to_fit_a_relabelled_shard_is_caught_by_its_digest(tiny_config, capsys):
    from cli.main import main
    from pipeline.version.manifest import manifest_digest, recorded_digest

    version, _ = build(tiny_config())
    published = manifest_digest(version)
    assert recorded_digest(version) == published
    assert main(["verify", str(version)]) == 0
    assert "the manifest is the one recorded when the version was published" in capsys.readouterr().out
    _relabel_and_rewrite_the_manifest(version)
    problems = verify(version)
    assert len(problems) == 1 and problems[0].startswith("manifest.json: sha256"), problems
    assert "changed since it was published" in problems[0]
    # A digest kept elsewhere is checked instead of the record beside the version.
    assert verify(version, manifest_sha256=manifest_digest(version)) == []
    given = verify(version, manifest_sha256=published)
    assert len(given) == 1 and "--manifest-sha256 says" in given[0]
    assert main(["verify", str(version), "--manifest-sha256", published]) == 1


def test_a_version_without_a_digest_record_verifies_and_says_so(tiny_config, capsys):
    from cli.main import main
    from pipeline.version.manifest import DIGESTS_DIR, recorded_digest

    version, _ = build(tiny_config())
    for record in (version.parent / DIGESTS_DIR).iterdir():
        record.unlink()
    assert recorded_digest(version) is None and verify(version) == []
    assert main(["verify", str(version)]) == 0
    assert "no manifest digest recorded" in capsys.readouterr().out


def test_a_manifest_that_names_another_version_is_caught(tiny_config):
    import json

    version, _ = build(tiny_config())
    _relabel_and_rewrite_the_manifest(version)
    raw = json.loads((version / "manifest.json").read_text())
    raw["version_id"] = "v-0000000000000000"  # so that no digest record would be found by its id
    (version / "manifest.json").write_text(json.dumps(raw, sort_keys=True, indent=2) + "\n")
    problems = verify(version)
    assert any(p.startswith("manifest.json: sha256") for p in problems), problems  # found by the folder
    assert f"manifest.json: names version v-0000000000000000, but it is in {version.name}" in problems
