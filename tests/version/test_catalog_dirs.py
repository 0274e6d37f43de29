"""Finding versions on disk, refs, staging leftovers, one version's catalog line."""

from __future__ import annotations

import shutil

import pytest
from published_versions import published_versions

from pipeline.core.errors import PipelineError
from pipeline.version import catalog
from pipeline.version.manifest import MANIFEST_FILE, load_manifest


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    return published_versions(tmp_path_factory)


@pytest.fixture
def dataset(published, tmp_path):
    """A copy of the tuned version's dataset directory (so refs can change freely)."""
    copy = tmp_path / "tuned"
    shutil.copytree(published["tuned"].parent, copy, symlinks=True)
    return copy


def test_versions_are_found_and_half_versions_are_not(dataset):
    version = next(p for p in dataset.iterdir() if p.name.startswith("v-"))
    (dataset / "v-unfinished").mkdir()  # no manifest: never a version
    assert catalog.is_version(version) and not catalog.is_version(dataset / "v-unfinished")
    assert not catalog.is_version(dataset / catalog.LATEST)  # a symlink
    assert catalog.version_dirs(dataset) == [version]
    assert catalog.dataset_dirs(dataset.parent) == [dataset] and catalog.dataset_dirs(dataset) == [dataset]
    with pytest.raises(PipelineError, match="no such directory"):
        catalog.dataset_dirs(dataset / "missing")


def test_resolve_version_follows_latest_and_refuses_other_folders(dataset):
    version = catalog.version_dirs(dataset)[0]
    assert catalog.resolve_version(dataset / catalog.LATEST) == version.resolve()
    with pytest.raises(PipelineError, match="not a dataset version"):
        catalog.resolve_version(dataset)


def test_set_latest_and_refs(dataset):
    version = catalog.version_dirs(dataset)[0]
    catalog.set_latest(dataset, "v-elsewhere")
    assert catalog.refs(dataset) == ("v-elsewhere", {})
    catalog.set_latest(dataset, version.name)
    catalog.tag_version(version, "golden")
    assert catalog.refs(dataset) == (version.name, {"golden": version.name})


def test_remove_stale_staging_lists_then_removes(dataset):
    stale = dataset / f"{catalog.STAGING_PREFIX}crashed"
    stale.mkdir()
    assert catalog.remove_stale_staging(dataset, dry_run=True) == [stale] and stale.is_dir()
    assert catalog.remove_stale_staging(dataset) == [stale] and not stale.exists()


def test_summarize_reads_the_typed_manifest(dataset):
    version = catalog.version_dirs(dataset)[0]
    manifest = load_manifest(version)
    summary = catalog.summarize(version, version.name, {"golden": version.name, "old": "v-other"})
    assert isinstance(summary, catalog.VersionSummary)
    assert summary.version_id == manifest.version_id and summary.latest and summary.tags == ["golden"]
    assert summary.rows == {s: dict(info.by_origin) for s, info in sorted(manifest.splits.items())}
    listed = sum(f.bytes for f in manifest.files)
    assert summary.bytes == listed + (version / MANIFEST_FILE).stat().st_size
    assert summary.as_dict()["source"] == "imagefolder"
