"""The synthesis stage: train (or load) the GAN, sample per class, filter, measure, gate.

Inputs are the staged training split (pixels and index in the build's work directory).
When the utility gate is on, a validation part is carved from the real training split
first (stratified, seeded); the GAN and the reference classifier never see it, and the
gate decides on it alone. The test split is never used for a decision; CAS on the test
split is reported only.
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.augment import ClassAugmenters, derive_seed
from pipeline.classifier import (
    ClassifierSpec,
    accuracy,
    correct,
    extract_features,
    metric_weights,
    predict_proba,
    saved_or_trained,
    to_tensor,
    train_classifier,
)
from pipeline.config import AugmentConfig, Config, SynthesisConfig, metric_name
from pipeline.devices import pick_device
from pipeline.errors import PipelineError
from pipeline.gan import metrics as gm
from pipeline.gan.sample import generate, select
from pipeline.gan.train import (
    GanShape,
    GanTrainer,
    check_compatible,
    load_checkpoint,
    save_checkpoint,
)
from pipeline.hashing import file_sha256
from pipeline.ingest import Index, validation_masks
from pipeline.plan import allocate_copies
from pipeline.progress import GATE, REFERENCE, SAMPLING, report

_METRIC_SAMPLES = 1000
# Beside the checkpoints: the reference classifier that training measured FD with, reused
# by sampling and resumed training (when it fits: see saved_or_trained) instead of being
# trained again.
REFERENCE_FILE = "reference.pt"


@dataclass(frozen=True)
class RealData:
    """Real images of one split with their labels and source ids."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]

    def subset(self, mask: np.ndarray) -> RealData:
        return RealData(
            self.images[mask], self.labels[mask], [i for i, m in zip(self.ids, mask, strict=True) if m]
        )


