"""The synthesis stage: train (or load) the GAN, sample per class, filter, measure, gate.

Inputs are the staged training split. With the utility gate on, a validation part is
carved from it first (stratified, seeded): the GAN and the reference classifier never see
it, the gate decides on it alone, and the quality metrics (a report) are measured against
it. The test split is never used for a decision; CAS on it is reported only.
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.config import Config
from pipeline.core.errors import PipelineError
from pipeline.core.hashing import file_sha256
from pipeline.core.progress import REFERENCE, report
from pipeline.core.seeds import derive_seed
from pipeline.evaluate.classifier import (
    ClassifierSpec,
    accuracy,
    extract_features,
    saved_or_trained,
    to_tensor,
    train_classifier,
)
from pipeline.gan import metrics as gm
from pipeline.gan.checkpoint import (
    GanShape,
    check_compatible,
    check_held_out,
    load_checkpoint,
    save_checkpoint,
)
from pipeline.gan.distributed import barrier
from pipeline.gan.filtering import Sampler, SamplerFiles, Spread, sample_until_filled, sampling_trainer
from pipeline.gan.gate import synthesis_device, take_ratio, utility_gate
from pipeline.gan.sample import generate
from pipeline.gan.train import GanTrainer
from pipeline.ingest.splits import validation_masks
from pipeline.ingest.store import RealData

_METRIC_SAMPLES = 1000
# Beside the checkpoints: the reference classifier that training measured FD with, reused
# by sampling and resumed training (when it fits: see saved_or_trained) instead of being
# trained again.
REFERENCE_FILE = "reference.pt"


def fit_validation_masks(data: RealData, config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Fit/validation masks over the training split (all fit when the gate is off)."""
    if not config.synthesis.gate.enabled:
        everything = np.ones(len(data.ids), dtype=bool)
        return everything, ~everything
    return validation_masks(data.ids, data.labels, config.synthesis.gate.validation_fraction, config.seed)


def selection_split(config: Config, fit: RealData) -> tuple[RealData, RealData]:
    """The GAN's training images and the held-out images its best checkpoint is chosen on
    (``synthesis.train.selection_fraction`` of ``fit``, stratified and seeded; each class
    keeps one image to train on). The reference classifier trains on the first part too."""
    fraction = config.synthesis.train.selection_fraction
    if not fraction:
        return fit, fit.subset(np.zeros(len(fit.ids), dtype=bool))
    keep, held_out = validation_masks(fit.ids, fit.labels, fraction, config.seed, stream="selection")
    return fit.subset(keep), fit.subset(held_out)


