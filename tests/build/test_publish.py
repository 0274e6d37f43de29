import json
from dataclasses import replace

from conftest import version_rows
from pipeline.build import build
from pipeline.build.publish import publish
from pipeline.version.layout import file_entry
from pipeline.version.manifest import load_manifest


def test_manifest_lists_every_file_with_hashes(tiny_config):
    version, _ = build(tiny_config())
    text = (version / "manifest.json").read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    typed = load_manifest(version)
    assert typed.schema_version == 1 and typed.version_id == version.name
    on_disk = sorted(p for p in version.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert [f.path for f in typed.files] == [p.relative_to(version).as_posix() for p in on_disk]
    for listed, path in zip(typed.files, on_disk, strict=True):
        assert listed.model_dump() == file_entry(version, path)
    assert typed.splits["train"].rows == len(version_rows(version, "train"))
    assert typed.config["augment"]["copies_per_image"] == 2
    assert typed.class_names == ["cat", "dog", "eel"]
    assert typed.libraries["albumentations"].startswith("2.0")
    assert typed.source.split_carved is True
    assert {"classes.png", "grid.png", "croissant.json", "README.md"} <= {f.path for f in typed.files}


def test_upload_pushes_the_published_version_to_the_remote(tiny_config, tmp_path):
    from pipeline.build.publish import upload
    from pipeline.build.runner import InProcess, run_stages

    remote = f"file://{tmp_path / 'bucket'}"
    context = run_stages(tiny_config(), InProcess())
    output = context.config.output.model_copy(update={"remote": remote})
    upload(replace(context, config=context.config.model_copy(update={"output": output})))
    copied = tmp_path / "bucket" / context.name / context.version_id
    assert load_manifest(copied).version_id == context.version_id
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name for p in context.final_dir.iterdir())
    assert context.final_dir.is_dir()  # the local version stays


def test_publishing_again_after_the_rename_only_moves_latest(tiny_config):
    """A retried publish (the first attempt renamed the version, then failed) succeeds."""
    from pipeline.build.context import prepare
    from pipeline.build.runner import InProcess
    from pipeline.build.stages import plan, stage_named
    from pipeline.version.catalog import LATEST

    context = InProcess().shards(stage_named("write-shard"), plan(prepare(tiny_config())))
    version = publish(context)
    (version.parent / LATEST).unlink()  # as if the first attempt failed before `latest` moved
    assert publish(context) == version  # the retry: no staging left, nothing rebuilt
    assert (version.parent / LATEST).resolve() == version.resolve()
    assert load_manifest(version).version_id == context.version_id
