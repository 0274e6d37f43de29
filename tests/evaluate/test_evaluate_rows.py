"""pipeline.evaluate.rows: a version's split as arrays."""

import numpy as np
import pytest

from pipeline.build import build
from pipeline.core.errors import PipelineError
from pipeline.evaluate import rows as rows_module
from pipeline.evaluate.rows import VersionRows, load_rows
from pipeline.version.manifest import load_manifest


def test_load_rows_gives_every_row_with_its_lineage(tiny_config):
    version, _ = build(tiny_config())
    manifest = load_manifest(version)
    train = load_rows(version, "train")
    assert isinstance(train, VersionRows)
    assert len(train.images) == len(train.labels) == len(train.origins) == manifest.splits["train"].rows
    assert set(train.origins) == {"real", "augmented"}
    # an augmented row names the real image it was made from
    made_from = set(train.source_ids[train.origins == "augmented"])
    assert made_from <= set(train.source_ids[train.origins == "real"])
    assert train.soft_labels is None and train.weights is None
    test = load_rows(version, "test")
    assert set(test.origins) == {"real"} and len(test.images) == manifest.splits["test"].rows


def test_a_split_without_rows_is_named(tiny_config, monkeypatch):
    version, _ = build(tiny_config())

    class Empty:
        labels = np.zeros(0, np.int64)

        def __init__(self, *args, **kwargs):
            pass

        def __len__(self):
            return 0

    monkeypatch.setattr(rows_module, "ExpandedDataset", Empty)
    with pytest.raises(PipelineError, match="the test split has no rows"):
        load_rows(version, "test")
