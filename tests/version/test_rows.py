"""What changed between two versions, and where one row came from, on typed manifests."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from published_versions import published_versions

from pipeline.core.errors import PipelineError
from pipeline.version.manifest import load_manifest
from pipeline.version.rows import diff_versions, lineage


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    return published_versions(tmp_path_factory)


def test_diff_of_a_version_with_itself_is_empty(published):
    changes = diff_versions(published["tuned"], published["tuned"])
    assert changes["source"]["changed"] is False
    assert changes["counts"] == changes["config"] == changes["libraries"] == changes["devices"] == []


def test_diff_names_config_counts_and_synthesis_devices(published):
    changes = diff_versions(published["tuned"], published["synthesis"])
    assert changes["a"] == published["tuned"].name and changes["b"] == published["synthesis"].name
    keys = {c["key"] for c in changes["config"]}
    assert {"synthesis.enabled", "augment.mix.method"} <= keys
    assert {c["key"] for c in changes["devices"]} >= {"sampling_and_classifiers"}
    assert changes["source"]["changed"] is False  # the same source folder


def test_lineage_of_a_real_and_an_augmented_row(published):
    version = published["tuned"]
    manifest = load_manifest(version)
    shard = next(s for s in manifest.shards if s.split == "train")
    rows = pq.read_table(version / "data" / f"{shard.shard}.parquet", columns=["id", "origin"]).to_pylist()
    for origin in {r["origin"] for r in rows}:
        row = next(r for r in rows if r["origin"] == origin)
        found = lineage(version, row["id"])
        assert found["version_id"] == manifest.version_id and found["split"] == "train"
        assert found["source"]["fingerprint"] == manifest.source.fingerprint
        assert found["run"]["host"] == manifest.run.host
        assert found["made_by"]["source_id"] == found["row"]["source_id"]
    with pytest.raises(PipelineError, match="no row with id"):
        lineage(version, "0" * 16)
