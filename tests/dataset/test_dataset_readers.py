"""pipeline/dataset.py: the torch readers over a version: every row once, origin filters,
mixing, both formats."""

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.build import build
from pipeline.core.errors import PipelineError
from pipeline.dataset import ExpandedDataset, IterableExpandedDataset
from pipeline.version.manifest import load_manifest


@pytest.fixture
def version(tiny_config):
    # 4-row shards: many row groups to deal out to workers and ranks
    return build(tiny_config("output.shard_size=4"))[0]


def ids_of(loader) -> list[str]:
    return [i for batch in loader for i in batch[2]["id"]]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_iterable_reads_every_row_once_per_epoch(version, workers):
    manifest = load_manifest(version)
    dataset = IterableExpandedDataset(version, "train", return_lineage=True, shuffle=True, seed=1)
    loader = DataLoader(dataset, batch_size=3, num_workers=workers)
    first = ids_of(loader)
    assert len(first) == manifest.splits["train"].rows == len(set(first))
    dataset.set_epoch(1)
    second = ids_of(loader)
    assert sorted(second) == sorted(first) and second != first  # reshuffled, same rows


def test_iterable_splits_rows_over_ranks(version):
    per_rank = [
        {
            item[2]["id"]
            for item in IterableExpandedDataset(version, rank=r, world_size=3, return_lineage=True)
        }
        for r in range(3)
    ]
    assert not (per_rank[0] & per_rank[1]) and not (per_rank[1] & per_rank[2])
    everything = {item[2]["id"] for item in ExpandedDataset(version, return_lineage=True)}
    assert set().union(*per_rank) == everything


@pytest.mark.parametrize("fmt", ["parquet", "imagefolder"])
def test_map_style_reads_both_formats_with_origin_filter(tiny_config, fmt):
    version, _ = build(tiny_config(f"output.format={fmt}"))
    counts = load_manifest(version).splits["train"].by_origin
    dataset = ExpandedDataset(version, "train", origins=("real",))
    assert len(dataset) == counts["real"]
    image, label = dataset[0]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert 0 <= label < 3 and dataset.class_names == ["cat", "dog", "eel"]
    everything = ExpandedDataset(version, "train", transform=lambda im: im.size, return_lineage=True)
    assert len(everything) == sum(counts.values())
    assert Counter(everything[i][2]["origin"] for i in range(len(everything))) == Counter(counts)
    assert everything[0][0] == (8, 8)
    streamed = [label for _, label in IterableExpandedDataset(version, "train", origins=("augmented",))]
    assert len(streamed) == counts["augmented"]
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_origin_shares_and_class_balance(version):
    dataset = ExpandedDataset(version)
    weights = dataset.sample_weights({"real": 3, "augmented": 1})
    real = torch.as_tensor(dataset.origins == "real")
    assert float(weights[real].sum()) == pytest.approx(0.75)
    balanced = dataset.sample_weights(class_balanced=True)
    for label in set(dataset.labels.tolist()):
        assert float(balanced[torch.as_tensor(dataset.labels == label)].sum()) == pytest.approx(1 / 3)
    drawn = list(
        dataset.sampler({"augmented": 1}, num_samples=50, generator=torch.Generator().manual_seed(0))
    )
    assert {dataset.origins[i] for i in drawn} == {"augmented"}
    with pytest.raises(PipelineError, match="leave no row"):
        dataset.sample_weights({"synthetic": 1})


def test_reader_verifies_on_open(version):
    shard = sorted((version / "data").glob("train-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(PipelineError, match="does not verify"):
        ExpandedDataset(version)
    with pytest.raises(PipelineError, match="no split 'validation'"):
        ExpandedDataset(version, "validation", check="none")
    with pytest.raises(PipelineError, match="unknown"):
        ExpandedDataset(version, origins=("fake",), check="none")
