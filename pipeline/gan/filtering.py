"""Filtered sampling: candidates are generated per class in rounds, scored by the reference
classifier (confidence in the intended class, whether it is the top class) and by D (its
score cut, or discriminator rejection sampling), and kept by ``synthesis.filter`` until
each class has its count or its candidate budget.

A round's candidates are made in chunks of at most :data:`CHUNK`, a whole number of
generator and classifier batches, so a chunk computes the same wherever it runs: in this
process, or, given a ``spread`` (the flow's Dask cluster), one task per chunk that loads
the generator, D and the reference classifier from files (:class:`SamplerFiles`), writes
the chunk's images to the staging (a file system the workers share, as for shards) and
returns its scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import Config, SynthesisConfig
from pipeline.core.progress import SAMPLING, report
from pipeline.core.seeds import derive_seed
from pipeline.evaluate.classifier import (
    ClassifierSpec,
    ReferenceCNN,
    new_classifier,
    predict_proba,
    to_tensor,
)
from pipeline.gan.checkpoint import GanShape, load_checkpoint
from pipeline.gan.gate import synthesis_device
from pipeline.gan.sample import generate, select
from pipeline.gan.train import GanTrainer

CHUNK = 1024  # candidates per chunk: 4 generator batches of 256, 2 classifier batches of 512

# Runs of candidates: (class, index of the class's first candidate, count).
Runs = tuple[tuple[int, int, int], ...]
# Calls fn(*args) for each args on an executor's workers; the results in order.
Spread = Callable[[Callable[..., Any], list[tuple[Any, ...]]], list[Any]]


@dataclass(frozen=True)
class SamplerFiles:
    """What another process needs to make candidates (small, picklable): the config (its
    ``synthesis.device`` the device type the deciding process picked), the GAN's shape, the
    checkpoint, the reference classifier's weights and recipe, and the CPU thread count of
    the process whose content the build's id records."""

    config: Config
    shape: GanShape
    checkpoint: Path
    reference: Path
    spec: ClassifierSpec
    threads: int | None


@dataclass
class Sampler:
    """The trained generator (EMA), D and the reference classifier, ready to make candidates."""

    config: Config
    shape: GanShape
    trainer: GanTrainer
    reference: ReferenceCNN

    @classmethod
    def load(cls, files: SamplerFiles) -> Sampler:
        """The sampler of ``files`` (on any process that can read them)."""
        state = load_checkpoint(files.checkpoint)
        trainer = sampling_trainer(files.config, files.shape, state, str(files.checkpoint))
        channels = (files.shape.channels, files.shape.height, files.shape.width)
        device = synthesis_device(files.config)
        with torch.random.fork_rng(devices=[]):
            reference = new_classifier(channels, files.shape.num_classes, files.spec, device)
        reference.load_state_dict(torch.load(files.reference, map_location=device, weights_only=True))
        return cls(files.config, files.shape, trainer, reference.eval())

    def candidates(self, runs: Runs, progress_offset: int | None = None) -> dict[str, np.ndarray]:
        """The candidates of ``runs`` with their reference-classifier confidence, top-class
        agreement, soft label and discriminator score (progress reported as SAMPLING from
        ``progress_offset`` candidates when given)."""
        labels = np.asarray([c for c, _, n in runs for _ in range(n)], dtype=np.int64)
        seeds = np.asarray(
            [
                derive_seed(self.config.seed, f"synthetic/{c}", k)
                for c, first, n in runs
                for k in range(first, first + n)
            ],
            dtype=np.int64,
        )
        images, d_scores = generate(
            self.trainer.G_ema,
            self.trainer.D,
            labels,
            seeds,
            out_size=self.shape.size,
            fit=self.shape.fit,
            truncation=self.config.synthesis.truncation,
            progress=SAMPLING if progress_offset is not None else None,
            progress_offset=progress_offset or 0,
        )
        probs = predict_proba(self.reference, to_tensor(images))
        confidence = probs[torch.arange(len(labels)), torch.as_tensor(labels)].numpy()
        consistent = probs.argmax(dim=1).numpy() == labels  # the classifier's top class is the intended one
        return {
            "images": images,
            "labels": labels,
            "seeds": seeds,
            "confidence": confidence,
            "d_score": d_scores,
            "consistent": consistent,
            "probs": probs.numpy().astype(np.float32),  # the teacher's soft label (synthesis.soft_labels)
        }


def sampling_trainer(config: Config, shape: GanShape, state: dict[str, Any], where: str) -> GanTrainer:
    """A trainer holding the checkpoint ``state`` on ``synthesis.device``, for sampling only."""
    syn = config.synthesis
    trainer = GanTrainer(
        images=np.zeros((2, *shape.image_array), dtype=np.uint8),  # never trained on
        labels=np.zeros(2, dtype=np.int64),
        shape=shape,
        settings=syn.train.model_copy(update={"device": syn.device, "compile": None}),
        seed=config.seed,
    )
    trainer.load_state_dict(state, where)
    return trainer


