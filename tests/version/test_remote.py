"""pipeline.version.remote: uploading versions to remote storage through fsspec (its in-memory
file system here)."""

import fsspec
import pyarrow.parquet as pq
import pytest

from cli.main import main
from pipeline.build import build
from pipeline.core.errors import ConfigError, PipelineError
from pipeline.version import remote
from pipeline.version.manifest import MANIFEST_FILE, load_manifest, verify


def test_a_build_uploads_its_version_manifest_last_and_moves_latest(tiny_config, bucket, monkeypatch):
    sent, upload = [], remote._upload

    def recorded(fs, local, path, size):
        sent.append(path)
        upload(fs, local, path, size)

    monkeypatch.setattr(remote, "_upload", recorded)
    version, created = build(tiny_config(f"output.remote={bucket}"))
    manifest = load_manifest(version)
    url = remote.remote_url(bucket, manifest.name, manifest.version_id)
    fs, root = fsspec.core.url_to_fs(url)
    assert created and sent[-1] == f"{root}/{MANIFEST_FILE}" and len(sent) == len(manifest.files) + 1
    for path in [f.path for f in manifest.files] + [MANIFEST_FILE]:
        assert fs.cat_file(f"{root}/{path}") == (version / path).read_bytes()
    assert load_manifest(url) == manifest and verify(url) == []
    assert fs.cat_file(f"{_path(bucket)}/{manifest.name}/latest").decode().strip() == version.name
    first = manifest.shards[0]
    with fs.open(f"{root}/data/{first.shard}.parquet", "rb") as handle:  # readable in place
        assert pq.read_table(handle).num_rows == first.rows
    # The same content again: nothing is built or sent, latest still names it.
    sent.clear()
    assert build(tiny_config(f"output.remote={bucket}")) == (version, False) and sent == []


def test_an_interrupted_upload_is_redone_and_verify_finds_remote_damage(tiny_config, bucket):
    config = tiny_config(f"output.remote={bucket}")
    version, _ = build(config)
    manifest = load_manifest(version)
    url = remote.remote_url(bucket, manifest.name, manifest.version_id)
    fs, root = fsspec.core.url_to_fs(url)
    shard = next(e.path for e in manifest.files if e.path.startswith("data/"))
    fs.rm(f"{root}/{MANIFEST_FILE}")  # as if the upload stopped before its last file
    fs.pipe_file(f"{root}/{shard}", b"half")
    assert verify(url)[0].startswith(f"{MANIFEST_FILE}: unreadable")
    build(config)  # already published here: only the upload runs, all of it again
    assert verify(url) == []
    data = bytearray(fs.cat_file(f"{root}/{shard}"))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(f"{root}/{shard}", bytes(data))
    fs.pipe_file(f"{root}/data/extra.parquet", b"x")
    problems = verify(url)
    assert any(p.startswith(f"{shard}: sha256") for p in problems)
    assert "data/extra.parquet: present but not listed in the manifest" in problems
    assert main(["verify", url]) == 1
    assert main(["verify", "nosuch://bucket/v-1"]) == 1


def test_remote_is_a_known_url_and_not_part_of_the_version(tiny_config):
    for bad in ("nosuch://bucket/x", "/a/local/folder"):
        with pytest.raises(ConfigError, match="output.remote"):
            tiny_config(f"output.remote={bad}")
    assert tiny_config("output.remote=memory://x").content_dict() == tiny_config().content_dict()
    with pytest.raises(PipelineError, match="uploading .* to nosuch://bucket"):
        remote.push(build(tiny_config())[0], "nosuch://bucket")


def _path(url):
    return fsspec.core.url_to_fs(url)[1]


def test_a_file_that_arrives_altered_fails_the_upload(tiny_config, bucket, monkeypatch):
    from fsspec.implementations.memory import MemoryFileSystem

    put = MemoryFileSystem.put_file

    def altered(self, lpath, rpath, **kw):  # same size, one byte flipped: a size check passes
        put(self, lpath, rpath, **kw)
        data = bytearray(self.cat_file(rpath))
        data[len(data) // 2] ^= 0x01
        self.pipe_file(rpath, bytes(data))

    monkeypatch.setattr(MemoryFileSystem, "put_file", altered)
    with pytest.raises(PipelineError, match="arrived with sha256 .* the manifest says"):
        build(tiny_config(f"output.remote={bucket}"))


def test_a_rewritten_remote_manifest_is_caught_by_the_remote_digest_record(tiny_config, bucket):
    import json

    version, _ = build(tiny_config(f"output.remote={bucket}"))
    manifest = load_manifest(version)
    url = remote.remote_url(bucket, manifest.name, manifest.version_id)
    fs, root = fsspec.core.url_to_fs(url)
    record = f"{_path(bucket)}/{manifest.name}/digests/{manifest.version_id}.sha256"
    assert fs.cat_file(record) == (version.parent / "digests" / f"{manifest.version_id}.sha256").read_bytes()
    raw = json.loads(fs.cat_file(f"{root}/{MANIFEST_FILE}"))
    raw["class_names"] = list(reversed(raw["class_names"]))  # relabels every row
    fs.pipe_file(f"{root}/{MANIFEST_FILE}", (json.dumps(raw, sort_keys=True, indent=2) + "\n").encode())
    assert any(p.startswith(f"{MANIFEST_FILE}: sha256") for p in verify(url))
