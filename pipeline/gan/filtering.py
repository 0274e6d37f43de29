"""Filtered sampling: candidates are generated per class in rounds, scored by the reference
classifier (confidence in the intended class, whether it is the top class) and by D (its
score cut, or discriminator rejection sampling), and kept by ``synthesis.filter`` until
each class has its count or its candidate budget.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.config import Config, SynthesisConfig
from pipeline.core.progress import SAMPLING
from pipeline.core.seeds import derive_seed
from pipeline.evaluate.classifier import predict_proba, to_tensor
from pipeline.gan.checkpoint import GanShape
from pipeline.gan.sample import generate, select
from pipeline.gan.train import GanTrainer


def sample_until_filled(
    config: Config, trainer: GanTrainer, reference, shape: GanShape, wanted: dict[int, int]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Generate and filter candidates in rounds until every class has ``wanted`` kept
    samples or has used ``filter.max_oversample`` x wanted candidates.

    Each round asks a short class for its shortfall divided by its acceptance rate so far
    (the first round guesses it from the filter settings). Candidate k of class c always has
    the latent seed ``derive_seed(seed, "synthetic/c", k)``, so the rows are reproducible.

    Returns:
        The candidates (images, labels, seeds, confidence, d_score) and the kept indices.
    """
    syn = config.synthesis
    limit = {c: int(np.ceil(n * syn.filter.max_oversample)) for c, n in wanted.items()}
    rate = {
        c: (1.0 - syn.filter.reject_d_fraction)
        * (2 / 3 if syn.filter.min_confidence else 1.0)
        * (1.0 - syn.filter.drs if syn.filter.drs is not None else 1.0)
        for c in wanted
    }
    made = dict.fromkeys(wanted, 0)
    counts = np.zeros(shape.num_classes, dtype=np.int64)
    size = (shape.height, shape.width) + ((3,) if shape.channels == 3 else ())
    parts = [
        {
            "images": np.zeros((0, *size), dtype=np.uint8),
            "labels": np.zeros(0, dtype=np.int64),
            "seeds": np.zeros(0, dtype=np.int64),
            "confidence": np.zeros(0),
            "d_score": np.zeros(0),
            "consistent": np.zeros(0, dtype=bool),
            "probs": np.zeros((0, shape.num_classes), dtype=np.float32),
        }
    ]
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
        parts.append(_sample_round(config, trainer, reference, shape, todo, made))
        for c, n in todo.items():
            made[c] += n
        scored = {
            key: np.concatenate([part[key] for part in parts])
            for key in ("labels", "seeds", "confidence", "d_score", "consistent")
        }
        kept = _select(syn, scored, wanted)
        counts = np.bincount(scored["labels"][kept], minlength=shape.num_classes)
        rate = {c: counts[c] / made[c] if made[c] else rate[c] for c in wanted}


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


def _sample_round(
    config: Config,
    trainer: GanTrainer,
    reference,
    shape: GanShape,
    todo: dict[int, int],
    made: dict[int, int],
) -> dict[str, np.ndarray]:
    """``todo[c]`` new candidates of each class c, numbered on from ``made[c]``, with their
    reference-classifier confidence and discriminator score."""
    labels = np.asarray([c for c, n in todo.items() for _ in range(n)], dtype=np.int64)
    seeds = np.asarray(
        [derive_seed(config.seed, f"synthetic/{c}", made[c] + k) for c, n in todo.items() for k in range(n)],
        dtype=np.int64,
    )
    images, d_scores = generate(
        trainer.G_ema,
        trainer.D,
        labels,
        seeds,
        out_size=shape.size,
        fit=shape.fit,
        truncation=config.synthesis.truncation,
        progress=SAMPLING,
        progress_offset=sum(made.values()),
    )
    probs = predict_proba(reference, to_tensor(images))
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
