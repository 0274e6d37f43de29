from pathlib import Path

from pipeline.build import build


def test_version_id_is_content_derived(tiny_config, tmp_path):
    first, created = build(tiny_config())
    again, created_again = build(tiny_config())
    assert first == again and created and not created_again
    other_seed, _ = build(tiny_config("seed=1"))
    assert other_seed.name != first.name
    elsewhere, _ = build(tiny_config(f"output.root={tmp_path / 'elsewhere'}"))
    assert elsewhere.name == first.name
    (Path(tiny_config().source.path) / "cat" / "img_000.png").unlink()
    edited, _ = build(tiny_config())
    assert edited.name != first.name


def test_prepare_stages_a_new_version_and_discard_removes_it(tiny_config):
    from pipeline.build.context import BuildContext, dataset_dir, discard, prepare
    from pipeline.version.catalog import dataset_lock

    config = tiny_config()
    with dataset_lock(dataset_dir(config), purpose="test"):
        context = prepare(config)
        assert isinstance(context, BuildContext) and not context.existing
        assert context.class_names == ["cat", "dog", "eel"] and context.shape == (8, 8, 3)
        assert context.work_dir == context.staging_dir / "work" and context.version_dir.is_dir()
        assert (
            context.final_dir == dataset_dir(config) / context.version_id and not context.final_dir.exists()
        )
        discard(context)
        assert not context.staging_dir.exists()
    version, _ = build(config)
    with dataset_lock(dataset_dir(config), purpose="test"):
        existing = prepare(config)
    assert existing.existing and existing.staging_dir is None and existing.final_dir == version
    discard(existing)  # nothing staged: nothing removed
    assert version.is_dir()


def test_release_arrow_memory_trims_arrows_pool(monkeypatch):
    import pyarrow as pa

    from pipeline.build import context

    released = []

    class Pool:
        def release_unused(self):
            released.append(True)

    monkeypatch.setattr(pa, "default_memory_pool", lambda: Pool())
    context.release_arrow_memory()
    assert released == [True]
