"""The manifest's helpers: library versions, the content-derived id, the run record, split
counts from shard entries, soft labels."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from published_versions import published_versions

from conftest import raw_manifest
from pipeline.version.manifest import (
    CONTENT_LIBRARIES,
    git_revision,
    has_soft_labels,
    library_versions,
    load_manifest,
    run_info,
    summarise_counts,
    utcnow,
    version_id,
)


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    return published_versions(tmp_path_factory)


def test_library_versions_name_missing_packages():
    found = library_versions(("numpy", "surely-not-a-package-xyz"))
    assert found["numpy"][0].isdigit() and found["surely-not-a-package-xyz"] == "not installed"


def test_version_id_depends_on_content_only():
    config = {"augment": {"copies_per_image": 2}}
    one = version_id(config, "digits", "f" * 64)
    assert one == version_id(dict(config), "digits", "f" * 64) and one.startswith("v-") and len(one) == 18
    assert one != version_id({"augment": {"copies_per_image": 3}}, "digits", "f" * 64)
    assert one != version_id(config, "digits", "e" * 64)
    assert one != version_id(config, "digits", "f" * 64, checkpoint_sha256="a" * 64)
    assert set(CONTENT_LIBRARIES) >= {"numpy", "pyarrow"}


def test_run_info_records_time_host_code_and_extra():
    info = run_info("2024-01-01T00:00:00+00:00", {"flow_run_id": "abc"})
    assert info["started"] == "2024-01-01T00:00:00+00:00" and info["flow_run_id"] == "abc"
    assert {"finished", "host", "python", "code_version", "git"} <= set(info)


def test_git_revision_is_a_commit_or_none():
    revision = git_revision()
    assert revision is None or (len(revision["commit"]) == 40 and isinstance(revision["dirty"], bool))


def test_utcnow_is_timezone_aware():
    assert utcnow().utcoffset() == timedelta(0)


def test_summarise_counts_adds_shards_per_split_origin_and_class():
    entries = [
        {"split": "train", "rows": 3, "counts": {"real": {"a": 1, "b": 1}, "augmented": {"a": 1}}},
        {"split": "train", "rows": 2, "counts": {"augmented": {"a": 1, "b": 1}}},
        {"split": "test", "rows": 1, "counts": {"real": {"b": 1}}},
    ]
    splits = summarise_counts(entries)
    assert splits["train"] == {
        "rows": 5,
        "by_origin": {"real": 2, "augmented": 3},
        "by_origin_class": {"real": {"a": 1, "b": 1}, "augmented": {"a": 2, "b": 1}},
    }
    assert splits["test"]["rows"] == 1


def test_has_soft_labels_reads_models_and_dicts(published):
    for kind, soft in (("tuned", False), ("synthesis", True)):
        assert has_soft_labels(load_manifest(published[kind])) is soft
        assert has_soft_labels(raw_manifest(published[kind])) is soft


def test_a_digest_record_is_what_sha256sum_checks(tmp_path):
    import hashlib
    import shutil
    import subprocess

    from pipeline.version.manifest import DIGESTS_DIR, digest_line, digest_record

    version = tmp_path / "v-0123456789abcdef"
    version.mkdir()
    (version / "manifest.json").write_text("{}\n")
    record = Path(digest_record(str(tmp_path), version.name))
    assert record == tmp_path / DIGESTS_DIR / f"{version.name}.sha256"
    record.parent.mkdir()
    digest = hashlib.sha256(b"{}\n").hexdigest()
    record.write_text(digest_line(version.name, digest))
    assert record.read_text() == f"{digest}  {version.name}/manifest.json\n"
    if shutil.which("sha256sum"):  # coreutils' own check agrees
        check = subprocess.run(["sha256sum", "-c", str(record)], cwd=tmp_path, capture_output=True, text=True)
        assert check.returncode == 0 and "manifest.json: OK" in check.stdout
