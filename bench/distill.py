"""Does a stronger teacher make synthetic rows help? Knowledge distillation through the
GAN's images (Hinton et al. 2015: an ensemble's soft labels on a transfer set).

``synthesis.soft_labels`` labels synthetic rows with the reference classifier the GAN
measured itself with: one network, trained on the real images only. Here the teacher is
an ensemble of ``--teachers`` reference classifiers (the ``--grid`` head) trained on the
version's real and augmented rows, each row of the transfer set labelled by the mean of
their softmax at temperature T. Per version (built with the gate off, e.g. by
``bench/ablation.py --workdir``; the real and augmented rows must be the same in all) and
temperature, the student (the same network, ``--steps`` steps, ``--seeds`` seeds) trains on

- real + augmented, hard labels: the baseline;
- real + augmented (hard) + synthetic (the teacher's soft labels): do the images carry the
  teacher's knowledge, on top of the real rows?
- real + augmented, all with the teacher's soft labels (no synthetic rows): the control,
  distillation without the GAN;
- with ``--vetted P [P ...]``: real + augmented + the synthetic rows the ensemble (T=1) puts
  in their conditioning class with probability at least P, hard-labelled with that class:
  the teacher as a filter instead of a labeller;
- with ``--oracle K``: real + augmented + K other real training images per class from
  ``--tarball`` (not in the version), hard and soft-labelled: the rows a perfect generator
  would add, the ceiling of what synthetic rows can give at that ratio.

Each is scored on the whole test split, paired with the baseline over seeds and images
(95 %). The test split only reports: nothing here is chosen on it.

    python bench/distill.py --versions V1 V2 --teachers 3 --temperatures 1 3 --json out.json
    python bench/distill.py --versions V1 --temperatures 1 --oracle 100 --json oracle.json
    python bench/distill.py --versions V1 --temperatures --vetted 0.5 0.9 --json vetted.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from gan_quality import TARBALL, note
from PIL import Image
from torch.nn import functional as F

from pipeline.evaluate.classifier import ClassifierSpec, correct, predict_proba, to_tensor, train_classifier
from pipeline.evaluate.rows import load_rows
from pipeline.evaluate.stats import paired_interval, spread
from pipeline.version.manifest import load_manifest


def other_real(
    tarball: Path, used: set[str], classes: list[str], per_class: int
) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` seeded training images of each class from ``tarball`` that are not in
    ``used`` (the version's source ids, ``train/<class>/<file>``)."""
    rng = np.random.default_rng(12345)
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar if m.isfile() and m.name.count("/") == 2 and m.name not in used}
        names = sorted(members)
        picked = []
        for name in classes:
            pool = [n for n in names if n.startswith(f"train/{name}/")]
            picked += [pool[k] for k in sorted(rng.choice(len(pool), per_class, replace=False))]
        tar.extractall(tmp, members=[members[n] for n in picked], filter="data")
        images = np.stack([np.asarray(Image.open(Path(tmp) / n)) for n in picked])
    return images, np.asarray([classes.index(n.split("/")[1]) for n in picked])