def fit_validation_masks(data: RealData, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Fit/validation masks over the training split (all fit when the gate is off)."""
    if not config.synthesis.gate.enabled:
        everything = np.ones(len(data.ids), dtype=bool)
        return everything, ~everything
    return validation_masks(data.ids, data.labels, config.synthesis.gate.validation_fraction, config.seed)


def train_gan(
    config: Config,
    fit: RealData,
    shape: GanShape,
    out_dir: Path,
    *,
    resume: Path | None = None,
    on_metrics: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train the GAN on ``fit``; keep ``last.pt`` and ``best.pt`` (lowest classifier FD).

    Returns:
        ``{"checkpoint", "sha256", "history", "best"}`` for the best checkpoint.
    """
    settings = config.synthesis.train
    trainer = GanTrainer(
        images=fit.images,
        labels=fit.labels,
        shape=shape,
        settings=settings,
        seed=config.seed,
        # The settings that decide the content only: a checkpoint's bytes (and so the ids of
        # its samples) must not depend on where the run writes or how many workers it has.
        config_json=json.dumps(config.content_dict(), sort_keys=True),
    )
    saved = out_dir / REFERENCE_FILE
    if resume is not None:
        trainer.load_state_dict(load_checkpoint(resume, trainer.device), str(resume))
        if not saved.is_file() and (resume.parent / REFERENCE_FILE).is_file():
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(resume.parent / REFERENCE_FILE, saved)  # loaded below if it fits
    reference = _reference(config, fit, shape.num_classes, saved, save=True)
    real_features = _features(config, reference, to_tensor(fit.images))
    history: list[dict[str, float]] = []
    while trainer.step < settings.steps:
        chunk = min(settings.eval_every - trainer.step % settings.eval_every, settings.steps - trainer.step)
        history += trainer.train(chunk, on_metrics=on_metrics)
        trainer.recompute_ema_batchnorm()
        fd = _ema_fd(trainer, config, reference, real_features, fit)
        history.append({"step": trainer.step, "fd": fd})
        if on_metrics:
            on_metrics({"step": trainer.step, "fd": fd})
        if not trainer.best or fd < trainer.best["fd"]:
            trainer.best = {"step": trainer.step, "fd": fd}
            save_checkpoint(trainer.state_dict(), out_dir / "best.pt")
        save_checkpoint(trainer.state_dict(), out_dir / "last.pt")
    best = out_dir / "best.pt"
    if not best.is_file():  # resumed at or past the last step: nothing new was measured
        save_checkpoint(trainer.state_dict(), best)
    return {"checkpoint": str(best), "sha256": file_sha256(best), "history": history, "best": trainer.best}


def synthesize(
    config: Config,
    train: RealData,
    test: RealData | None,
    shape: GanShape,
    checkpoint: Path,
    class_names: list[str],
) -> dict[str, Any]:
    """Sample, filter, measure and gate synthetic rows from a trained checkpoint.

    Returns:
        ``{"images", "labels", "seeds", "confidence", "d_score", "report", "preview"}``:
        the kept synthetic rows (possibly none, when the gate declines), the figures behind
        them, and (images, labels) of the filtered samples before the gate, for the grid.
    """
    syn = config.synthesis
    fit_mask, val_mask = fit_validation_masks(train, config)
    fit, validation = train.subset(fit_mask), train.subset(val_mask)
    state = load_checkpoint(checkpoint)
    check_compatible(state, shape, syn.train, str(checkpoint))
    trainer = GanTrainer(
        images=fit.images[:2],
        labels=fit.labels[:2],
        shape=shape,
        settings=syn.train.model_copy(update={"device": syn.device, "compile": None}),
        seed=config.seed,
    )
    trainer.load_state_dict(state, str(checkpoint))
    reference = _reference(config, fit, shape.num_classes, checkpoint.parent / REFERENCE_FILE)

    wanted = {c: syn.count_for(int((train.labels == c).sum())) for c in range(shape.num_classes)}
    pool, kept = _sample_until_filled(config, trainer, reference, shape, wanted)
    rows = {key: values[kept] for key, values in pool.items()}
    counts = np.bincount(rows["labels"], minlength=shape.num_classes)
    short = {class_names[c]: int(counts[c]) for c, n in wanted.items() if counts[c] < n}
    below = rows["confidence"] < syn.filter.min_confidence  # kept by filter.fill_short
    filled = {
        class_names[c]: int(n)
        for c, n in enumerate(np.bincount(rows["labels"][below], minlength=shape.num_classes))
        if n
    }

    report: dict[str, Any] = {
        "checkpoint_sha256": file_sha256(checkpoint),
        "checkpoint_step": int(state["step"]),
        "candidates": int(len(pool["labels"])),
        "kept_after_filter": int(len(kept)),
        "wanted": int(sum(wanted.values())),
        **({"short": short} if short else {}),
        **({"filled_below_threshold": filled} if filled else {}),
        "metrics": quality_metrics(config, reference, fit, rows, test, shape.num_classes),
    }
    filtered = rows  # the grid shows what the generator makes, whatever the gate decides
    if syn.gate.enabled and len(validation.ids):
        decision = utility_gate(config, fit, validation, rows, class_names)
        report["gate"] = decision
        rows = _take_ratio(rows, decision["chosen_ratio"], train)
    report["published"] = int(len(rows["labels"]))
    return {**rows, "report": report, "preview": (filtered["images"], filtered["labels"])}


def quality_metrics(
    config: Config,
    reference,
    fit: RealData,
    rows: dict[str, np.ndarray],
    test: RealData | None,
    num_classes: int,
) -> dict[str, Any]:
    """FD, KID, precision/recall, per-class FD (features of the reference classifier) and CAS."""
    if len(rows["labels"]) < 2:
        return {"note": "fewer than 2 synthetic samples kept; no metrics"}
    real = _features(config, reference, to_tensor(fit.images))
    fake = _features(config, reference, to_tensor(rows["images"]))
    rng = np.random.default_rng(derive_seed(config.seed, "metrics", 0))
    precision, recall = gm.precision_recall(real[:_METRIC_SAMPLES], fake[:_METRIC_SAMPLES])
    result: dict[str, Any] = {
        "features": config.synthesis.features,
        "fd": gm.frechet_distance(real, fake),
        "kid": gm.kernel_inception_distance(real, fake, rng=rng),
        "precision": precision,
        "recall": recall,
        "per_class_fd": gm.per_class_frechet(real, fit.labels, fake, rows["labels"], num_classes),
    }
    if test is not None and len(test.ids):
        spec = ClassifierSpec(epochs=config.synthesis.gate.classifier_epochs)
        cas_model = train_classifier(
            to_tensor(rows["images"]),
            torch.as_tensor(rows["labels"]),
            num_classes,
            seed=config.seed,
            spec=spec,
            device=_device(config),
        )
        result["cas_test"] = accuracy(cas_model, to_tensor(test.images), torch.as_tensor(test.labels))
        result["cas_note"] = (
            "classifier trained on synthetic rows only, tested on the real test split (report only)"
        )
    return result


def utility_gate(
    config: Config, fit: RealData, validation: RealData, rows: dict[str, np.ndarray], class_names: list[str]
) -> dict[str, Any]:
    """Validation results of real(+augmented) vs +synthetic at each ratio, over seeds;
    the ratio to publish is chosen by :func:`gate_decision`."""
    gate = config.synthesis.gate
    base_x, base_y = expand_with(config.augment, config.seed, fit, class_names)
    spec, device = ClassifierSpec(epochs=gate.classifier_epochs), _device(config)
    val_x, val_y = to_tensor(validation.images), torch.as_tensor(validation.labels)

    epochs = gate.seeds * (1 + len(gate.ratios)) * spec.epochs
    trained = 0  # classifier trainings done

    def score(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(seeds, validation images): whether each seed's classifier got each image right."""
        nonlocal trained
        x, y = to_tensor(images), torch.as_tensor(labels)
        runs = []
        for s in range(gate.seeds):
            done = trained * spec.epochs
            model = train_classifier(
                x,
                y,
                len(class_names),
                seed=config.seed + s,
                spec=spec,
                device=device,
                on_epoch=lambda e, done=done: report(GATE, done + e, epochs),
            )
            runs.append(correct(model, val_x, val_y))
            trained += 1
        return np.stack(runs)

    report(GATE, 0, epochs)
    results = {"0": score(base_x, base_y)}
    for ratio in gate.ratios:
        extra = _take_ratio(rows, ratio, fit)
        x = np.concatenate([base_x, extra["images"]]) if len(extra["labels"]) else base_x
        y = np.concatenate([base_y, extra["labels"]]) if len(extra["labels"]) else base_y
        results[f"{ratio:g}"] = score(x, y)
    baseline = f"real{'+augmented' if config.augment.enabled else ''}"
    weights = metric_weights(validation.labels, gate.metric)
    return {
        "validation_rows": len(validation.ids),
        "seeds": gate.seeds,
        "metric": gate.metric,
        **gate_decision(
            results, gate.min_gain, gate.min_gain_se, baseline, weights, metric_name(gate.metric)
        ),
    }


def gate_decision(
    correct: dict[str, np.ndarray],
    min_gain: float,
    min_gain_se: float,
    baseline: str = "real",
    weights: np.ndarray | None = None,
    metric: str = "accuracy",
) -> dict[str, Any]:
    """The ratio to publish, from which validation images each seed's classifier got right
    (``correct[ratio]``: booleans, seeds x images; key "0": the baseline). ``weights``: each
    image's weight in the metric (:func:`pipeline.classifier.metric_weights`, mean 1; None:
    accuracy), applied to every image's correctness before the means and errors below.

    A ratio qualifies when its gain in the mean score exceeds ``min_gain`` and also
    ``min_gain_se`` standard errors of that gain. The standard error is that of a paired
    comparison over the validation images: the per-image difference in (weighted) correctness,
    averaged over seeds, has standard deviation s over N images, and the gain's standard
    error is s / sqrt(N). It counts the images the two disagree on, so a gain of one image
    in 200 is not evidence. The best qualifying ratio is chosen; none: 0 (no synthetic rows).
    """
    scale = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    base = np.asarray(correct["0"], dtype=np.float64) * scale
    summary: dict[str, dict[str, Any]] = {}
    for key, matrix in correct.items():
        runs = np.asarray(matrix, dtype=np.float64) * scale
        accuracies = runs.mean(axis=1)
        entry: dict[str, Any] = {
            "mean": float(accuracies.mean()),
            "std": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
            "runs": accuracies.tolist(),
        }
        if key != "0":
            per_image = (runs - base).mean(axis=0)
            entry["gain"] = float(per_image.mean())
            n = len(per_image)
            entry["gain_se"] = float(per_image.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
        summary[key] = entry
    candidates = [k for k in summary if k != "0"]
    needed = {k: max(min_gain, min_gain_se * summary[k]["gain_se"]) for k in candidates}
    passing = [k for k in candidates if summary[k]["gain"] > needed[k]]
    best = max(passing or candidates, key=lambda k: (summary[k]["gain"], -float(k)))  # ties: fewer rows
    gain, needs = summary[best]["gain"], needed[best]
    if passing:
        reason = f"synthetic ratio {best} raised validation {metric} by {gain:+.4f} (needed > {needs:.4f})"
        return {"accuracy": summary, "chosen_ratio": float(best), "reason": reason}
    measured = "" if metric == "accuracy" else f" in validation {metric}"  # accuracy: as before
    reason = (
        f"no ratio beat {baseline}{measured} by more than min_gain {min_gain:g} and {min_gain_se:g} standard "
        f"error(s) of the gain (best: ratio {best}, gain {gain:+.4f}, needed > {needs:.4f}); "
        "synthetic rows left out"
    )
    return {"accuracy": summary, "chosen_ratio": 0.0, "reason": reason}


def _take_ratio(rows: dict[str, np.ndarray], ratio: float, counts_from: RealData) -> dict[str, np.ndarray]:
    """The first round(ratio * real count) synthetic rows of each class."""
    keep: list[int] = []
    for c in np.unique(rows["labels"]):
        n = int(np.floor(ratio * int((counts_from.labels == c).sum()) + 0.5))
        keep.extend(np.flatnonzero(rows["labels"] == c)[:n].tolist())
    index = np.asarray(sorted(keep), dtype=np.int64)
    return {k: v[index] for k, v in rows.items()}


def expand_with(
    augment_config: AugmentConfig, seed: int, fit: RealData, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``fit`` plus its augmented copies, made as the build makes them (without augment.mix)."""
    if not augment_config.enabled:
        return fit.images, fit.labels
    index = Index(fit.ids, fit.labels, ["train"] * len(fit.ids), [""] * len(fit.ids))
    copies, _ = allocate_copies(index, augment_config, seed, class_names)
    augment = ClassAugmenters(augment_config, class_names, seed)
    extra_x, extra_y = [], []
    for i, count in enumerate(copies):
        for replica in range(1, int(count) + 1):
            image, _, _ = augment(fit.images[i], int(fit.labels[i]), fit.ids[i], replica)
            extra_x.append(image)
            extra_y.append(fit.labels[i])
    if not extra_x:
        return fit.images, fit.labels
    return np.concatenate([fit.images, np.stack(extra_x)]), np.concatenate([fit.labels, extra_y])


def _sample_until_filled(
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
        c: (1.0 - syn.filter.reject_d_fraction) * (2 / 3 if syn.filter.min_confidence else 1.0)
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
            key: np.concatenate([part[key] for part in parts]) for key in ("labels", "confidence", "d_score")
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
        out_size=(shape.height, shape.width),
        truncation=config.synthesis.truncation,
        progress=SAMPLING,
        progress_offset=sum(made.values()),
    )
    probs = predict_proba(reference, to_tensor(images))
    confidence = probs[torch.arange(len(labels)), torch.as_tensor(labels)].numpy()
    return {"images": images, "labels": labels, "seeds": seeds, "confidence": confidence, "d_score": d_scores}


def _reference(config: Config, fit: RealData, num_classes: int, saved: Path, *, save: bool = False):
    """The reference classifier trained on ``fit``, or the one saved at ``saved`` for the
    same images, labels, seed, recipe and device (written there when ``save``)."""
    spec = ClassifierSpec(epochs=config.synthesis.gate.classifier_epochs)
    return saved_or_trained(
        fit.images,
        fit.labels,
        num_classes,
        seed=config.seed,
        spec=spec,
        device=_device(config),
        path=saved,
        save=save,
        on_epoch=lambda e: report(REFERENCE, e, spec.epochs),
    )


def _device(config: Config) -> torch.device:
    """Where sampling, scoring and the classifiers run (``synthesis.device``)."""
    return pick_device(config.synthesis.device, "synthesis.device")


def _features(config: Config, reference, images: torch.Tensor) -> np.ndarray:
    if config.synthesis.features == "classifier":
        return extract_features(reference, images)
    module, _, name = config.synthesis.features.partition(":")
    try:
        extractor = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f"synthesis.features: cannot load {config.synthesis.features!r}: {exc}") from None
    return np.asarray(extractor(images), dtype=np.float64)


def _ema_fd(
    trainer: GanTrainer, config: Config, reference, real_features: np.ndarray, fit: RealData
) -> float:
    n = min(_METRIC_SAMPLES, max(len(fit.ids), 2))
    labels = fit.labels[np.arange(n) % len(fit.labels)]
    seeds = np.asarray([derive_seed(config.seed, "fd", k) for k in range(n)], dtype=np.int64)
    images, _ = generate(
        trainer.G_ema, None, labels, seeds, out_size=(trainer.shape.height, trainer.shape.width)
    )
    return gm.frechet_distance(real_features, _features(config, reference, to_tensor(images)))
