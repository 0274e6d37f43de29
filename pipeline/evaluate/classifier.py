"""The reference classifier: one small CNN used for the GAN metrics, the utility gate and
evaluation, so every figure the project reports comes from the same yardstick.

The network adapts to the resolution: conv3x3-BN-ReLU blocks that double the width (32 to
128) with max pooling between them while the map is at least 8 pixels, global average
pooling, dropout, a linear head (with ``grid`` 2, the head reads the last map pooled to 2x2:
``expand evaluate``'s default, chosen on validation images; metrics, tuning and the gate
use the global head unless configured). It is small on purpose: the gate trains it many times.
Its pooled features (up to 128 values) replace Inception features for Fréchet distance,
KID and precision/recall, which need no downloaded weights.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ClassifierSpec:
    """Fixed, documented training recipe (AdamW, one-cycle schedule, no augmentation).

    ``steps``: train for exactly this many optimizer steps, whatever the number of images
    (``epochs`` is then ignored): arms compared with each other get the same compute, so
    a gain is the data's and not more training's.
    """

    epochs: int = 30
    steps: int | None = None
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    width: int = 32
    grid: int = 1  # the head reads the last map average-pooled to grid x grid (1: global pooling)


class ReferenceCNN(nn.Module):
    """See the module; ``grid`` above 1 gives the head the last map pooled to grid x grid
    (where things are, not only what), while :meth:`embed` stays the global average."""

    def __init__(self, *, channels: int, num_classes: int, resolution: int, width: int = 32, grid: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, out_ch, size = channels, width, resolution
        while True:
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU()]
            in_ch = out_ch
            if size < 8 or out_ch >= 4 * width:
                break
            layers.append(nn.MaxPool2d(2))
            size //= 2
            out_ch = min(out_ch * 2, 4 * width)
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.3)
        self.grid = grid
        self.head = nn.Linear(in_ch * grid * grid, num_classes)
        self.feature_dim = in_ch

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (global average pool)."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grid == 1:
            return self.head(self.dropout(self.embed(x)))
        pooled = F.adaptive_avg_pool2d(self.features(x), self.grid).flatten(1)
        return self.head(self.dropout(pooled))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) -> float tensor (N, C, H, W) in [0, 1]."""
    array = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array)).float().div_(255.0)


def new_classifier(
    shape: tuple[int, ...], num_classes: int, spec: ClassifierSpec, device: str | torch.device = "cpu"
) -> ReferenceCNN:
    """An untrained reference CNN for images of ``shape`` (C, H, W), channels_last on ``device``
    (initialised from torch's global RNG)."""
    return ReferenceCNN(
        channels=shape[0],
        num_classes=num_classes,
        resolution=max(shape[1:]),
        width=spec.width,
        grid=spec.grid,
    ).to(device, memory_format=torch.channels_last)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    seed: int,
    spec: ClassifierSpec = ClassifierSpec(),
    device: str | torch.device = "cpu",
    on_epoch: Callable[[int], None] | None = None,
    weights: torch.Tensor | None = None,
) -> ReferenceCNN:
    """Train the reference CNN on ``images`` (N, C, H, W in [0, 1]); ``on_epoch`` gets the
    number of epochs done after each. ``labels``: class indices, or (N, classes) class
    probabilities (soft labels). ``weights``: each row's loss weight (N; None: all 1), the
    loss being the batch mean of weight x cross-entropy, so a row of weight 0.5 counts half.

    Initialisation and shuffling depend only on ``seed``; the global RNG is left as it was.
    """
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = new_classifier(images.shape[1:], num_classes, spec, device)
        shuffle = torch.Generator().manual_seed(seed)
        total = training_steps(len(images), spec)
        optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        # At least 10 scheduled steps: OneCycleLR divides by zero when pct_start x total = 1
        # (5 steps); a shorter training just stops early in the warm-up.
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=spec.lr, total_steps=max(10, total), pct_start=0.2
        )
        model.train()
        done, epoch = 0, 0
        # By epochs: exactly ``spec.epochs`` passes (a last batch of one image is skipped).
        passes = spec.epochs if spec.steps is None else None
        while done < total and (passes is None or epoch < passes):
            before = done
            order = torch.randperm(len(images), generator=shuffle)
            for start in range(0, len(images), spec.batch_size):
                batch = order[start : start + spec.batch_size]
                if len(batch) < 2:  # BatchNorm needs two samples
                    continue
                x = images[batch].to(device).contiguous(memory_format=torch.channels_last)
                y = labels[batch].to(device)
                if weights is None:
                    loss = F.cross_entropy(model(x), y)
                else:
                    rows = F.cross_entropy(model(x), y, reduction="none")
                    loss = (rows * weights[batch].to(device)).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                done += 1
                if done == total:
                    break
            epoch += 1
            if on_epoch:
                on_epoch(epoch)
            if done == before:  # not one batch of two images: nothing to train on
                break
    model.eval()
    return model