def soft_labels(logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """The ensemble's class probabilities: the mean of each member's softmax at ``temperature``."""
    return torch.stack([F.softmax(member / temperature, dim=1) for member in logits]).mean(dim=0)


def logits_of(model, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=Path, nargs="+", required=True)
    parser.add_argument("--teachers", type=int, default=3)
    parser.add_argument("--temperatures", type=float, nargs="*", default=[1.0])
    parser.add_argument(
        "--vetted", type=float, nargs="*", default=[], help="also: rows the ensemble gives P of their class"
    )
    parser.add_argument("--steps", type=int, default=940, help="optimizer steps of every network")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--grid", type=int, default=2)
    parser.add_argument(
        "--oracle", type=int, default=0, help="also: K other real images per class from --tarball"
    )
    parser.add_argument("--tarball", type=Path, default=TARBALL)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    spec = ClassifierSpec(steps=args.steps, grid=args.grid)
    test = load_rows(args.versions[0], "test")
    test_x = to_tensor(test.images)
    trains = [load_rows(v, "train") for v in args.versions]
    kept = [np.isin(t.origins, ["real", "augmented"]) for t in trains]
    if any(
        not np.array_equal(t.source_ids[k], trains[0].source_ids[kept[0]])
        for t, k in zip(trains, kept, strict=True)
    ):
        raise SystemExit(
            "the versions' real and augmented rows differ: build them from one source and recipe"
        )
    first = trains[0]
    x, y = to_tensor(first.images[kept[0]]), torch.as_tensor(first.labels[kept[0]].copy())
    classes = int(y.max()) + 1
    hard = F.one_hot(y, classes).float()

    def trained(images, labels, seed):
        return train_classifier(images, labels, classes, seed=seed, spec=spec)

    def scored(images, labels) -> np.ndarray:
        return np.stack(
            [correct(trained(images, labels, s), test_x, test.labels) for s in range(args.seeds)]
        ).astype(np.float64)

    results: dict = {
        "settings": json.loads(json.dumps(vars(args), default=str)),
        "threads": torch.get_num_threads(),
        "real_augmented_rows": len(y),
        "test_rows": len(test.labels),
    }
    teachers = [trained(x, y, 1000 + i) for i in range(args.teachers)]  # seeds apart from the students'
    members = [correct(t, test_x, test.labels).mean() for t in teachers]
    ensemble = torch.stack([predict_proba(t, test_x) for t in teachers]).mean(dim=0)
    results["teacher"] = {
        "members_test_accuracy": [float(m) for m in members],
        "ensemble_test_accuracy": float((ensemble.argmax(dim=1).numpy() == test.labels).mean()),
    }
    note(f"teacher: {json.dumps(results['teacher'])}", started)
    baseline = scored(x, y)
    results["real+augmented"] = {
        "mean": float(baseline.mean()),
        "std": spread(baseline.mean(axis=1).tolist()),
    }
    note(f"real+augmented {baseline.mean():.4f}", started)
    own = [logits_of(t, x) for t in teachers]
    transfer = {}  # per version: its synthetic images, their conditioning class, each teacher's logits
    for version, train in zip(args.versions, trains, strict=True):
        synthetic = train.origins == "synthetic"
        syn_x = to_tensor(train.images[synthetic])
        transfer[version.name] = (
            syn_x,
            torch.as_tensor(train.labels[synthetic].copy()),
            [logits_of(t, syn_x) for t in teachers],
        )

    def arm(name: str, answers: np.ndarray, **extra) -> dict:
        runs = answers.mean(axis=1)
        found = {
            "mean": float(runs.mean()),
            "std": spread(runs.tolist()),
            "gain_over_real_augmented": paired_interval(answers - baseline),
            **extra,
        }
        gain = found["gain_over_real_augmented"]
        note(
            f"{name}: {found['mean']:.4f}, gain {gain['gain']:+.4f} "
            f"[{gain['low']:+.4f}, {gain['high']:+.4f}]",
            started,
        )
        return found

    def vetted(name: str, thresholds: list[float]) -> dict:
        """The synthetic rows the ensemble (T=1) puts in their conditioning class with
        probability >= each threshold, hard-labelled with that class."""
        syn_x, syn_y, logits = transfer[name]
        probability = soft_labels(logits, 1.0)
        own_class = probability.gather(1, syn_y[:, None])[:, 0]
        found = {}
        for threshold in thresholds:
            keep = (probability.argmax(dim=1) == syn_y) & (own_class >= threshold)
            labels = F.one_hot(syn_y[keep], classes).float()
            found[f"vetted P>={threshold:g} {name}"] = arm(
                f"vetted P>={threshold:g} {name} ({int(keep.sum())} of {len(syn_y)} synthetic)",
                scored(torch.cat([x, syn_x[keep]]), torch.cat([hard, labels])),
                synthetic_rows=int(keep.sum()),
                candidates=len(syn_y),
            )
        return found

    if args.oracle:
        class_names = load_manifest(args.versions[0]).class_names
        oracle_images, oracle_labels = other_real(
            args.tarball, set(first.source_ids.tolist()), class_names, args.oracle
        )
        oracle_x = to_tensor(oracle_images)
        oracle_logits = [logits_of(t, oracle_x) for t in teachers]
        oracle_hard = F.one_hot(torch.as_tensor(oracle_labels), classes).float()
        results["oracle (other real images, hard)"] = arm(
            f"oracle: {len(oracle_labels)} other real images, hard",
            scored(torch.cat([x, oracle_x]), torch.cat([hard, oracle_hard])),
            rows=len(oracle_labels),
        )
    if args.vetted:
        for name in transfer:
            results.update(vetted(name, args.vetted))
            if args.json:
                args.json.write_text(json.dumps(results, indent=1) + "\n")
    for temperature in args.temperatures:
        key = f"T={temperature:g}"
        results[key] = {
            "control (real+augmented, soft)": arm(f"{key} control", scored(x, soft_labels(own, temperature)))
        }
        if args.oracle:
            labels = soft_labels(oracle_logits, temperature)
            results[key]["oracle (other real images, soft)"] = arm(
                f"{key} oracle, soft",
                scored(torch.cat([x, oracle_x]), torch.cat([hard, labels])),
                rows=len(oracle_labels),
                teacher_agrees_with_label=float((labels.argmax(dim=1).numpy() == oracle_labels).mean()),
            )
        for name, (syn_x, syn_y, logits) in transfer.items():
            labels = soft_labels(logits, temperature)
            results[key][name] = arm(
                f"{key} {name} ({len(syn_y)} synthetic)",
                scored(torch.cat([x, syn_x]), torch.cat([hard, labels])),
                synthetic_rows=len(syn_y),
                teacher_agrees_with_conditioning_class=float((labels.argmax(dim=1) == syn_y).double().mean()),
            )
            if args.json:  # after each arm, so a run cut short keeps its figures
                args.json.write_text(json.dumps(results, indent=1) + "\n")
    results["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
