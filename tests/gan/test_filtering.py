"""pipeline.gan.filtering: candidates in chunks, in this process or on other processes
from the files a worker loads, with the same rows either way."""

import numpy as np
import pytest
import torch

from pipeline.config import Config
from pipeline.evaluate.classifier import ClassifierSpec, new_classifier
from pipeline.gan.checkpoint import GanShape, save_checkpoint
from pipeline.gan.filtering import (
    CHUNK,
    Sampler,
    SamplerFiles,
    candidates_on_worker,
    chunks,
    sample_until_filled,
    sampling_trainer,
)
from pipeline.gan.train import GanTrainer

SHAPE = GanShape(4, 1, 8, 8)
CONFIG = Config.model_validate(
    {
        "seed": 5,
        "synthesis": {
            "enabled": True,
            "device": "cpu",
            "train": {"width": 8, "z_dim": 8, "device": "cpu"},
            "filter": {"min_confidence": 0.2, "max_oversample": 3},
        },
    }
)


def test_chunks_cut_a_round_in_class_order_into_runs_of_at_most_chunk():
    runs = chunks({0: 700, 1: 900, 2: 5}, {0: 0, 1: 40, 2: 3})
    assert runs == [
        ((0, 0, 700), (1, 40, 324)),
        ((1, 364, 576), (2, 3, 5)),
    ]
    assert all(sum(n for _, _, n in chunk) <= CHUNK for chunk in runs)
    assert chunks({0: CHUNK}, {0: 0}) == [((0, 0, CHUNK),)]
    assert chunks({0: 0}, {0: 0}) == []


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A checkpoint of an untrained GAN and a reference classifier's weights, on disk."""
    folder = tmp_path_factory.mktemp("sampler")
    trainer = GanTrainer(
        images=np.zeros((8, 8, 8), np.uint8),
        labels=np.arange(8) % 4,
        shape=SHAPE,
        settings=CONFIG.synthesis.train,
        seed=CONFIG.seed,
    )
    save_checkpoint(trainer.state_dict(), folder / "best.pt")
    spec = ClassifierSpec(epochs=1)
    with torch.random.fork_rng(devices=[]):
        torch.save(new_classifier((1, 8, 8), 4, spec).state_dict(), folder / "reference.pt")
    threads = torch.get_num_threads()
    return SamplerFiles(CONFIG, SHAPE, folder / "best.pt", folder / "reference.pt", spec, threads)


def test_a_sampler_loads_from_its_files_the_weights_it_was_given(files):
    sampler = Sampler.load(files)
    saved = torch.load(files.reference, weights_only=True)
    assert all(torch.equal(v, sampler.reference.state_dict()[k]) for k, v in saved.items())
    trainer = sampling_trainer(CONFIG, SHAPE, torch.load(files.checkpoint, weights_only=False), "best.pt")
    assert all(
        torch.equal(v, trainer.G_ema.state_dict()[k]) for k, v in sampler.trainer.G_ema.state_dict().items()
    )


def test_a_worker_writes_the_images_and_returns_the_same_scores(files, tmp_path):
    runs = ((0, 0, 3), (2, 10, 2))
    here = Sampler.load(files).candidates(runs)
    there = candidates_on_worker(files, runs, tmp_path / "part.npy")
    assert str(there.pop("images")) == str(tmp_path / "part.npy")
    assert np.array_equal(np.load(tmp_path / "part.npy"), here.pop("images"))
    assert not list(tmp_path.glob("*.partial*"))
    assert here.keys() == there.keys()
    assert all(np.array_equal(here[k], there[k]) for k in here)
    assert here["labels"].tolist() == [0, 0, 0, 2, 2]


def _same_pools(a, b):
    (pool_a, kept_a), (pool_b, kept_b) = a, b
    assert pool_a.keys() == pool_b.keys()
    assert all(np.array_equal(pool_a[k], pool_b[k]) for k in pool_a)
    assert np.array_equal(kept_a, kept_b)


def test_sampling_spread_over_chunks_keeps_the_same_rows_as_in_this_process(files, tmp_path):
    wanted = {0: 400, 1: 400, 2: 400, 3: 0}  # 1,200+ candidates: two chunks or more per round
    sampler = Sampler.load(files)
    here = sample_until_filled(sampler, wanted)
    calls = []

    def spread(fn, args):
        calls.append(len(args))
        return [fn(*a) for a in args]

    there = sample_until_filled(sampler, wanted, spread=spread, files=files, scratch=tmp_path)
    assert calls and calls[0] >= 2
    _same_pools(here, there)
    assert len(list(tmp_path.glob("candidates-*.npy"))) == sum(calls)
    with pytest.raises(ValueError, match="files and a scratch folder"):
        sample_until_filled(sampler, wanted, spread=spread)


def test_sampling_on_a_dask_cluster_keeps_the_same_rows(files, tmp_path):
    """Worker processes (one thread each, as Dask starts them) take the driver's thread
    count for the chunk, so the sums and so the rows are the same."""
    distributed = pytest.importorskip("distributed")
    wanted = {0: 300, 1: 300, 2: 300, 3: 300}
    sampler = Sampler.load(files)
    here = sample_until_filled(sampler, wanted)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):

        def spread(fn, args):
            return client.gather(client.map(fn, *zip(*args, strict=True), pure=False))

        there = sample_until_filled(sampler, wanted, spread=spread, files=files, scratch=tmp_path)
        ran_on = client.run(lambda: torch.get_num_threads())
    assert all(n == 1 for n in ran_on.values())  # the workers' own setting is left as it was
    _same_pools(here, there)