def candidates_on_worker(files: SamplerFiles, runs: Runs, out: Path) -> dict[str, np.ndarray]:
    """:meth:`Sampler.candidates` in a cluster worker, with the driver's CPU thread count
    (torch splits sums by thread): the images go to ``out`` (``.npy``, written whole or
    not at all), the scores come back, with ``images`` the path."""
    with _torch_threads(files.threads):
        part = Sampler.load(files).candidates(runs)
    partial = out.with_name(out.name + ".partial.npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(partial, part.pop("images"))
    partial.replace(out)
    return {**part, "images": np.asarray(str(out))}


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def chunks(todo: dict[int, int], made: dict[int, int]) -> list[Runs]:
    """A round's candidates (``todo[c]`` of class c, numbered on from ``made[c]``), in class
    order, cut into runs of at most :data:`CHUNK` candidates."""
    out: list[Runs] = []
    current: list[tuple[int, int, int]] = []
    room = CHUNK
    for c, n in todo.items():
        first = made[c]
        while n:
            take = min(n, room)
            current.append((c, first, take))
            first, n, room = first + take, n - take, room - take
            if not room:
                out.append(tuple(current))
                current, room = [], CHUNK
    if current:
        out.append(tuple(current))
    return out


def sample_until_filled(
    sampler: Sampler,
    wanted: dict[int, int],
    *,
    spread: Spread | None = None,
    files: SamplerFiles | None = None,
    scratch: Path | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Generate and filter candidates in rounds until every class has ``wanted`` kept
    samples or has used ``filter.max_oversample`` x wanted candidates.

    Each round asks a short class for its shortfall divided by its acceptance rate so far
    (the first round guesses it from the filter settings). Candidate k of class c always has
    the latent seed ``derive_seed(seed, "synthetic/c", k)``, so the rows are reproducible.
    With ``spread`` (and the ``files`` a worker loads, and a ``scratch`` folder for the
    images), each round's chunks run as :func:`candidates_on_worker` calls.

    Returns:
        The candidates (images, labels, seeds, confidence, d_score, consistent, probs) and
        the kept indices.
    """
    if spread is not None and (files is None or scratch is None):
        raise ValueError("sampling on a cluster needs the sampler's files and a scratch folder")
    syn = sampler.config.synthesis
    limit = {c: int(np.ceil(n * syn.filter.max_oversample)) for c, n in wanted.items()}
    rate = {
        c: (1.0 - syn.filter.reject_d_fraction)
        * (2 / 3 if syn.filter.min_confidence else 1.0)
        * (1.0 - syn.filter.drs if syn.filter.drs is not None else 1.0)
        for c in wanted
    }
    made = dict.fromkeys(wanted, 0)
    counts = np.zeros(sampler.shape.num_classes, dtype=np.int64)
    parts = [_empty(sampler.shape)]
    kept = np.zeros(0, dtype=np.int64)
    while True:
        todo = {}
        for c, n in wanted.items():
            short = n - int(counts[c])
            if short > 0 and made[c] < limit[c]:
                todo[c] = min(limit[c] - made[c], int(np.ceil(short / max(rate[c], 0.05))))
        if not todo:
            pool = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
            if syn.filter.fill_short:
                kept = _select(syn, pool, wanted, fill=True)
            return pool, kept
        parts += _round(sampler, chunks(todo, made), sum(made.values()), spread, files, scratch, len(parts))
        for c, n in todo.items():
            made[c] += n
        scored = {
            key: np.concatenate([part[key] for part in parts])
            for key in ("labels", "seeds", "confidence", "d_score", "consistent")
        }
        kept = _select(syn, scored, wanted)
        counts = np.bincount(scored["labels"][kept], minlength=sampler.shape.num_classes)
        rate = {c: counts[c] / made[c] if made[c] else rate[c] for c in wanted}


def _round(
    sampler: Sampler,
    runs: list[Runs],
    offset: int,
    spread: Spread | None,
    files: SamplerFiles | None,
    scratch: Path | None,
    first_part: int,
) -> list[dict[str, np.ndarray]]:
    """One round's parts, chunk by chunk: here, or spread with the images read back lazily."""
    if spread is None:
        parts = []
        for chunk in runs:
            parts.append(sampler.candidates(chunk, progress_offset=offset))
            offset += len(parts[-1]["labels"])
        return parts
    calls = [(files, chunk, scratch / f"candidates-{first_part + k:05d}.npy") for k, chunk in enumerate(runs)]
    parts = spread(candidates_on_worker, calls)
    for part in parts:
        part["images"] = np.load(str(part["images"]), mmap_mode="r")
    done = offset + sum(len(part["labels"]) for part in parts)
    report(SAMPLING, done, done)
    return parts


def _empty(shape: GanShape) -> dict[str, np.ndarray]:
    return {
        "images": np.zeros((0, *shape.image_array), dtype=np.uint8),
        "labels": np.zeros(0, dtype=np.int64),
        "seeds": np.zeros(0, dtype=np.int64),
        "confidence": np.zeros(0),
        "d_score": np.zeros(0),
        "consistent": np.zeros(0, dtype=bool),
        "probs": np.zeros((0, shape.num_classes), dtype=np.float32),
    }


def _select(
    syn: SynthesisConfig, pool: dict[str, np.ndarray], wanted: dict[int, int], fill: bool = False
) -> np.ndarray:
    return select(
        pool["labels"],
        pool["confidence"],
        pool["d_score"],
        wanted,
        min_confidence=syn.filter.min_confidence,
        reject_d_fraction=syn.filter.reject_d_fraction,
        fill=fill,
        consistent=pool["consistent"] if syn.filter.label_consistent else None,
        drs=syn.filter.drs,
        seeds=pool["seeds"],
    )
