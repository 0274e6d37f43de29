"""pipeline.gan.train: checkpoints carry their config and library versions, and round-trip."""

import json

import numpy as np
import torch

from pipeline.config import GanTrainConfig
from pipeline.gan.train import (
    CHECKPOINT_LIBRARIES,
    GanShape,
    GanTrainer,
    load_checkpoint,
    provenance,
    save_checkpoint,
)
from pipeline.version.manifest import library_versions

SHAPE = GanShape(num_classes=2, channels=1, height=8, width=8)
SETTINGS = GanTrainConfig(batch_size=4, width=8, z_dim=4, device="cpu")
CONFIG = {"seed": 5, "synthesis": {"train": {"width": 8}}}


def trainer(seed: int = 5) -> GanTrainer:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
    return GanTrainer(
        images=images,
        labels=np.arange(12) % 2,
        shape=SHAPE,
        settings=SETTINGS,
        seed=seed,
        config_json=json.dumps(CONFIG, sort_keys=True),
    )


def test_checkpoint_round_trip_keeps_weights_config_and_versions(tmp_path):
    first = trainer()
    first.train(2)
    save_checkpoint(first.state_dict(), tmp_path / "last.pt")
    state = load_checkpoint(tmp_path / "last.pt")
    assert set(CHECKPOINT_LIBRARIES) == {"torch", "torchvision"}
    made = provenance(state)
    assert made["libraries"] == library_versions(CHECKPOINT_LIBRARIES)
    assert made["libraries"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert made["settings"] == SETTINGS.model_dump(mode="json")
    assert made["config"] == CONFIG
    second = trainer(seed=6)  # other initial weights, replaced by the checkpoint's
    second.load_state_dict(state)
    assert second.step == 2
    for name in ("G", "D", "G_ema"):
        saved, loaded = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_checkpoints_saved_before_the_record_still_load(tmp_path):
    state = trainer().state_dict()
    del state["libraries"]
    save_checkpoint(state, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert provenance(loaded)["libraries"] == {}
    resumed = trainer(seed=6)
    resumed.load_state_dict(loaded)
    assert all(torch.equal(v, loaded["G"][k]) for k, v in resumed.G.state_dict().items())
