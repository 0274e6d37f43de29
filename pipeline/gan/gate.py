"""The utility gate: synthetic rows are published only when real + augmented + synthetic
beats real + augmented on validation data by more than ``synthesis.gate.min_gain`` with
confidence: the lower end of the gain's interval, paired over classifier seeds and
validation images (:mod:`pipeline.evaluate.stats`), must be above it. Every arm trains for
the same number of steps, and synthetic rows with their loss weight (``synthesis.weight``).

With ``synthesis.gate.per_class`` each class is decided on its own validation images: it
keeps the synthetic rows of the ratio whose gain on those images is above ``min_gain`` with
confidence, Bonferroni-adjusted over classes and ratios."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pipeline.augment.counts import expand_with
from pipeline.config import Config, SynthesisConfig, metric_name
from pipeline.core.devices import pick_device
from pipeline.core.progress import GATE, report
from pipeline.evaluate.classifier import (
    ClassifierSpec,
    correct,
    equal_steps,
    metric_weights,
    to_tensor,
    train_classifier,
)
from pipeline.evaluate.stats import interval_text, paired_interval, spread
from pipeline.ingest.store import RealData

_TIE = 1e-9  # a lower bound this close to min_gain is a tie, and a tie does not open the gate


def utility_gate(
    config: Config, fit: RealData, validation: RealData, rows: dict[str, np.ndarray], class_names: list[str]
) -> dict[str, Any]:
    """Validation results of real(+augmented) vs +synthetic at each ratio, over seeds;
    the ratio to publish is chosen by :func:`gate_decision`."""
    gate = config.synthesis.gate
    base_x, base_y = expand_with(config.augment, config.seed, fit, class_names)
    soft = config.synthesis.soft_labels  # synthetic rows train on the teacher's probabilities
    if soft:
        base_y = np.eye(len(class_names), dtype=np.float32)[base_y]
    arms = {"0": (base_x, base_y, None)}
    for ratio in gate.ratios:
        extra = take_ratio(rows, ratio, fit, config.synthesis)
        targets = extra["probs"] if soft else extra["labels"]
        x = np.concatenate([base_x, extra["images"]]) if len(extra["labels"]) else base_x
        y = np.concatenate([base_y, targets]) if len(extra["labels"]) else base_y
        weights = None
        if config.synthesis.weight != 1.0 and len(extra["labels"]):
            weights = np.concatenate(
                [np.ones(len(base_y), np.float32), np.full(len(extra["labels"]), config.synthesis.weight)]
            )
        arms[f"{ratio:g}"] = (x, y, weights)
    steps = equal_steps(max(len(y) for _, y, _ in arms.values()), gate.classifier_epochs)
    spec = ClassifierSpec(epochs=gate.classifier_epochs, steps=steps, grid=gate.classifier_grid)
    device = synthesis_device(config)
    val_x, val_y = to_tensor(validation.images), torch.as_tensor(validation.labels)
    trainings, trained = gate.seeds * len(arms), 0

    def score(images: np.ndarray, labels: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        """(seeds, validation images): whether each seed's classifier got each image right."""
        nonlocal trained
        x, y = to_tensor(images), torch.as_tensor(labels)
        w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        runs = []
        for s in range(gate.seeds):
            model = train_classifier(
                x, y, len(class_names), seed=config.seed + s, spec=spec, device=device, weights=w
            )
            runs.append(correct(model, val_x, val_y))
            trained += 1
            report(GATE, trained, trainings)
        return np.stack(runs)

    report(GATE, 0, trainings)
    results = {key: score(*arm) for key, arm in arms.items()}
    baseline = f"real{'+augmented' if config.augment.enabled else ''}"
    weights = metric_weights(validation.labels, gate.metric)
    name = metric_name(gate.metric)
    decision = gate_decision(results, gate.min_gain, gate.confidence, baseline, weights, name)
    if gate.per_class:  # the rows follow each class's ratio; all classes together: a report
        labels = validation.labels
        per_class = per_class_decision(results, labels, gate.min_gain, gate.confidence, class_names)
        per_class["reason"] += f" (all classes together: {decision['reason']})"
        decision.update(per_class)
    return {
        "validation_rows": len(validation.ids),
        "seeds": gate.seeds,
        "metric": gate.metric,
        "steps": steps,
        **decision,
    }


