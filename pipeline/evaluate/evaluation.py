"""Does the expansion help? The reference classifier trained on parts of a version, tested
on the version's real test split.

Subsets of the training split: real only, real+augmented, real+augmented+synthetic and
synthetic only (CAS), each with several seeds; mean and sample standard deviation (ddof=1)
of test accuracy and of balanced accuracy (the mean of the per-class accuracies, which an
unbalanced test split's accuracy hides), and per-class accuracy. Each subset is compared
with its baseline (real+augmented with real, real+augmented+synthetic with real+augmented,
synthetic only with real) by the paired gain and its 95 % interval over seeds and test
images (:mod:`pipeline.evaluate.stats`). Every subset trains for the same number of steps,
``epochs`` passes over the largest one, so a gain is the data's and not more training's.

The low-data protocol (``real_per_class=K``) keeps K real images per class (seeded,
stratified) and only their augmented copies. Synthetic rows of a generator that saw more
real images than that would leak the others into the comparison: the subsets with
synthetic rows are then left out, with the reason in the report. The classifier is
:mod:`pipeline.evaluate.classifier`, the same yardstick as the GAN's utility gate and metrics.

Reports go to ``<version>/attachments/`` (outside the version's hashed content):
``evaluation[-kK].json``, ``.md`` and a ``.png`` bar chart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipeline.config import EvaluateConfig
from pipeline.config.evaluate import report_stem
from pipeline.core.devices import pick_device
from pipeline.core.errors import PipelineError
from pipeline.evaluate.classifier import (
    ClassifierSpec,
    correct,
    equal_steps,
    metric_weights,
    score,
    to_tensor,
    train_classifier,
)
from pipeline.evaluate.rows import VersionRows, load_rows
from pipeline.evaluate.stats import CONFIDENCE, interval_text, paired_interval, spread
from pipeline.version.manifest import ATTACHMENTS_DIR, load_manifest, utcnow
from pipeline.version.model import Manifest

SUBSETS: dict[str, tuple[str, ...]] = {
    "real": ("real",),
    "real+augmented": ("real", "augmented"),
    "real+augmented+synthetic": ("real", "augmented", "synthetic"),
    "synthetic only (CAS)": ("synthetic",),
}


# What each subset is compared with (paired: the same seeds, the same test images).
BASELINES = {
    "real+augmented": "real",
    "real+augmented+synthetic": "real+augmented",
    "synthetic only (CAS)": "real",
}

_DEFAULT_SETTINGS = EvaluateConfig()


def low_data_mask(rows: VersionRows, per_class: int | None, seed: int) -> np.ndarray:
    """Rows kept under the low-data protocol: K real images per class (ranked by a seeded
    hash of their source id), their augmented copies, and every synthetic row."""
    if per_class is None:
        return np.ones(len(rows.labels), dtype=bool)
    real = rows.origins == "real"
    chosen: set[str] = set()
    for label in np.unique(rows.labels[real]):
        ids = sorted(set(rows.source_ids[real & (rows.labels == label)].tolist()))
        ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}\x1f{i}".encode()).hexdigest())
        chosen.update(ranked[:per_class])
    from_chosen = np.isin(rows.source_ids, sorted(chosen))
    return (rows.origins == "synthetic") | (from_chosen & np.isin(rows.origins, ["real", "augmented"]))


def same_rows_as(manifest: Manifest, subset: str) -> str | None:
    """An earlier subset (in ``SUBSETS`` order) that trains on exactly the same rows of this
    version, because the origins that tell them apart have no rows (a version the gate
    published without synthetic rows: real+augmented+synthetic is real+augmented)."""
    present = {o for o, n in manifest.splits["train"].by_origin.items() if n}
    names = list(SUBSETS)
    for earlier in names[: names.index(subset)]:
        if present.intersection(SUBSETS[earlier]) == present.intersection(SUBSETS[subset]):
            return earlier
    return None


def reused_result(manifest: Manifest, results: dict[str, dict[str, Any]], subset: str) -> dict | None:
    """The result already in ``results`` for the same rows as ``subset`` (see
    :func:`same_rows_as`), marked ``same_rows_as``; None when it must be trained."""
    same = same_rows_as(manifest, subset)
    return {**results[same], "same_rows_as": same} if same in results else None


def evaluate_subset(version: Path, subset: str, settings: EvaluateConfig) -> dict[str, Any]:
    """Train and test the reference classifier on one subset, once per seed.

    Returns:
        ``{"rows", "steps", "mean", "std", "runs", "balanced_accuracy", "per_class"}`` and,
        for :func:`report`'s paired comparisons, ``_correct`` (seeds x test images, the
        metric's per-image scores); only ``rows`` (and ``left_out``, why) when it is empty.
    """
    if subset not in SUBSETS:
        raise PipelineError(f"unknown subset {subset!r}; use one of {list(SUBSETS)}")
    manifest = load_manifest(version)
    return _score(load_rows(version, "train"), load_rows(version, "test"), manifest, subset, settings)


def leaked_synthesis(manifest: Manifest, settings: EvaluateConfig) -> str | None:
    """Why the synthetic rows cannot be evaluated under the low-data protocol, if they
    cannot: their generator trained on more real images per class than ``real_per_class``."""
    real = manifest.splits["train"].by_origin_class.get("real", {})
    if not settings.real_per_class or not manifest.splits["train"].by_origin.get("synthetic"):
        return None
    most = max(real.values(), default=0)
    if most <= settings.real_per_class:
        return None
    return (
        f"left out: the synthetic rows come from a generator trained on up to {most} real images per "
        f"class, more than the {settings.real_per_class} this protocol keeps; build a version from "
        f"{settings.real_per_class} images per class to measure them"
    )


def arm_steps(train: VersionRows, settings: EvaluateConfig, manifest: Manifest) -> int:
    """The optimizer steps every subset trains for: ``epochs`` passes over the largest one
    that is evaluated (subsets with synthetic rows left out by :func:`leaked_synthesis` do
    not count)."""
    kept = low_data_mask(train, settings.real_per_class, settings.seed)
    leaked = leaked_synthesis(manifest, settings) is not None
    evaluated = [origins for origins in SUBSETS.values() if not (leaked and "synthetic" in origins)]
    largest = max(int((kept & np.isin(train.origins, origins)).sum()) for origins in evaluated)
    return equal_steps(largest, settings.epochs)


def _score(
    train: VersionRows, test: VersionRows, manifest: Manifest, subset: str, settings: EvaluateConfig
) -> dict[str, Any]:
    classes = manifest.class_names
    if "synthetic" in SUBSETS[subset]:
        leaked = leaked_synthesis(manifest, settings)
        if leaked:
            return {"rows": 0, "left_out": leaked}
    mask = low_data_mask(train, settings.real_per_class, settings.seed) & np.isin(
        train.origins, SUBSETS[subset]
    )
    if not mask.any():
        return {"rows": 0}
    # Mixed rows train on their soft labels (cross-entropy with class probabilities).
    targets = train.labels if train.soft_labels is None else train.soft_labels
    x, y = to_tensor(train.images[mask]), torch.as_tensor(targets[mask])
    # Rows of weight 1 only (no synthetic rows in the subset) train exactly as unweighted.
    weighted = train.weights is not None and bool((train.weights[mask] != 1).any())
    weights_of_rows = torch.as_tensor(train.weights[mask]) if weighted else None
    test_x = to_tensor(test.images)
    weights = metric_weights(test.labels, "balanced_accuracy")
    steps = arm_steps(train, settings, manifest)
    spec = ClassifierSpec(epochs=settings.epochs, steps=steps, grid=settings.grid)
    runs, balanced, per_class, answers = [], [], [], []
    device = pick_device(settings.device, "device")
    for s in range(settings.seeds):
        model = train_classifier(
            x, y, len(classes), seed=settings.seed + s, spec=spec, device=device, weights=weights_of_rows
        )
        right = correct(model, test_x, test.labels)
        answers.append(right)
        runs.append(score(right, None))
        balanced.append(score(right, weights))
        per_class.append(
            [
                float(right[test.labels == c].mean()) if (test.labels == c).any() else None
                for c in range(len(classes))
            ]
        )
    answered = np.stack(answers).astype(np.float64)
    return {
        "rows": int(mask.sum()),
        "steps": spec.steps,
        "mean": float(np.mean(runs)),
        "std": spread(runs),
        "runs": runs,
        "balanced_accuracy": {"mean": float(np.mean(balanced)), "std": spread(balanced), "runs": balanced},
        "per_class": {
            name: (None if per_class[0][c] is None else float(np.mean([run[c] for run in per_class])))
            for c, name in enumerate(classes)
        },
        "_correct": {"accuracy": answered, "balanced_accuracy": answered * weights},
    }


def comparisons(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each subset against its baseline (:data:`BASELINES`): the paired gain in accuracy and
    in balanced accuracy with their 95 % intervals over seeds and test images."""
    compared = {}
    for subset, baseline in BASELINES.items():
        arm, base = results.get(subset, {}), results.get(baseline, {})
        if "_correct" not in arm or "_correct" not in base:
            continue
        compared[subset] = {
            "baseline": baseline,
            **{
                metric: paired_interval(arm["_correct"][metric] - base["_correct"][metric], CONFIDENCE)
                for metric in ("accuracy", "balanced_accuracy")
            },
        }
    return compared


