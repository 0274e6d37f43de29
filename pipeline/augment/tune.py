"""Validation-driven choice of the augmentation (``augment.tune``).

Before anything is written, a few candidate expansions of the training split are scored
with the reference classifier (:mod:`pipeline.evaluate.classifier`, as the utility gate and
``expand evaluate`` use it) on a validation part carved from the real training images
(stratified, seeded; the same carve as the gate's). The candidates are: no augmentation;
the configured recipe at each magnitude in ``tune.strengths`` (ranges such as rotation
degrees, translation, scale and colour limits scaled by it); each torchvision policy in
``tune.policies`` as a recipe of its own; each at every copy count in ``tune.copies`` (or
the configured count). Candidates are scored with the fit images (at most
``tune.max_per_class`` per class, a seeded pick). The best mean validation score
(``tune.metric``: accuracy, or balanced accuracy for unbalanced classes) over ``tune.seeds``
wins; within ``tune.tie_margin`` of it, the candidate with the fewest rows.
The build then uses the winner's recipe and count, and the synthetic share is chosen on
top of it by the gate.

Candidates run in the worker processes, one candidate per call, each classifier on one
torch thread, so the figures do not depend on the worker count. ``tune.budget_seconds``
stops starting new candidates once spent (the ones not run are listed); without a budget
the choice is reproducible from the seed. The test split is never read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.augment.recipe import check_recipe
from pipeline.config import AugmentConfig, Config, metric_name
from pipeline.core.errors import PipelineError
from pipeline.core.progress import TUNING, report
from pipeline.core.seeds import derive_seed
from pipeline.core.workers import run_all
from pipeline.ingest.splits import validation_masks
from pipeline.ingest.store import INDEX_FILE, load_index, values_at

# Parameters that hold a magnitude: numbers and ranges scaled by the strength. 'scale' is
# multiplicative around 1 (0.9..1.1 at strength 2 becomes 0.8..1.2).
MAGNITUDES = {
    "rotate",
    "shear",
    "translate_percent",
    "translate",
    "degrees",
    "limit",
    "rotate_limit",
    "shift_limit",
    "scale_limit",
    "brightness_limit",
    "contrast_limit",
    "hue_shift_limit",
    "sat_shift_limit",
    "val_shift_limit",
    "brightness",
    "contrast",
    "saturation",
    "hue",
    "distortion_scale",
    "magnitude",
    "alpha",
    "sigma",
    "std_range",
}
_AROUND_ONE = {"scale"}
# torchvision's ColorJitter: a number b means 1-b..1+b (scaled as a magnitude), a range is
# around 1.
_RANGE_AROUND_ONE = {"brightness", "contrast", "saturation"}
_AT_MOST = {"hue": 0.5, "translate": 1.0, "distortion_scale": 1.0, "translate_percent": 1.0}


@dataclass(frozen=True)
class Candidate:
    """One expansion to score: a name for the report and the augmentation it stands for."""

    name: str
    augment: AugmentConfig
    strength: float | None = None
    policy: str | None = None


def scale_recipe(spec: list[dict[str, Any]], strength: float) -> list[dict[str, Any]]:
    """The recipe with every magnitude parameter scaled by ``strength`` (probabilities,
    sizes and counts untouched), nested compositions included."""
    return [{name: _scale_params(params or {}, strength)} for entry in spec for name, params in entry.items()]


def _scale_params(params: dict[str, Any], strength: float) -> dict[str, Any]:
    scaled = {}
    for key, value in params.items():
        if key == "transforms" and isinstance(value, list):
            scaled[key] = scale_recipe(value, strength)
        elif key in _RANGE_AROUND_ONE and isinstance(value, list | tuple):
            scaled[key] = _scale_value(value, strength, "scale")
        elif key in MAGNITUDES or key in _AROUND_ONE:
            scaled[key] = _scale_value(value, strength, key)
        else:
            scaled[key] = value
    return scaled


def _scale_value(value: Any, strength: float, key: str) -> Any:
    if isinstance(value, dict):  # e.g. translate_percent: {x: [..], y: [..]}
        return {k: _scale_value(v, strength, key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scale_value(v, strength, key) for v in value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if key in _AROUND_ONE:
        return 1.0 + (value - 1.0) * strength
    scaled = value * strength
    if key in _AT_MOST:
        scaled = max(-_AT_MOST[key], min(_AT_MOST[key], scaled))
    return int(round(scaled)) if isinstance(value, int) and key == "magnitude" else scaled


def candidates(augment: AugmentConfig) -> tuple[list[Candidate], list[dict[str, str]]]:
    """The candidates of ``augment.tune``, in the order they are scored (at most
    ``tune.max_candidates``), and the ones left out with the reason."""
    tune = augment.tune
    counts = augment.tuned_counts()
    found = [
        Candidate(
            "none",
            augment.model_copy(
                update={"copies_per_image": None, "target_per_class": None, "classes": {}, "mix": None}
            ),
        )
    ]
    refused: list[dict[str, str]] = []
    strengths = sorted(tune.strengths, key=lambda s: (abs(s - 1.0), s))  # the recipe as written first
    for copies, target in counts:
        label = _count_label(copies, target)
        base = {"copies_per_image": copies, "target_per_class": target}
        for strength in strengths if augment.transforms else []:
            name = f"recipe x{strength:g}, {label}"
            recipe = augment.transforms if strength == 1 else scale_recipe(augment.transforms, strength)
            try:
                check_recipe(augment.backend, recipe, augment.custom_transforms)
            except ValueError as exc:
                refused.append({"candidate": name, "reason": str(exc)})
                continue
            found.append(Candidate(name, augment.model_copy(update={**base, "transforms": recipe}), strength))
        for policy in tune.policies:
            name = f"{policy}, {label}"
            if any(c.transforms is not None for c in augment.classes.values()) or augment.custom_transforms:
                reason = (
                    "per-class or custom albumentations recipes cannot be combined with a torchvision policy"
                )
                refused.append({"candidate": name, "reason": reason})
                continue
            update = {**base, "backend": "torchvision", "transforms": [{policy: {}}]}
            found.append(Candidate(name, augment.model_copy(update=update), policy=policy))
    if len(found) > tune.max_candidates:
        refused += [
            {"candidate": c.name, "reason": "over tune.max_candidates"} for c in found[tune.max_candidates :]
        ]
        found = found[: tune.max_candidates]
    return found, refused


def _count_label(copies: float | None, target: int | None) -> str:
    return f"{target} per class" if target is not None else f"{copies:g} copies"


def tune_augmentation(
    config: Config, work_dir: Path, shape: tuple[int, ...], class_names: list[str], workers: int
) -> tuple[AugmentConfig, dict[str, Any]]:
    """Score the candidates of ``config.augment.tune`` and return the winner's augmentation
    with the report (every candidate's accuracies and rows, the choice and why)."""
    tune = config.augment.tune
    found, refused = candidates(config.augment)
    index = load_index(work_dir / INDEX_FILE)
    rows = index.rows_in("train").tolist()  # load_split's order
    if not rows:
        raise PipelineError("augment.tune: the source has no training images to tune on")
    ids, labels = values_at(index.source_ids, rows), index.labels[rows]
    fit_mask, validation_mask = tune_masks(ids, labels, config)
    if not validation_mask.any():
        raise PipelineError(
            f"augment.tune: no validation images: {len(ids)} training images are too few for "
            f"validation_fraction {tune.validation_fraction:g} (each class keeps one image for fitting)"
        )
    if tune.max_per_class is not None:
        fit_mask &= _at_most_per_class(ids, labels, fit_mask, tune.max_per_class, config.seed)
    from pipeline.evaluate.classifier import equal_steps  # torch: only when tuning

    # Equal compute: every candidate trains for the steps of the largest one's epochs.
    fit_counts = np.bincount(labels[fit_mask], minlength=len(class_names))
    largest = max(
        sum(int(n) + c.augment.copies_for(class_names[k], int(n)) for k, n in enumerate(fit_counts))
        for c in found
    )
    steps = equal_steps(largest, tune.classifier_epochs)
    started, results, skipped = time.monotonic(), [], []
    report(TUNING, 0, len(found))
    batch = max(1, workers)
    for first in range(0, len(found), batch):
        if tune.budget_seconds is not None and time.monotonic() - started > tune.budget_seconds:
            skipped = [{"candidate": c.name, "reason": "tune.budget_seconds spent"} for c in found[first:]]
            break
        calls = [
            (config, c.augment, work_dir, shape, class_names, fit_mask, validation_mask, steps)
            for c in found[first : first + batch]
        ]
        results += run_all(score_candidate, calls, workers)
        report(TUNING, len(results), len(found))
    scored = [
        {"name": c.name, "strength": c.strength, "policy": c.policy, **r}
        for c, r in zip(found[: len(results)], results, strict=True)
    ]
    best = max(r["mean"] for r in scored)
    ties = [k for k, r in enumerate(scored) if r["mean"] >= best - tune.tie_margin]
    chosen = min(ties, key=lambda k: (scored[k]["rows"], -scored[k]["mean"], k))
    baseline = scored[0]["mean"]
    reason = (
        f"{scored[chosen]['name']}: validation {metric_name(tune.metric)} {scored[chosen]['mean']:.4f} "
        f"({scored[chosen]['mean'] - baseline:+.4f} over no augmentation), best of {len(scored)} candidates"
        + (
            f"; the fewest rows of the {len(ties)} within {tune.tie_margin:g} of the best"
            if len(ties) > 1
            else ""
        )
    )
    summary = {
        "validation_rows": int(validation_mask.sum()),
        "fit_rows": int(fit_mask.sum()),
        "seeds": tune.seeds,
        "classifier_epochs": tune.classifier_epochs,
        "metric": tune.metric,
        "candidates": scored,
        "not_run": refused + skipped,
        "chosen": scored[chosen]["name"],
        "reason": reason,
        "seconds": round(time.monotonic() - started, 1),
    }
    return found[chosen].augment, summary


def tune_masks(ids: list[str], labels: np.ndarray, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Fit and validation masks of tuning over the training split. With the utility gate on,
    tuning never sees the gate's validation images (nested splits): it carves its own
    validation part from the gate's fit part, so the gate judges the synthetic rows on
    images no earlier choice was made on. Without the gate, the carve is
    :func:`pipeline.ingest.splits.validation_masks` at ``tune.validation_fraction``."""
    fraction = config.augment.tune.validation_fraction
    if not (config.synthesis.enabled and config.synthesis.gate.enabled):
        return validation_masks(ids, labels, fraction, config.seed)
    usable, _ = validation_masks(ids, labels, config.synthesis.gate.validation_fraction, config.seed)
    inside = np.flatnonzero(usable)
    fit_inside, validation_inside = validation_masks(
        [ids[i] for i in inside], labels[inside], fraction, config.seed, stream="tune"
    )
    fit, validation = np.zeros(len(ids), dtype=bool), np.zeros(len(ids), dtype=bool)
    fit[inside[fit_inside]] = True
    validation[inside[validation_inside]] = True
    return fit, validation


def score_candidate(
    config: Config,
    augment: AugmentConfig,
    work_dir: Path,
    shape: tuple[int, ...],
    class_names: list[str],
    fit_mask: np.ndarray,
    validation_mask: np.ndarray,
    steps: int | None = None,
) -> dict[str, Any]:
    """Validation score (``tune.metric``) of the reference classifier trained on the fit
    images (masks over the staged training split) expanded by ``augment``, once per seed, on
    one torch thread, for ``steps`` optimizer steps (None: ``tune.classifier_epochs``
    passes over its rows)."""
    from pipeline.augment.counts import expand_with
    from pipeline.evaluate.classifier import (
        ClassifierSpec,
        correct,
        metric_weights,
        score,
        to_tensor,
        train_classifier,
    )
    from pipeline.evaluate.stats import spread
    from pipeline.ingest.store import load_split

    tune = config.augment.tune
    train = load_split(work_dir, shape, "train")
    fit, validation = train.subset(fit_mask), train.subset(validation_mask)
    started = time.monotonic()
    images, y = expand_with(augment, config.seed, fit, class_names)
    x, y = to_tensor(images), torch.as_tensor(y)
    spec = ClassifierSpec(epochs=tune.classifier_epochs, steps=steps)
    val_x, val_y = to_tensor(validation.images), torch.as_tensor(validation.labels)
    weights = metric_weights(validation.labels, tune.metric)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic on any number of workers
    try:
        runs = [
            score(
                correct(
                    train_classifier(x, y, len(class_names), seed=config.seed + s, spec=spec), val_x, val_y
                ),
                weights,
            )
            for s in range(tune.seeds)
        ]
    finally:
        torch.set_num_threads(threads)
    return {
        "rows": int(len(y)),
        "steps": steps,
        "mean": float(np.mean(runs)),
        "std": spread(runs),
        "runs": runs,
        "seconds": round(time.monotonic() - started, 1),
    }


def _at_most_per_class(
    ids: list[str], labels: np.ndarray, mask: np.ndarray, cap: int, seed: int
) -> np.ndarray:
    """The first ``cap`` images of each class within ``mask``, ranked by a hash of (seed, id)."""
    keep = np.zeros(len(ids), dtype=bool)
    for label in np.unique(labels[mask]):
        members = sorted(
            np.flatnonzero(mask & (labels == label)),
            key=lambda i: (derive_seed(seed, ids[i], "tune"), ids[i]),
        )
        keep[members[:cap]] = True
    return keep
