"""What changed between two versions, and where one row came from, on typed manifests."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from published_versions import published_versions

from cli.main import main
from pipeline.build import build
from pipeline.core.errors import PipelineError
from pipeline.version import rows
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


def test_diff_shows_an_edited_added_and_removed_source_image(tiny_config, tiny_folder, capsys):
    before, _ = build(tiny_config())
    edited = tiny_folder / "cat" / "img_001.png"
    pixels = np.asarray(Image.open(edited)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(edited)
    (tiny_folder / "dog" / "img_000.png").unlink()
    Image.fromarray(255 - pixels).save(tiny_folder / "eel" / "img_new.png")  # not a duplicate
    after, _ = build(tiny_config())
    changes = rows.diff_versions(before, after)
    source = changes["source"]
    assert source["changed"]
    assert source["edited"] == ["cat/img_001.png"]
    assert source["removed"] == ["dog/img_000.png"]
    assert source["added"] == ["eel/img_new.png"]
    assert changes["config"] == []
    assert main(["diff", str(before), str(after)]) == 0
    out = capsys.readouterr().out
    assert "edited" in out and "cat/img_001.png" in out
    config_change = rows.diff_versions(after, build(tiny_config("augment.copies_per_image=1"))[0])
    assert config_change["config"] == [{"key": "augment.copies_per_image", "a": 2.0, "b": 1.0}]
    assert not config_change["source"]["changed"]


def test_a_synthesis_build_on_another_thread_count_is_another_version(tiny_config, capsys):
    """CPU results depend on torch's thread count: the id holds it, the manifest records
    it, and diff names it as the one difference."""
    import torch

    from conftest import TINY_GAN

    config = tiny_config(*TINY_GAN, "synthesis.gate.enabled=false")
    threads = torch.get_num_threads()
    first, _ = build(config)
    torch.set_num_threads(threads + 1)
    try:
        second, created = build(config)
    finally:
        torch.set_num_threads(threads)
    assert created and second.name != first.name
    changes = rows.diff_versions(first, second)
    assert changes["config"] == [] and changes["counts"] == []
    assert changes["devices"] == [{"key": "cpu_threads", "a": threads, "b": threads + 1}]
    assert main(["diff", str(first), str(second)]) == 0
    assert f"synthesis cpu_threads: {threads} -> {threads + 1}" in capsys.readouterr().out


def test_lineage_traces_rows_to_source_and_run(tiny_config, capsys):
    version, _ = build(tiny_config(), run={"orchestrator": "test", "flow_run_id": "abc"})
    manifest = load_manifest(version)
    assert manifest.run.model_extra["flow_run_id"] == "abc" and manifest.run.host
    git = manifest.run.git
    assert git is None or len(git.commit) == 40
    table = pq.read_table(
        sorted((version / "data").glob("train-*.parquet"))[0], columns=["id", "origin", "source_id"]
    )
    augmented = [r for r in table.to_pylist() if r["origin"] == "augmented"][0]
    assert main(["lineage", str(version), augmented["id"]]) == 0
    traced = json.loads(capsys.readouterr().out)
    assert traced["row"]["source_id"] == augmented["source_id"]
    assert traced["made_by"]["applied"][0][0] == "Affine"
    assert traced["made_by"]["recipe"] == manifest.config["augment"]["transforms"]
    assert traced["run"]["flow_run_id"] == "abc"
    with pytest.raises(PipelineError, match="no row with id"):
        rows.lineage(version, "0" * 16)