def report(version: Path, settings: EvaluateConfig, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The evaluation document: protocol, classifier recipe and results."""
    manifest = load_manifest(version)
    device = pick_device(settings.device, "device").type
    steps = next((r["steps"] for r in results.values() if r.get("steps")), None)
    return {
        "version_id": manifest.version_id,
        "created": utcnow().isoformat(timespec="seconds"),
        "settings": settings.model_dump(mode="json"),
        "classifier": {
            "name": "ReferenceCNN",
            **asdict(ClassifierSpec(epochs=settings.epochs, steps=steps, grid=settings.grid)),
            "device": device,
            **({"cpu_threads": torch.get_num_threads()} if device == "cpu" else {}),
        },
        "test_rows": manifest.splits["test"].rows,
        "test_per_class": manifest.splits["test"].by_origin_class.get("real", {}),
        "results": {name: {k: v for k, v in r.items() if k != "_correct"} for name, r in results.items()},
        "comparisons": comparisons(results),
        "note": (
            "accuracy on the version's real test split; every subset trains for the same number of "
            "steps; gains are paired with their baseline over seeds and test images, with 95 % intervals"
        ),
    }


def evaluate(
    version: str | Path,
    settings: EvaluateConfig = _DEFAULT_SETTINGS,
    subsets: Sequence[str] = tuple(SUBSETS),
) -> dict[str, Any]:
    """The given subsets (default: all), in this process, reading the version once; see
    :func:`report`."""
    path = Path(version)
    unknown = set(subsets) - set(SUBSETS)
    if unknown:
        raise PipelineError(f"unknown subsets {sorted(unknown)}; use some of {list(SUBSETS)}")
    train, test = load_rows(path, "train"), load_rows(path, "test")
    manifest = load_manifest(path)
    results: dict[str, dict[str, Any]] = {}
    for name in subsets:
        results[name] = reused_result(manifest, results, name) or _score(
            train, test, manifest, name, settings
        )
    return report(path, settings, results)


def accuracy_text(result: dict[str, Any], balanced: bool = False) -> str:
    """A subset's test accuracy (or balanced accuracy) as text: mean ± std over seeds
    ("1 seed": no spread)."""
    if not result["rows"]:
        return "left out (see the report)" if result.get("left_out") else "no rows"
    scores = result["balanced_accuracy"] if balanced else result
    if len(scores["runs"]) == 1:
        return f"{scores['mean']:.4f} (1 seed)"
    return f"{scores['mean']:.4f} ± {scores['std']:.4f}"


def unbalanced_test(document: dict[str, Any]) -> str | None:
    """How the test split's classes differ in size ("2 to 100 rows per class"), or None when
    every class has as many rows (then balanced accuracy is the accuracy)."""
    counts = [n for n in document.get("test_per_class", {}).values() if n]
    if not counts or min(counts) == max(counts):
        return None
    return f"{min(counts):,} to {max(counts):,} rows per class"


def markdown(document: dict[str, Any], chart: str | None = None) -> str:
    """A Markdown table of the results (mean ± std over seeds)."""
    s, steps = document["settings"], document.get("classifier", {}).get("steps")
    lines = [
        f"# Evaluation of {document['version_id']}",
        "",
        f"Reference classifier, {steps or s['epochs']} "
        + ("steps for every subset" if steps else "epochs")
        + f", {s['seeds']} seeds"
        + (f", {s['real_per_class']} real images per class" if s["real_per_class"] else "")
        + f"; accuracy on the real test split ({document['test_rows']} rows).",
    ]
    spread = unbalanced_test(document)
    if spread:
        lines += [
            "",
            f"The test split's classes are unbalanced ({spread}): balanced accuracy is the mean of "
            "the per-class accuracies, every class counted alike.",
        ]
    lines += [
        "",
        "| training rows | count | test accuracy |"
        + (" balanced accuracy |" if spread else "")
        + " gain over its baseline (95 % interval) |",
        "|---|---:|---:|" + ("---:|" if spread else "") + "---|",
    ]
    compared = document.get("comparisons", {})
    for name, result in document["results"].items():
        same = f" (the rows of {result['same_rows_as']})" if "same_rows_as" in result else ""
        cells = [accuracy_text(result)] + ([accuracy_text(result, balanced=True)] if spread else [])
        gain = compared.get(name)
        cells.append(f"{interval_text(gain['accuracy'])} over {gain['baseline']}" if gain else "")
        lines.append(f"| {name}{same} | {result['rows']} | " + " | ".join(cells) + " |")
    left_out = [f"{name}: {r['left_out']}." for name, r in document["results"].items() if r.get("left_out")]
    if left_out:
        lines += ["", *left_out]
    with_rows = [(name, r) for name, r in document["results"].items() if r["rows"]]
    if with_rows:
        classes = list(with_rows[0][1]["per_class"])
        lines += ["", "Per-class test accuracy (mean over seeds):", ""]
        lines += ["| class | " + " | ".join(name for name, _ in with_rows) + " |"]
        lines += ["|---|" + "---:|" * len(with_rows)]
        for c in classes:
            cells = [r["per_class"][c] for _, r in with_rows]
            lines.append(f"| {c} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in cells) + " |")
    if chart:
        lines += ["", f"![test accuracy]({chart})"]
    lines += ["", document["note"] + "."]
    return "\n".join(lines) + "\n"


def bar_chart(document: dict[str, Any], path: Path) -> None:
    """A PNG bar chart of mean test accuracy with ±std whiskers (drawn with Pillow)."""
    results = [(name, r) for name, r in document["results"].items() if r["rows"]]
    width, height, left, bottom, bar = 640, 360, 60, 60, 80
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    top = 30
    scale = height - bottom - top
    for tick in range(0, 11, 2):
        y = height - bottom - scale * tick / 10
        draw.line([(left, y), (width - 10, y)], fill=(225, 225, 225))
        draw.text((10, y - 6), f"{tick / 10:.1f}", fill="black")
    step = (width - left - 20) / max(1, len(results))
    for k, (name, r) in enumerate(results):
        x0 = left + 10 + k * step
        y = height - bottom - scale * r["mean"]
        draw.rectangle([x0, y, x0 + bar, height - bottom], fill=(70, 110, 170))
        spread = scale * r["std"]
        draw.line([(x0 + bar / 2, y - spread), (x0 + bar / 2, y + spread)], fill="black", width=2)
        draw.text((x0, y - 16 - spread), f"{r['mean']:.3f}", fill="black")
        draw.text((x0, height - bottom + 8), name.replace("+", "+\n"), fill="black")
    draw.text((left, 8), f"test accuracy, {document['version_id']}", fill="black")
    image.save(path)


def write_report(version: str | Path, document: dict[str, Any]) -> list[Path]:
    """Write ``attachments/<stem>.json``, ``.md`` and ``.png``; returns their paths."""
    stem = report_stem(document["settings"]["real_per_class"])
    folder = Path(version) / ATTACHMENTS_DIR
    folder.mkdir(exist_ok=True)
    json_path, md_path, png_path = (folder / f"{stem}{ext}" for ext in (".json", ".md", ".png"))
    json_path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    bar_chart(document, png_path)
    md_path.write_text(markdown(document, png_path.name), encoding="utf-8")
    return [json_path, md_path, png_path]
