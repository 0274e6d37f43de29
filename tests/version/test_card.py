"""pipeline.version.card: the dataset card's header is what the datasets library reads."""

import pytest
import yaml

from pipeline.build import build
from pipeline.version.manifest import load_manifest


def test_dataset_card_loads_with_datasets(tiny_config):
    datasets = pytest.importorskip("datasets")
    version, _ = build(tiny_config())
    card = (version / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    manifest = load_manifest(version)
    shard_bytes = sum(f.bytes for f in manifest.files if f.path.startswith("data/train-"))
    assert {
        "name": "train",
        "num_bytes": shard_bytes,
        "num_examples": manifest.splits["train"].rows,
    } in (header["dataset_info"]["splits"])
    loaded = datasets.load_dataset(str(version))
    assert {s: loaded[s].num_rows for s in loaded} == {s: i.rows for s, i in manifest.splits.items()}
    assert loaded["train"].features["label"].names == ["cat", "dog", "eel"]


def test_the_card_speaks_of_distilled_synthetic_rows_only_when_synthesis_made_them(tiny_config):
    """augment.mix gives every row a soft label; synthesis.soft_labels set while synthesis
    is off makes no synthetic row, so the card must not describe any."""
    version, _ = build(tiny_config("augment.mix.method=mixup", "synthesis.soft_labels=true"))
    card = (version / "README.md").read_text()
    assert "Every row has a `soft_label` column" in card
    assert "Soft labels: every synthetic row" not in card
