"""Can the GAN add rows that help by staying near the real images? GAN inversion: each
real training image's latent is found by gradient descent on the pixel error through the
trained generator (its class given), and new rows are drawn at the latent neighbours
z* + sigma * eps, hard-labelled with that image's class (a generator-made variation of a
real image, as DAGAN-style augmentation makes, without training another network).

For one version (built with the gate off, e.g. by ``bench/ablation.py --workdir``, its
generator at ``gan/generator.pt``), the student (the reference classifier, ``--grid`` head,
``--steps`` steps, ``--seeds`` seeds) trains on real + augmented (the baseline) and on
real + augmented + one neighbour per real image at each ``--sigmas`` (0: the generator's
reconstruction of each image itself). Each arm is scored on the whole test split, paired
with the baseline over seeds and images (95 %); the baseline's first network reports how
many neighbours it puts in their image's class. The test split only reports.

    python bench/inversion.py --version V --sigmas 0 0.5 1 --json bench/results/inversion-k100.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from gan_quality import note

from pipeline.config import Config
from pipeline.evaluate.classifier import ClassifierSpec, correct, predict_proba, to_tensor, train_classifier
from pipeline.evaluate.rows import load_rows
from pipeline.evaluate.stats import paired_interval, spread
from pipeline.gan.checkpoint import GanShape, load_checkpoint
from pipeline.gan.filtering import sampling_trainer
from pipeline.gan.geometry import from_square
from pipeline.version.manifest import load_manifest


def invert(generator, images: torch.Tensor, labels: torch.Tensor, size, fit, steps: int, prior: float):
    """The latents whose generated images (class ``labels``) are nearest ``images`` (in
    [-1, 1]) in mean squared error, plus ``prior`` x |z|^2 to stay where G was trained.

    Returns:
        The latents and each image's pixel error at the last step (before its update).
    """
    generator.eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    z = torch.randn(len(images), generator.z_dim, generator=torch.Generator().manual_seed(0))
    z.requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        made = from_square(generator(z, labels), size, fit)
        error = (made - images).pow(2).flatten(1).mean(dim=1)
        (error.sum() + prior * z.pow(2).sum()).backward()
        optimizer.step()
    return z.detach(), error.detach()


@torch.no_grad()
def neighbours(generator, z: torch.Tensor, labels: torch.Tensor, sigma: float, size, fit) -> torch.Tensor:
    """One image per latent at z + sigma * eps, as the classifier's [0, 1] tensors."""
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    made = from_square(generator(z + sigma * noise, labels), size, fit)
    pixels = ((made.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return to_tensor(pixels[:, 0].numpy() if pixels.shape[1] == 1 else pixels.permute(0, 2, 3, 1).numpy())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=Path, required=True)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--invert-steps", type=int, default=300)
    parser.add_argument("--prior", type=float, default=1e-3, help="weight of |z|^2 in the inversion")
    parser.add_argument("--steps", type=int, default=940, help="optimizer steps of every network")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--grid", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()

    manifest = load_manifest(args.version)
    config = Config.model_validate(manifest.config)
    state = load_checkpoint(args.version / "gan" / "generator.pt")
    classes, channels, height, width = state["shape"]
    shape = GanShape(classes, channels, height, width, state.get("resolution"), state.get("fit", "stretch"))
    generator = sampling_trainer(config, shape, state, str(args.version)).G_ema.cpu()  # beside the rows

    test = load_rows(args.version, "test")
    test_x = to_tensor(test.images)
    train = load_rows(args.version, "train")
    kept = np.isin(train.origins, ["real", "augmented"])
    x, y = to_tensor(train.images[kept]), torch.as_tensor(train.labels[kept].copy())
    real = train.origins == "real"
    real_x, real_y = to_tensor(train.images[real]), torch.as_tensor(train.labels[real].copy())
    spec = ClassifierSpec(steps=args.steps, grid=args.grid)

    def scored(images, labels) -> tuple[np.ndarray, list]:
        models = [train_classifier(images, labels, classes, seed=s, spec=spec) for s in range(args.seeds)]
        answers = np.stack([correct(m, test_x, test.labels) for m in models]).astype(np.float64)
        return answers, models

    results: dict = {
        "settings": json.loads(json.dumps(vars(args), default=str)),
        "threads": torch.get_num_threads(),
        "real_augmented_rows": len(y),
        "real_rows": len(real_y),
        "test_rows": len(test.labels),
    }
    baseline, models = scored(x, y)
    results["real+augmented"] = {
        "mean": float(baseline.mean()),
        "std": spread(baseline.mean(axis=1).tolist()),
    }
    note(f"real+augmented {baseline.mean():.4f}", started)
    z, error = invert(
        generator, real_x * 2 - 1, real_y, (height, width), shape.fit, args.invert_steps, args.prior
    )
    results["inversion"] = {
        "pixel_mse_mean": float(error.mean()),  # on [-1, 1] images
        "pixel_mse_quartiles": [float(q) for q in np.quantile(error.numpy(), [0.25, 0.5, 0.75])],
        "latent_norm_mean": float(z.norm(dim=1).mean()),
        "seconds": round(time.perf_counter() - started, 1),  # since the start, the baseline's too
    }
    note(f"inversion: {json.dumps(results['inversion'])}", started)
    for sigma in args.sigmas:
        made = neighbours(generator, z, real_y, sigma, (height, width), shape.fit)
        agrees = float((predict_proba(models[0], made).argmax(dim=1) == real_y).double().mean())
        answers, _ = scored(torch.cat([x, made]), torch.cat([y, real_y]))
        runs = answers.mean(axis=1)
        found = {
            "mean": float(runs.mean()),
            "std": spread(runs.tolist()),
            "gain_over_real_augmented": paired_interval(answers - baseline),
            "synthetic_rows": len(real_y),
            "baseline_network_agrees_with_label": agrees,
        }
        results[f"sigma={sigma:g}"] = found
        gain = found["gain_over_real_augmented"]
        note(
            f"sigma={sigma:g}: {found['mean']:.4f}, gain {gain['gain']:+.4f} "
            f"[{gain['low']:+.4f}, {gain['high']:+.4f}], agrees {agrees:.3f}",
            started,
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