def gate_decision(
    correct: dict[str, np.ndarray],
    min_gain: float,
    confidence: float = 0.95,
    baseline: str = "real",
    weights: np.ndarray | None = None,
    metric: str = "accuracy",
) -> dict[str, Any]:
    """The ratio to publish, from which validation images each seed's classifier got right
    (``correct[ratio]``: booleans, seeds x images; key "0": the baseline). ``weights``: each
    image's weight in the metric (:func:`pipeline.evaluate.classifier.metric_weights`, mean 1;
    None: accuracy), applied to every image's correctness first.

    Each ratio's gain over the baseline gets an interval paired over seeds and images
    (:func:`pipeline.evaluate.stats.paired_interval`) at ``confidence``, Bonferroni-adjusted
    for the number of ratios tried (trying several and keeping the best would otherwise
    open the gate on noise more often than 1 - ``confidence``). A ratio qualifies when the
    interval's lower end is above ``min_gain``: a tie or a gain within the noise does not.
    The qualifying ratio with the highest gain is chosen (ties: fewer rows); none: 0.
    """
    scale = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    base = np.asarray(correct["0"], dtype=np.float64) * scale
    candidates = [k for k in correct if k != "0"]
    level = 1 - (1 - confidence) / max(1, len(candidates))
    summary: dict[str, dict[str, Any]] = {}
    for key, matrix in correct.items():
        runs = np.asarray(matrix, dtype=np.float64) * scale
        accuracies = runs.mean(axis=1)
        entry: dict[str, Any] = {
            "mean": float(accuracies.mean()),
            "std": spread(accuracies),
            "runs": accuracies.tolist(),
        }
        if key != "0":
            entry["interval"] = paired_interval(runs - base, level)
            entry["gain"] = entry["interval"]["gain"]
        summary[key] = entry
    passing = [k for k in candidates if summary[k]["interval"]["low"] - min_gain > _TIE]
    best = max(passing or candidates, key=lambda k: (summary[k]["gain"], -float(k)))  # ties: fewer rows
    interval = summary[best]["interval"]
    shown = (
        f"{interval_text(interval)} at {level:.1%} ({interval['seeds']} seeds x {interval['images']} images"
        + (f", {confidence:.0%} over {len(candidates)} ratios" if len(candidates) > 1 else "")
        + ")"
    )
    if passing:
        reason = f"synthetic ratio {best} raised validation {metric} by {shown}, above min_gain {min_gain:g}"
        return {"accuracy": summary, "chosen_ratio": float(best), "confidence": confidence, "reason": reason}
    measured = "" if metric == "accuracy" else f" in validation {metric}"
    reason = (
        f"no ratio beat {baseline}{measured} by more than min_gain {min_gain:g} with confidence "
        f"(best: ratio {best}, gain {shown}); synthetic rows left out"
    )
    return {"accuracy": summary, "chosen_ratio": 0.0, "confidence": confidence, "reason": reason}


def per_class_decision(
    correct: dict[str, np.ndarray],
    labels: np.ndarray,
    min_gain: float,
    confidence: float,
    class_names: list[str],
) -> dict[str, Any]:
    """Each class's ratio, from its own validation images (``labels``: the class of each
    column of ``correct``, as in :func:`gate_decision`).

    A class keeps the ratio with the highest gain among those whose interval on the class's
    images lies above ``min_gain``, at ``confidence`` Bonferroni-adjusted over every (class,
    ratio) pair tried; none: 0. The per-class gains come from arms in which every class had
    rows at that ratio.

    Returns:
        ``per_class`` (class name: ratio, gain, low, high of the chosen ratio, or of the best
        one when none qualifies), ``chosen_ratios`` (class name: ratio) and ``reason``.
    """
    labels = np.asarray(labels)
    candidates = [k for k in correct if k != "0"]
    classes = np.unique(labels)
    level = 1 - (1 - confidence) / max(1, len(candidates) * len(classes))
    base = np.asarray(correct["0"], dtype=np.float64)
    per_class: dict[str, dict[str, Any]] = {}
    for c in classes:
        columns = labels == c
        intervals = {
            k: paired_interval((np.asarray(correct[k], dtype=np.float64) - base)[:, columns], level)
            for k in candidates
        }
        passing = [k for k in candidates if intervals[k]["low"] - min_gain > _TIE]
        best = max(passing or candidates, key=lambda k: (intervals[k]["gain"], -float(k)))
        shown = {key: intervals[best][key] for key in ("gain", "low", "high", "images")}
        per_class[class_names[int(c)]] = {"ratio": float(best) if passing else 0.0, **shown}
    kept = {name: entry["ratio"] for name, entry in per_class.items() if entry["ratio"]}
    listed = ", ".join(f"{name} (ratio {ratio:g})" for name, ratio in kept.items())
    reason = f"per class, at {level:.2%} over {len(classes)} classes x {len(candidates)} ratios: " + (
        f"synthetic rows kept for {listed}" if kept else "no class gained above min_gain with confidence"
    )
    return {
        "per_class": per_class,
        "chosen_ratios": {name: entry["ratio"] for name, entry in per_class.items()},
        "reason": reason,
    }


def take_ratio(
    rows: dict[str, np.ndarray],
    ratio: float | dict[int, float],
    counts_from: RealData,
    synthesis: SynthesisConfig | None = None,
) -> dict[str, np.ndarray]:
    """The first round(ratio * real count) synthetic rows of each class (``ratio``: one for
    every class, or each class's; a class not in it gets none). With ``synthesis`` given,
    the ratio multiplies its :meth:`~SynthesisConfig.ratio_basis` (a class's fill, with
    ``target_per_class``) instead of the real count."""
    keep: list[int] = []
    for c in np.unique(rows["labels"]):
        share = ratio.get(int(c), 0.0) if isinstance(ratio, dict) else ratio
        real = int((counts_from.labels == c).sum())
        basis = synthesis.ratio_basis(real) if synthesis is not None else real
        n = int(np.floor(share * basis + 0.5))
        keep.extend(np.flatnonzero(rows["labels"] == c)[:n].tolist())
    index = np.asarray(sorted(keep), dtype=np.int64)
    return {k: v[index] for k, v in rows.items()}


def synthesis_device(config: Config) -> torch.device:
    """Where sampling, scoring and the classifiers run (``synthesis.device``)."""
    return pick_device(config.synthesis.device, "synthesis.device")
