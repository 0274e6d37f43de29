"""The typed manifest: every manifest the builder publishes fits the model and the shipped
JSON Schema, reads and writes back byte for byte, and bad ones fail with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from published_versions import published_versions

from conftest import raw_manifest
from pipeline.core.errors import PipelineError
from pipeline.version.manifest import MANIFEST_FILE, load_manifest, verify, write_manifest
from pipeline.version.model import SCHEMA_VERSION, Manifest, TuneSummary, as_manifest, as_tune_summary
from pipeline.version.schema import manifest_schema, schema_text

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "manifest.schema.json"
KINDS = ("digits", "tuned", "synthesis")


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    return published_versions(tmp_path_factory)


def test_the_shipped_schema_is_current():
    stale = "stale: run python -m pipeline.version.schema > docs/manifest.schema.json"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), stale


def _validate_with_schema(raw: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(raw)


@pytest.mark.parametrize("kind", KINDS)
def test_published_manifests_fit_the_shipped_schema_and_the_model(published, kind):
    raw = raw_manifest(published[kind])
    _validate_with_schema(raw)
    manifest = load_manifest(published[kind])
    assert manifest.schema_version == SCHEMA_VERSION
    assert (manifest.tune is not None) == (kind == "tuned")
    assert (manifest.synthesis is not None) == (kind == "synthesis")


@pytest.mark.parametrize("kind", KINDS)
def test_a_manifest_round_trips_byte_for_byte(published, kind, tmp_path):
    original = (published[kind] / MANIFEST_FILE).read_text(encoding="utf-8")
    manifest = load_manifest(published[kind])
    assert manifest.as_json() == json.loads(original)
    write_manifest(tmp_path, manifest)
    assert (tmp_path / MANIFEST_FILE).read_text(encoding="utf-8") == original


def test_typed_sections_read_as_attributes(published):
    tuned, synthesis = load_manifest(published["tuned"]), load_manifest(published["synthesis"])
    assert tuned.splits["train"].rows == sum(s.rows for s in tuned.shards if s.split == "train")
    assert tuned.tune.chosen in {c.name for c in tuned.tune.candidates}
    assert synthesis.synthesis.gate is not None and synthesis.synthesis.gate.reason
    assert synthesis.synthesis.devices.sampling_and_classifiers == "cpu"
    assert synthesis.synthesis.files.grid == "samples.png"
    assert synthesis.augment.mixed is not None and synthesis.soft_labels
    assert not tuned.soft_labels and tuned.augment.mixed is None


def test_write_manifest_takes_the_builders_dict_without_schema_version(published, tmp_path):
    raw = raw_manifest(published["digits"])
    del raw["schema_version"]
    write_manifest(tmp_path, raw)
    assert (tmp_path / MANIFEST_FILE).read_bytes() == (published["digits"] / MANIFEST_FILE).read_bytes()


def test_write_manifest_refuses_a_dict_that_does_not_fit(published, tmp_path):
    raw = raw_manifest(published["digits"])
    raw["splits"]["train"]["rows"] = "many"
    with pytest.raises(PipelineError, match=r"splits\.train\.rows"):
        write_manifest(tmp_path, raw)
    assert not (tmp_path / MANIFEST_FILE).exists()


def _copy_with(published: Path, tmp_path: Path, change) -> Path:
    raw = raw_manifest(published)
    change(raw)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(raw), encoding="utf-8")
    return tmp_path


def test_unknown_top_level_keys_are_refused(published, tmp_path):
    version = _copy_with(published["digits"], tmp_path, lambda m: m.update(extra_section={}))
    with pytest.raises(PipelineError) as failure:
        load_manifest(version)
    message = str(failure.value)
    assert str(version) in message and "schema_version 1" in message and "extra_section" in message
    assert "validation error" not in message.lower()  # no pydantic report
    jsonschema = pytest.importorskip("jsonschema")
    with pytest.raises(jsonschema.ValidationError):
        _validate_with_schema(raw_manifest(version))


def test_a_missing_key_is_named(published, tmp_path):
    version = _copy_with(published["digits"], tmp_path, lambda m: m["source"].pop("fingerprint"))
    with pytest.raises(PipelineError, match=r"source\.fingerprint"):
        load_manifest(version)


@pytest.mark.parametrize("found", [2, None, "1"])
def test_an_unsupported_schema_version_is_refused(published, tmp_path, found):
    version = _copy_with(published["digits"], tmp_path, lambda m: m.update(schema_version=found))
    with pytest.raises(PipelineError, match=rf"{tmp_path}.*schema_version {found!r}; this code reads 1"):
        load_manifest(version)


def test_no_manifest_is_a_pipeline_error(tmp_path):
    with pytest.raises(PipelineError, match="no readable manifest.json"):
        load_manifest(tmp_path)


def test_an_old_manifest_without_newer_keys_loads_with_defaults(published, tmp_path):
    def make_old(m):
        m["image"].pop("format")
        m["run"].pop("git")
        m["augment"].pop("resampled")
        for key in ("license", "citation", "skipped", "ignored_files", "duplicates"):
            m["source"].pop(key)

    version = _copy_with(published["digits"], tmp_path, make_old)
    manifest = load_manifest(version)
    assert manifest.image.format == "png" and manifest.run.git is None
    assert manifest.source.skipped == [] and manifest.source.duplicates.groups == 0
    assert "format" not in manifest.as_json()["image"]  # written back as it was


def test_verify_reports_a_manifest_that_does_not_fit(published, tmp_path):
    version = _copy_with(published["digits"], tmp_path, lambda m: m.update(schema_version=9))
    problems = verify(version)
    assert len(problems) == 1 and "schema_version 9" in problems[0]


def test_as_manifest_and_as_tune_summary_take_models_or_dicts(published):
    manifest = load_manifest(published["tuned"])
    assert as_manifest(manifest) is manifest
    builder_dict = {k: v for k, v in manifest.as_json().items() if k != "schema_version"}
    assert as_manifest(builder_dict) == manifest
    assert as_tune_summary(manifest.tune) is manifest.tune
    assert as_tune_summary(manifest.tune.model_dump()) == manifest.tune
    assert isinstance(manifest.tune, TuneSummary)


def test_the_schema_comes_from_the_model():
    schema = manifest_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(Manifest.model_fields)
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def test_config_soft_labels_from_mixing_or_synthesis():
    from pipeline.version.model import config_soft_labels

    assert not config_soft_labels({"augment": {}, "synthesis": {"enabled": True}})
    assert config_soft_labels({"augment": {"mix": {"method": "mixup"}}})
    assert config_soft_labels({"augment": {}, "synthesis": {"enabled": True, "soft_labels": True}})
    assert not config_soft_labels({"augment": {}, "synthesis": {"enabled": False, "soft_labels": True}})


def test_config_row_weights_only_with_synthesis_and_a_weight_below_one():
    from pipeline.version.model import config_row_weights

    assert not config_row_weights({"augment": {}})  # no synthesis section
    assert not config_row_weights({"synthesis": {"enabled": True}})  # a version from before the key
    assert not config_row_weights({"synthesis": {"enabled": True, "weight": 1.0}})
    assert config_row_weights({"synthesis": {"enabled": True, "weight": 0.5}})
    assert not config_row_weights({"synthesis": {"enabled": False, "weight": 0.5}})
