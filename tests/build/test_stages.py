"""The stage list: its order and flags, lookup by name, and what each stage adds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.build import load_config, stages
from pipeline.build.context import dataset_dir, discard, prepare
from pipeline.build.stages import STAGES, Stage, gan_progress_line, plan, stage_named
from pipeline.version.catalog import dataset_lock


def test_stages_run_in_the_documented_order_with_their_flags(tmp_path):
    assert [s.name for s in STAGES] == [
        "tune-augmentation",
        "train-gan",
        "synthesize",
        "plan",
        "write-shard",
        "publish",
        "upload",
    ]
    assert [s.name for s in STAGES if s.per_shard] == ["write-shard"]
    assert [s.name for s in STAGES if s.retried] == ["write-shard", "publish", "upload"]
    assert [s.name for s in STAGES if s.existing] == ["publish", "upload"]
    plain = load_config(None)
    assert [s.name for s in STAGES if s.applies(plain)] == ["plan", "write-shard", "publish"]
    everything = load_config(
        None, ["augment.tune.enabled=true", "synthesis.enabled=true", f"output.remote=file://{tmp_path}/r"]
    )
    assert all(s.applies(everything) for s in STAGES)
    (tmp_path / "g.pt").write_bytes(b"")
    given = load_config(None, ["synthesis.enabled=true", f"synthesis.checkpoint={tmp_path / 'g.pt'}"])
    assert [s.name for s in STAGES if s.applies(given)] == ["synthesize", "plan", "write-shard", "publish"]


def test_a_stage_by_default_runs_always_once_and_not_for_an_existing_version():
    stage = Stage("noop", lambda context, log: context)
    assert stage.applies(load_config(None)) and not (stage.per_shard or stage.retried or stage.existing)
    with pytest.raises(AttributeError):
        stage.name = "other"  # frozen: the list is data, written once


def test_stage_named_finds_each_stage():
    assert all(stage_named(s.name) is s for s in STAGES)
    assert stage_named("plan").run is plan
    with pytest.raises(KeyError):
        stage_named("no-such-stage")


def test_gan_progress_line_gives_losses_rate_and_time_left_or_the_fd():
    settings = load_config(
        None, ["synthesis.train.steps=1000", "synthesis.train.batch_size=50"]
    ).synthesis.train
    metrics = {"step": 200, "d_loss": 1.23456, "g_loss": 0.5, "img_per_s": 500.0}
    assert gan_progress_line(metrics, settings) == (
        "GAN step 200/1000: d_loss 1.235 g_loss 0.500, 500 img/s, about 80 s left"
    )
    assert gan_progress_line({"step": 300, "fd": 12.3456}, settings) == "GAN step 300: classifier FD 12.346"


def test_plan_cuts_the_splits_into_shards(tiny_config):
    config = tiny_config()
    lines = []
    with dataset_lock(dataset_dir(config), purpose="test"):
        context = prepare(config)
        try:
            planned = plan(context, lines.append)
        finally:
            discard(context)
    assert sum(s.rows for s in planned.shards if s.split == "train") == 30  # 10 images, 2 copies each
    assert {s.split for s in planned.shards} == {"train", "test"} and all(s.rows <= 7 for s in planned.shards)
    assert (
        planned.details["augment"]["planned_copies"] == 20
        and planned.details["augment"]["rows_per_shard"] == 7
    )
    assert lines == [f"building {context.version_id}: {len(planned.shards)} shards"]


def test_train_gan_and_synthesize_record_what_their_stage_made(monkeypatch, tiny_config, tmp_path):
    config = tiny_config("synthesis.enabled=true", "synthesis.train.steps=10", "synthesis.train.batch_size=5")
    context = stages.BuildContext(
        config, "d", "v-1", tmp_path / "v-1", tmp_path / "stage", ["a", "b"], shape=(8, 8)
    )
    calls = {}

    def train(config, work_dir, shape, classes, on_metrics):
        calls["train"] = (work_dir, shape, classes)
        on_metrics({"step": 5, "d_loss": 1.0, "g_loss": 2.0, "img_per_s": 10.0})
        return {"checkpoint": work_dir / "gan" / "best.pt"}

    def synthesize(config, work_dir, version_dir, shape, class_names, checkpoint, spread=None):
        calls["synthesize"] = checkpoint
        return {"gate": {"reason": "kept 0.5"}, "published": 3}

    monkeypatch.setattr(stages, "train_gan_stage", train)
    monkeypatch.setattr(stages, "synthesize_stage", synthesize)
    lines = []
    trained = stages.train_gan(context, lines.append)
    assert calls["train"] == (tmp_path / "stage" / "work", (8, 8), 2)
    assert trained.checkpoint == str(tmp_path / "stage" / "work" / "gan" / "best.pt")
    assert lines == ["GAN step 5/10: d_loss 1.000 g_loss 2.000, 10 img/s, about 2 s left"]
    synthesized = stages.synthesize(trained, lines.append)
    assert str(calls["synthesize"]) == trained.checkpoint and synthesized.synthesis["published"] == 3
    assert lines[-1] == "utility gate: kept 0.5"
    given = replace(
        context,
        config=config.model_copy(
            update={"synthesis": config.synthesis.model_copy(update={"checkpoint": tmp_path / "given.pt"})}
        ),
    )
    stages.synthesize(given)
    assert calls["synthesize"] == tmp_path / "given.pt"  # without training: the configured generator
