"""The utility gate: synthetic rows are published only when real + augmented + synthetic
beats real + augmented on validation data by more than ``synthesis.gate.min_gain`` and the
noise (paired per-image differences over classifier seeds)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.augment.counts import expand_with
from pipeline.config import Config, metric_name
from pipeline.core.devices import pick_device
from pipeline.core.progress import GATE, report
from pipeline.evaluate.classifier import ClassifierSpec, correct, metric_weights, to_tensor, train_classifier
from pipeline.ingest.store import RealData


def utility_gate(
    config: Config, fit: RealData, validation: RealData, rows: dict[str, np.ndarray], class_names: list[str]
) -> dict[str, Any]:
    """Validation results of real(+augmented) vs +synthetic at each ratio, over seeds;
    the ratio to publish is chosen by :func:`gate_decision`."""
    gate = config.synthesis.gate
    base_x, base_y = expand_with(config.augment, config.seed, fit, class_names)
    spec, device = ClassifierSpec(epochs=gate.classifier_epochs), synthesis_device(config)
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
        extra = take_ratio(rows, ratio, fit)
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
    image's weight in the metric (:func:`pipeline.evaluate.classifier.metric_weights`, mean 1; None:
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


def take_ratio(rows: dict[str, np.ndarray], ratio: float, counts_from: RealData) -> dict[str, np.ndarray]:
    """The first round(ratio * real count) synthetic rows of each class."""
    keep: list[int] = []
    for c in np.unique(rows["labels"]):
        n = int(np.floor(ratio * int((counts_from.labels == c).sum()) + 0.5))
        keep.extend(np.flatnonzero(rows["labels"] == c)[:n].tolist())
    index = np.asarray(sorted(keep), dtype=np.int64)
    return {k: v[index] for k, v in rows.items()}


def synthesis_device(config: Config) -> torch.device:
    """Where sampling, scoring and the classifiers run (``synthesis.device``)."""
    return pick_device(config.synthesis.device, "synthesis.device")
