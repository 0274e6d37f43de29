"""flows/expand.py: the expand flow end to end on small data: shard tasks, retries, uploads,
logs and artifacts."""

import json
import os
from pathlib import Path

from cli.main import main
from conftest import TINY_TUNE, LogLines
from pipeline.build import build, load_config
from pipeline.core.progress import (
    ProgressLog,
)
from pipeline.version.manifest import load_manifest, verify


def test_flow_publishes_then_reuses(prefect_harness, tiny_config, tmp_path):
    from flows.expand import expand_for

    config = tiny_config()
    overrides = [
        f"{k}={v}"
        for k, v in (
            ("source.kind", "imagefolder"),
            ("source.path", config.source.path),
            ("output.root", tmp_path / "flow-out"),
            ("augment.copies_per_image", 1),
            ("output.shard_size", 4),
            ("runner.workers", 2),  # a pool of worker processes
        )
    ]
    expand = expand_for(load_config(None, overrides))
    first = expand(config_path=None, overrides=overrides)
    assert first["created"] is True
    manifest = load_manifest(first["version_dir"])
    assert len(manifest.shards) > 2  # several shard tasks ran
    assert first["splits"]["train"]["augmented"] == first["splits"]["train"]["real"]
    second = expand(config_path=None, overrides=overrides)
    assert second["created"] is False and second["version_dir"] == first["version_dir"]
    assert manifest.run.orchestrator == "prefect" and manifest.run.flow_run_id
    version = Path(first["version_dir"])
    assert os.readlink(version.parent / "latest") == version.name
    # Shard tasks in worker processes under Prefect, or one worker in-process: same bytes.
    alone, _ = build(load_config(None, [*overrides, f"output.root={tmp_path / 'alone'}", "runner.workers=1"]))
    assert alone.name == version.name
    assert {f.path: f.sha256 for f in load_manifest(alone).files} == {
        f.path: f.sha256 for f in manifest.files
    }


def test_a_transient_write_error_is_retried(prefect_harness, tiny_config, tmp_path, monkeypatch):
    from flows.expand import expand_for
    from pipeline.build import write as build_module

    real_encode = build_module.encode_image
    flaky, _ = _failing_once(real_encode, 3, "Input/output error (transient)")
    monkeypatch.setattr(build_module, "encode_image", flaky)
    config = tiny_config(f"output.root={tmp_path / 'flaky'}")
    result = expand_for(config)(config_path=None, overrides=_overrides_of(config))
    assert result["created"] and verify(Path(result["version_dir"])) == []
    monkeypatch.setattr(build_module, "encode_image", real_encode)
    reference, _ = build(tiny_config(f"output.root={tmp_path / 'ref'}"))
    assert reference.name == Path(result["version_dir"]).name


def test_the_flow_uploads_to_remote_storage_and_retries_a_failed_upload(
    prefect_harness, tiny_config, tmp_path, monkeypatch
):
    import fsspec

    from flows.expand import expand_for
    from pipeline.version import remote

    flaky, calls = _failing_once(remote._upload, 2, "connection reset (transient)")
    monkeypatch.setattr(remote, "_upload", flaky)
    bucket = f"memory://flow-{tmp_path.name}"
    config = tiny_config(f"output.root={tmp_path / 'up'}", f"output.remote={bucket}")
    try:
        overrides = [*_overrides_of(config), f"output.remote={bucket}"]
        result = expand_for(config)(config_path=None, overrides=overrides)
        assert result["remote"] == f"{bucket}/src/{result['version_id']}" and calls["n"] > 2
        assert verify(result["remote"]) == [] and verify(Path(result["version_dir"])) == []
    finally:
        fsspec.filesystem("memory").rm(f"/flow-{tmp_path.name}", recursive=True)


def _failing_once(real, at: int, message: str):
    """``real`` wrapped to raise OSError(message) on call number ``at``; and the call count."""
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise OSError(message)
        return real(*args, **kwargs)

    return flaky, calls


def _overrides_of(config) -> list[str]:
    import json

    return [
        "source.kind=imagefolder",
        f"source.path={config.source.path}",
        f"output.root={config.output.root}",
        f"augment.copies_per_image={config.augment.copies_per_image}",
        f"augment.transforms={json.dumps(config.augment.transforms)}",
        f"output.shard_size={config.output.shard_size}",
        f"split.test_fraction={config.split.test_fraction}",
        "runner.workers=1",
    ]


def test_a_run_that_will_not_fit_is_warned_before_it_writes(
    prefect_harness, tiny_config, tmp_path, monkeypatch
):
    import logging

    from flows.expand import expand_for
    from pipeline.ingest import space
    from pipeline.ingest import stage as ingest

    monkeypatch.setattr(space, "_free", lambda where: 8192)
    monkeypatch.setattr(ingest, "check_staging_room", lambda *args, **kwargs: None)  # not this test's
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("prefect").addHandler(handler)
    try:
        config = tiny_config(f"output.root={tmp_path / 'w'}")
        result = expand_for(config)(config_path=None, overrides=_overrides_of(config))
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    assert result["created"]  # a warning, not a refusal: the estimate may be wrong
    [warning] = [w for w in warnings if "may run out of space" in w]
    assert warning.startswith(
        f"output.root {tmp_path / 'w'} may run out of space: this version needs about 1.1 MB"
    )
    assert warning.endswith("and 0.0 MB was free after ingest")


def test_the_expand_flow_logs_the_long_stages(prefect_harness, tiny_config, tmp_path, monkeypatch):
    logger = LogLines()
    monkeypatch.setattr("flows.expand.ProgressLog", lambda _, **kw: ProgressLog(logger, **{**kw, "every": 0}))
    source = tiny_config().source.path
    args = ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
    assert main([*args, "--set", f"output.root={tmp_path / 'o'}", "--quiet", "--flow"]) == 0
    assert any(line.startswith("ingest, 15/15 images") for line in logger.lines)
    assert not any(line.startswith(("writing", "GAN")) for line in logger.lines)  # logged by the flow


def test_the_flow_tunes_and_reports_the_choice(prefect_harness, tiny_config, tmp_path, capsys):
    from cli.main import main

    source = tiny_config().source.path
    args = ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
    args += ["--set", f"output.root={tmp_path / 'o'}", "--set", "augment.copies_per_image=1"]
    args += [a for s in TINY_TUNE for a in ("--set", s)]
    assert main([*args, "--json", "--flow"]) == 0  # artifacts come from a flow run
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = load_manifest(result["version_dir"])
    assert result["tune"] == {"chosen": manifest.tune.chosen, "reason": manifest.tune.reason}
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        [artifact, *_] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["src-tune"]))
        )
    table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert [row["candidate"] for row in table] == [c.name for c in manifest.tune.candidates]
    assert sum(row["chosen"] for row in table) == 1
    with get_client(sync_client=True) as client:
        [summary] = client.read_artifacts(  # the newest: other tests publish 'src' versions too
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["src-summary"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert "## Augmentation tuning" in summary.data and "tune.png" in summary.data