def train_gan(
    config: Config,
    fit: RealData,
    shape: GanShape,
    out_dir: Path,
    *,
    resume: Path | None = None,
    on_metrics: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train the GAN on ``fit`` less the images :func:`selection_split` holds out; keep
    ``last.pt`` and ``best.pt`` (lowest classifier FD against the held-out images, or with
    ``selection_fraction`` 0 or fewer than two of them, against the training images, which
    rewards memorising). The utility gate's images are not in ``fit``: no choice before the
    gate's own is made on them.

    Returns:
        ``{"checkpoint", "sha256", "history", "best"}`` for the best checkpoint.
    """
    settings = config.synthesis.train
    fit, held_out = selection_split(config, fit)
    trainer = GanTrainer(
        images=fit.images,
        labels=fit.labels,
        shape=shape,
        settings=settings,
        seed=config.seed,
        # The settings that decide the content only: a checkpoint's bytes (and so the ids of
        # its samples) must not depend on where the run writes or how many workers it has.
        config_json=json.dumps(config.content_dict(), sort_keys=True),
        trained_on=list(fit.ids),
    )
    saved = out_dir / REFERENCE_FILE
    if resume is not None:
        trainer.load_state_dict(load_checkpoint(resume, trainer.device), str(resume))
        if not saved.is_file() and (resume.parent / REFERENCE_FILE).is_file():
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(resume.parent / REFERENCE_FILE, saved)  # loaded below if it fits
    # In a distributed run every process trains; rank 0 alone measures, keeps the best and
    # writes checkpoints (the others wait for it at the barrier).
    main = trainer.world.main
    if main:
        reference = _reference(config, fit, shape.num_classes, saved, save=True)
        against = held_out if len(held_out.ids) >= 2 else fit
        real_features = _features(config, reference, to_tensor(against.images))
    history: list[dict[str, float]] = []
    while trainer.step < settings.steps:
        chunk = min(settings.eval_every - trainer.step % settings.eval_every, settings.steps - trainer.step)
        history += trainer.train(chunk, on_metrics=on_metrics if main else None)
        if main:
            trainer.recompute_ema_batchnorm()
            fd = _ema_fd(trainer, config, reference, real_features, against)
            history.append({"step": trainer.step, "fd": fd})
            if on_metrics:
                on_metrics({"step": trainer.step, "fd": fd})
            if not trainer.best or fd < trainer.best["fd"]:
                trainer.best = {
                    "step": trainer.step,
                    "fd": fd,
                    "against": _named(against is held_out, against),
                }
                save_checkpoint(trainer.state_dict(), out_dir / "best.pt")
            save_checkpoint(trainer.state_dict(), out_dir / "last.pt")
        barrier()
    if not main:
        return {"checkpoint": None, "sha256": None, "history": history, "best": {}}
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
    *,
    spread: Spread | None = None,
    scratch: Path | None = None,
) -> dict[str, Any]:
    """Sample, filter, measure and gate synthetic rows from a trained checkpoint.

    Args:
        spread: make the candidates chunk by chunk through it (the flow's Dask cluster;
            see :mod:`pipeline.gan.filtering`), the workers reading the checkpoint and the
            reference classifier that this call writes to ``scratch``, where they write
            the candidates' images. None: in this process.

    Returns:
        ``{"images", "labels", "seeds", "confidence", "d_score", "report", "preview"}``:
        the kept synthetic rows (possibly none, when the gate declines), the figures behind
        them, and (images, labels) of the filtered samples before the gate, for the grid.
    """
    syn = config.synthesis
    fit_mask, val_mask = fit_validation_masks(train, config)
    fit, validation = train.subset(fit_mask), train.subset(val_mask)
    fit, _ = selection_split(config, fit)  # what the GAN and the reference classifier trained on
    state = load_checkpoint(checkpoint)
    check_compatible(state, shape, syn.train, str(checkpoint))
    check_held_out(state, list(validation.ids), str(checkpoint))
    reference = _reference(config, fit, shape.num_classes, checkpoint.parent / REFERENCE_FILE)
    sampler = Sampler(config, shape, sampling_trainer(config, shape, state, str(checkpoint)), reference)

    wanted = {c: syn.count_for(int((train.labels == c).sum())) for c in range(shape.num_classes)}
    files = None
    if spread is not None:  # what the cluster's workers load: the checkpoint and these weights
        scratch.mkdir(parents=True, exist_ok=True)
        torch.save(reference.state_dict(), scratch / REFERENCE_FILE)
        # The device type this process picked, and its CPU threads: the ones the id records.
        device = synthesis_device(config).type
        pinned = config.model_copy(update={"synthesis": syn.model_copy(update={"device": device})})
        threads = torch.get_num_threads() if device == "cpu" else None
        files = SamplerFiles(
            pinned, shape, checkpoint, scratch / REFERENCE_FILE, _reference_spec(config), threads
        )
    pool, kept = sample_until_filled(sampler, wanted, spread=spread, files=files, scratch=scratch)
    rows = {key: values[kept] for key, values in pool.items()}
    counts = np.bincount(rows["labels"], minlength=shape.num_classes)
    short = {class_names[c]: int(counts[c]) for c, n in wanted.items() if counts[c] < n}
    below = rows["confidence"] < syn.filter.min_confidence  # kept by filter.fill_short
    filled = {
        class_names[c]: int(n)
        for c, n in enumerate(np.bincount(rows["labels"][below], minlength=shape.num_classes))
        if n
    }

    chosen = json.loads(state.get("best") or "{}")  # its step, FD and the images it was chosen on
    report: dict[str, Any] = {
        "checkpoint_sha256": file_sha256(checkpoint),
        "checkpoint_step": int(state["step"]),
        **({"checkpoint_chosen": chosen} if chosen else {}),
        "geometry": {"resolution": shape.resolution, "fit": shape.fit, "size": list(shape.size)},
        "candidates": int(len(pool["labels"])),
        "kept_after_filter": int(len(kept)),
        "wanted": int(sum(wanted.values())),
        **({"short": short} if short else {}),
        **({"filled_below_threshold": filled} if filled else {}),
        "metrics": quality_metrics(config, reference, fit, rows, test, shape.num_classes, validation),
    }
    filtered = rows  # the grid shows what the generator makes, whatever the gate decides
    if syn.gate.enabled and len(validation.ids):
        decision = utility_gate(config, fit, validation, rows, class_names)
        report["gate"] = decision
        by_class = decision.get("chosen_ratios")  # synthesis.gate.per_class
        ratio = (
            {class_names.index(n): r for n, r in by_class.items()} if by_class else decision["chosen_ratio"]
        )
        rows = take_ratio(rows, ratio, train, syn)
    report["published"] = int(len(rows["labels"]))
    return {**rows, "report": report, "preview": (filtered["images"], filtered["labels"])}


def quality_metrics(
    config: Config,
    reference,
    fit: RealData,
    rows: dict[str, np.ndarray],
    test: RealData | None,
    num_classes: int,
    held_out: RealData | None = None,
) -> dict[str, Any]:
    """FD, KID, precision/recall, per-class FD (features of the reference classifier) and CAS.

    The real images compared with are ones neither the GAN nor the reference classifier
    trained on: ``held_out`` (the gate's validation part), else the test split (a report,
    not a decision), else, with neither, ``fit`` (``against`` says which).
    """
    if len(rows["labels"]) < 2:
        return {"note": "fewer than 2 synthetic samples kept; no metrics"}
    against, named = _reference_images(held_out, test, fit)
    real = _features(config, reference, to_tensor(against.images))
    fake = _features(config, reference, to_tensor(rows["images"]))
    rng = np.random.default_rng(derive_seed(config.seed, "metrics", 0))
    precision, recall = gm.precision_recall(real[:_METRIC_SAMPLES], fake[:_METRIC_SAMPLES])
    result: dict[str, Any] = {
        "features": config.synthesis.features,
        "against": named,
        "fd": gm.frechet_distance(real, fake),
        "kid": gm.kernel_inception_distance(real, fake, rng=rng),
        "precision": precision,
        "recall": recall,
        "per_class_fd": gm.per_class_frechet(real, against.labels, fake, rows["labels"], num_classes),
    }
    if test is not None and len(test.ids):
        spec = ClassifierSpec(epochs=config.synthesis.gate.classifier_epochs)
        cas_model = train_classifier(
            to_tensor(rows["images"]),
            torch.as_tensor(rows["labels"]),
            num_classes,
            seed=config.seed,
            spec=spec,
            device=synthesis_device(config),
        )
        result["cas_test"] = accuracy(cas_model, to_tensor(test.images), torch.as_tensor(test.labels))
        result["cas_note"] = (
            "classifier trained on synthetic rows only, tested on the real test split (report only)"
        )
    return result


def _reference(config: Config, fit: RealData, num_classes: int, saved: Path, *, save: bool = False):
    """The reference classifier trained on ``fit``, or the one saved at ``saved`` for the
    same images, labels, seed, recipe and device (written there when ``save``)."""
    spec = _reference_spec(config)
    return saved_or_trained(
        fit.images,
        fit.labels,
        num_classes,
        seed=config.seed,
        spec=spec,
        device=synthesis_device(config),
        path=saved,
        save=save,
        on_epoch=lambda e: report(REFERENCE, e, spec.epochs),
    )


def _reference_spec(config: Config) -> ClassifierSpec:
    return ClassifierSpec(epochs=config.synthesis.gate.classifier_epochs)


def _features(config: Config, reference, images: torch.Tensor) -> np.ndarray:
    if config.synthesis.features == "classifier":
        return extract_features(reference, images)
    module, _, name = config.synthesis.features.partition(":")
    try:
        extractor = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f"synthesis.features: cannot load {config.synthesis.features!r}: {exc}") from None
    return np.asarray(extractor(images), dtype=np.float64)


def _reference_images(
    held_out: RealData | None, test: RealData | None, fit: RealData
) -> tuple[RealData, str]:
    """The first of held-out, test and training images with at least two, and its name."""
    for images, name in ((held_out, "held-out validation images"), (test, "test images")):
        if images is not None and len(images.ids) >= 2:
            return images, f"{name} ({len(images.ids)})"
    return fit, f"the GAN's training images ({len(fit.ids)}; nothing held out)"


def _named(held_out: bool, images: RealData) -> str:
    if held_out:
        return f"held-out images ({len(images.ids)})"
    return f"the GAN's training images ({len(images.ids)})"


def _ema_fd(
    trainer: GanTrainer, config: Config, reference, real_features: np.ndarray, against: RealData
) -> float:
    """FD of the EMA generator's samples (classes in the proportions of ``against``)."""
    n = _METRIC_SAMPLES  # however few the real images, as many samples: less noise on that side
    labels = against.labels[np.arange(n) % len(against.labels)]
    seeds = np.asarray([derive_seed(config.seed, "fd", k) for k in range(n)], dtype=np.int64)
    images, _ = generate(
        trainer.G_ema, None, labels, seeds, out_size=trainer.shape.size, fit=trainer.shape.fit
    )
    return gm.frechet_distance(real_features, _features(config, reference, to_tensor(images)))


def synthesis_devices(config: Config) -> dict[str, object]:
    """Where a build's synthesis ran, for its manifest: the device types of GAN training
    (None for a given checkpoint) and of sampling and the classifiers, torch's CPU thread
    count when either is the CPU, and the GPU's name when either is CUDA."""
    content = config.content_dict()["synthesis"]
    devices: dict[str, object] = {
        "training": None if config.synthesis.checkpoint else content["train"]["device"],
        "sampling_and_classifiers": content["device"],
    }
    if "cpu_threads" in content:
        devices["cpu_threads"] = content["cpu_threads"]
    if "cuda" in devices.values():
        devices["cuda_device"] = torch.cuda.get_device_name()
    return devices
