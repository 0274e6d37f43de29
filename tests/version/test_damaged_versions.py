"""A damaged published version (what a power loss or a hand edit leaves) is never trusted:
the next run sets it aside and builds it again, and the catalog lists it as damaged."""

import os

from cli.main import main
from pipeline.build import build
from pipeline.core import durable
from pipeline.version.catalog import DAMAGED_NOTE, DAMAGED_PREFIX, LATEST, gc, list_versions
from pipeline.version.manifest import MANIFEST_FILE, load_manifest, verify, write_manifest


def test_an_empty_manifest_is_set_aside_and_the_version_built_again(tiny_config, capsys):
    config = tiny_config()
    version, created = build(config)
    assert created
    (version / MANIFEST_FILE).write_text("")  # what a power loss can leave
    listed = list_versions(config.output.root)
    assert [s.damaged is not None for s in listed] == [True]
    assert main(["versions", str(config.output.root)]) == 0
    out = capsys.readouterr().out
    assert "DAMAGED" in out and f"damaged: {version}" in out
    again, created = build(config)
    assert created and again == version  # the same id, built anew
    assert verify(again) == []
    assert (again.parent / LATEST).resolve() == again.resolve()
    [aside] = again.parent.glob(f"{DAMAGED_PREFIX}*")
    assert MANIFEST_FILE in (aside / DAMAGED_NOTE).read_text()
    assert load_manifest(again).run.replaced_damaged["set_aside"] == aside.name
    removed = gc(config.output.root, keep=5)
    assert removed["staging"] == [str(aside)] and not aside.exists()
    assert [s.damaged for s in list_versions(config.output.root)] == [None]


def test_a_shard_cut_short_is_found_by_the_rerun(tiny_config):
    config = tiny_config()
    version, _ = build(config)
    shard = next((version / "data").glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes()[:100])
    again, created = build(config)
    assert created and verify(again) == []


def test_gc_removes_a_damaged_version_even_among_the_newest(tiny_config):
    config = tiny_config()
    version, _ = build(config)
    other, _ = build(tiny_config("seed=1"))
    (other / MANIFEST_FILE).write_text("{}")
    report = gc(config.output.root, keep=5)
    assert str(other) in report["kept"]  # `latest` points at it: protected
    # untagged and not latest, a damaged version goes however new it is
    os.unlink(other.parent / LATEST)
    report = gc(config.output.root, keep=5)
    assert str(other) in report["removed"] and not other.exists() and version.exists()


def test_the_manifest_is_written_durably(tiny_config, tmp_path, monkeypatch):
    version, _ = build(tiny_config())
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        durable.os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd)
    )
    write_manifest(version, load_manifest(version))
    assert str(version / f".{MANIFEST_FILE}.partial") in synced  # the bytes, before the rename
    assert str(version) in synced  # then the rename, through the folder
    assert not (version / f".{MANIFEST_FILE}.partial").exists() and verify(version) == []
