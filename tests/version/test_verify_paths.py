"""A manifest cannot send a reader, verify or an upload outside the version: its paths and
names are checked against the schema, and a listed file that is a link is refused."""

import json

import pytest

from pipeline.build import build
from pipeline.core.errors import PipelineError
from pipeline.version.manifest import MANIFEST_FILE, load_manifest, verify
from pipeline.version.remote import push


def _rewrite(version, change) -> None:
    raw = json.loads((version / MANIFEST_FILE).read_text())
    change(raw)
    (version / MANIFEST_FILE).write_text(json.dumps(raw))


@pytest.mark.parametrize("path", ["../../../x", "/etc/passwd", "data/../../x"])
def test_a_files_entry_outside_the_version_fails_verify_and_upload(tiny_config, tmp_path, path):
    version, _ = build(tiny_config())
    _rewrite(version, lambda m: m["files"].append({"path": path, "bytes": 1, "sha256": "0" * 64}))
    [problem] = verify(version)
    assert "files" in problem and "not a relative path inside the version" in problem
    with pytest.raises(PipelineError, match="not a relative path inside the version"):
        push(version, f"file://{tmp_path / 'remote'}")
    assert not (tmp_path / "x").exists()


def test_a_manifest_without_files_or_with_a_name_that_climbs_is_a_clear_problem(tiny_config):
    version, _ = build(tiny_config())
    _rewrite(version, lambda m: m.pop("files"))
    assert "files: Field required" in verify(version)[0]
    version2, _ = build(tiny_config("seed=1"))
    _rewrite(version2, lambda m: m.update(name="../../elsewhere"))
    with pytest.raises(PipelineError, match="cannot name a folder"):
        load_manifest(version2)


def test_a_listed_file_that_is_a_link_fails_verify(tiny_config, tmp_path):
    version, _ = build(tiny_config())
    card = version / "README.md"
    copy = tmp_path / "card-copy.md"
    copy.write_bytes(card.read_bytes())
    card.unlink()
    card.symlink_to(copy)  # same bytes, same hash: only the link gives it away
    assert verify(version) == ["README.md: a symbolic link; a version holds regular files only"]
