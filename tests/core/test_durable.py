"""Durable writes: bytes synced before the rename that makes them visible, then the folder."""

import os

from pipeline.core import durable
from pipeline.core.durable import fsync_dir, sync_tree, write_durably


def _recording(monkeypatch) -> list[str]:
    synced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(
        durable.os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd)
    )
    return synced


def test_write_durably_replaces_the_file_whole_and_syncs_it_and_its_folder(tmp_path, monkeypatch):
    synced = _recording(monkeypatch)
    target = tmp_path / "m.json"
    target.write_text("old")
    write_durably(target, b"new")
    assert target.read_bytes() == b"new"
    assert synced == [str(tmp_path / ".m.json.partial"), str(tmp_path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temporary file left


def test_fsync_dir_and_sync_tree_sync_every_folder(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"x")
    synced = _recording(monkeypatch)
    fsync_dir(tmp_path)
    assert synced == [str(tmp_path)]
    synced.clear()
    sync_tree(tmp_path)
    assert sorted(synced) == sorted(str(p) for p in (tmp_path, tmp_path / "a", tmp_path / "a" / "b"))
