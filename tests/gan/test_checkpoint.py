"""pipeline.gan.checkpoint: a checkpoint records which images it trained on, and one that
saw the utility gate's validation images is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_GAN, tiny_gan_trainer
from pipeline.build import load_config
from pipeline.core.errors import PipelineError
from pipeline.gan import synthesis
from pipeline.gan.checkpoint import GanShape, check_held_out, id_digests, load_checkpoint


def test_a_checkpoint_records_digests_of_its_training_images():
    trainer = tiny_gan_trainer()
    assert trainer.state_dict()["trained_on"] is None  # made without a record
    digests = id_digests(["b/1.png", "a/2.png"])
    assert digests == sorted(digests) and all(len(d) == 16 for d in digests)
    assert "a/2.png" not in json.dumps(digests)  # file names stay out of the checkpoint


def test_check_held_out_refuses_an_overlap_or_no_record():
    state = {"trained_on": json.dumps(id_digests(["a", "b"]))}
    check_held_out(state, ["c", "d"], "g.pt")  # disjoint: fine
    check_held_out({"trained_on": None}, [], "g.pt")  # nothing held out (gate off): fine
    with pytest.raises(PipelineError, match="g.pt: the checkpoint trained on 1 of the 2 images"):
        check_held_out(state, ["b", "c"], "g.pt")
    with pytest.raises(PipelineError, match="does not record which images it trained on"):
        check_held_out({"trained_on": None}, ["c"], "g.pt")


def test_a_generator_trained_on_the_gates_validation_images_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    train = synthesis.RealData(
        rng.integers(0, 256, (24, 8, 8), np.uint8), np.arange(24) % 3, [f"t{k}" for k in range(24)]
    )
    shape = GanShape(3, 1, 8, 8)
    # Trained with the gate off: on every training image, the gate's validation part included.
    everything = load_config(None, [*TINY_GAN, "synthesis.gate.enabled=false"])
    summary = synthesis.train_gan(everything, train, shape, tmp_path / "all")
    state = load_checkpoint(Path(summary["checkpoint"]))
    trained_on = synthesis.selection_split(everything, train)[0].ids  # less the checkpoint choice's images
    assert json.loads(state["trained_on"]) == id_digests(trained_on) and len(trained_on) == 21
    gated = load_config(None, TINY_GAN)
    with pytest.raises(PipelineError, match="trained on .* of the .* images the utility gate validates on"):
        synthesis.synthesize(gated, train, None, shape, Path(summary["checkpoint"]), ["a", "b", "c"])
    # Trained as the build trains it, on the fit part only: accepted.
    fit_mask, validation_mask = synthesis.fit_validation_masks(train, gated)
    held_out = synthesis.train_gan(gated, train.subset(fit_mask), shape, tmp_path / "fit")
    fit_state = load_checkpoint(Path(held_out["checkpoint"]))
    check_held_out(fit_state, [i for i, v in zip(train.ids, validation_mask, strict=True) if v], "fit")
    result = synthesis.synthesize(gated, train, None, shape, Path(held_out["checkpoint"]), ["a", "b", "c"])
    assert "gate" in result["report"]


def test_resuming_a_checkpoint_without_a_record_keeps_no_record(tmp_path):
    from conftest import tiny_gan_data
    from pipeline.gan.checkpoint import save_checkpoint
    from pipeline.gan.train import GanTrainer

    old = tiny_gan_trainer()  # made without a record, as before records existed
    save_checkpoint(old.state_dict(), tmp_path / "old.pt")
    images, labels = tiny_gan_data()
    resumed = GanTrainer(
        images=images, labels=labels, shape=old.shape, settings=old.settings, seed=0, trained_on=["a", "b"]
    )
    assert resumed.trained_on == id_digests(["a", "b"])
    resumed.load_state_dict(load_checkpoint(tmp_path / "old.pt"))
    assert resumed.trained_on is None  # what the old training saw is unknown
    with pytest.raises(PipelineError, match="does not record"):
        check_held_out(resumed.state_dict(), ["c"], "resumed.pt")