def training_steps(rows: int, spec: ClassifierSpec) -> int:
    """Optimizer steps of a training on ``rows`` images: ``spec.steps``, or ``spec.epochs``
    passes over them."""
    if spec.steps is not None:
        return spec.steps
    return spec.epochs * max(1, int(np.ceil(rows / spec.batch_size)))


def equal_steps(largest: int, epochs: int, batch_size: int = ClassifierSpec.batch_size) -> int:
    """The steps every compared arm trains for: ``epochs`` passes over the largest arm's
    ``largest`` rows (the smaller arms make more passes over theirs)."""
    return training_steps(largest, ClassifierSpec(epochs=epochs, batch_size=batch_size))


def saved_or_trained(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    seed: int,
    spec: ClassifierSpec,
    device: torch.device,
    path: Path,
    save: bool = False,
    on_epoch: Callable[[int], None] | None = None,
) -> ReferenceCNN:
    """:func:`train_classifier` on uint8 ``images``, unless ``path`` holds one trained on
    the same images, labels, seed, recipe and device type (and CPU thread count, which
    changes the sums): that one is loaded, the same weights as training again. A trained
    one is written to ``path`` when ``save``. ``on_epoch`` hears of training only (from 0).
    """
    threads = torch.get_num_threads() if device.type == "cpu" else None
    digest = hashlib.sha256(repr((spec, seed, num_classes, images.shape, device.type, threads)).encode())
    digest.update(np.ascontiguousarray(images).data)
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    key = digest.hexdigest()
    state = _load_saved(path)
    if state.get("key") == key:
        with torch.random.fork_rng(devices=[]):
            model = new_classifier(to_tensor(images[:1]).shape[1:], num_classes, spec, device)
        model.load_state_dict(state["weights"])
        return model.eval()
    if on_epoch:
        on_epoch(0)
    x, y = to_tensor(images), torch.as_tensor(labels)
    model = train_classifier(x, y, num_classes, seed=seed, spec=spec, device=device, on_epoch=on_epoch)
    if save:  # atomically: a killed run leaves no half-written file to load
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".partial")
        torch.save({"key": key, "weights": model.state_dict()}, partial)
        partial.replace(path)
    return model


def _load_saved(path: Path) -> dict:
    """What :func:`saved_or_trained` saved at ``path``, or {} when there is nothing there
    or it cannot be read (the classifier is then trained again)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        return {}
    return state if isinstance(state, dict) else {}


@torch.no_grad()
def predict_proba(model: ReferenceCNN, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Class probabilities, (N, num_classes), on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    parts = [
        F.softmax(model(images[i : i + batch_size].to(device)), dim=1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(parts)


@torch.no_grad()
def extract_features(model: ReferenceCNN, images: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Penultimate features as float64 numpy, (N, feature_dim)."""
    device = next(model.parameters()).device
    model.eval()
    parts = [
        model.embed(images[i : i + batch_size].to(device)).double().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(parts).numpy()


def correct(model: ReferenceCNN, images: torch.Tensor, labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """Whether the top-1 prediction of each image is its label (booleans, N)."""
    return predict_proba(model, images).argmax(dim=1).numpy() == np.asarray(labels)


def accuracy(model: ReferenceCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float(correct(model, images, labels).mean())


def metric_weights(labels: np.ndarray | torch.Tensor, metric: str) -> np.ndarray | None:
    """Each image's weight in ``metric``, a mean of ``weights * correct``: None (every image
    alike) for ``accuracy``; for ``balanced_accuracy``, N / (classes present * the image's
    class count), which makes the mean the mean of the per-class accuracies (each class
    alike, however many images it has)."""
    if metric == "accuracy":
        return None
    _, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    return len(inverse) / (len(counts) * counts[inverse])


def score(right: np.ndarray, weights: np.ndarray | None) -> float:
    """The metric of :func:`metric_weights` from which images were right (booleans)."""
    return float(right.mean() if weights is None else (right * weights).mean())
