"""GAN checkpoints: what they hold, how they are written and read, and the checks before
one is used: made for this data and these network settings (:func:`check_compatible`), and
not trained on the images the utility gate judges its samples on (:func:`check_held_out`).

Checkpoints hold only tensors and plain values and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.config import GanTrainConfig
from pipeline.core.errors import PipelineError
from pipeline.core.hashing import file_sha256
from pipeline.gan.geometry import Fit
from pipeline.gan.models import power_of_two_resolution, train_resolution

CHECKPOINT_FORMAT = "dataset-expand-gan/2"  # 2: own spectral norm (sn_u/sn_v buffers)
# Recorded in every checkpoint: the libraries whose versions shape the weights.
CHECKPOINT_LIBRARIES = ("torch", "torchvision")


@dataclass(frozen=True)
class GanShape:
    """What the networks are built for; derived from the data (and ``synthesis.train``'s
    ``resolution`` and ``fit``), stored in checkpoints."""

    num_classes: int
    channels: int
    height: int
    width: int
    side: int | None = None  # synthesis.train.resolution: None, from the data
    fit: Fit = "stretch"

    @property
    def resolution(self) -> int:
        return train_resolution(self.height, self.width, self.side)

    @property
    def size(self) -> tuple[int, int]:
        """The data's (height, width), which samples are made at."""
        return self.height, self.width

    @property
    def image_array(self) -> tuple[int, ...]:
        """One sample's uint8 array shape: (height, width), or (height, width, 3) for RGB."""
        return self.size + ((3,) if self.channels == 3 else ())


def save_checkpoint(state: dict[str, Any], path: Path) -> str:
    """Write a checkpoint atomically (temp file + rename); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save(state, partial)
    partial.replace(path)
    return file_sha256(path)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        PipelineError: missing, corrupt, or not one of ours.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: checkpoint not found") from None
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as exc:
        raise PipelineError(f"{path}: not a readable checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise PipelineError(
            f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (found {found!r}; retrain with this version)"
        )
    return state


def provenance(state: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records of how it was made: ``config`` and ``settings`` (dicts) and
    ``libraries`` (name to version; empty for checkpoints saved before they were recorded)."""
    return {
        "config": json.loads(state.get("config") or "{}"),
        "settings": json.loads(state["settings"]),
        "libraries": dict(state.get("libraries", {})),
    }


def id_digests(ids: list[str]) -> list[str]:
    """The record of which images a checkpoint trained on: the first 16 hex digits of each
    source id's sha256, sorted (the ids themselves, file names, stay out of the file)."""
    return sorted(hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in ids)


def check_held_out(state: dict[str, Any], held_out: list[str], where: str) -> None:
    """Refuse a checkpoint that trained on any of the ``held_out`` images (the utility gate's
    validation part): its samples would be judged on images the generator learned.

    Raises:
        PipelineError: it trained on some of them, or it does not record what it trained on.
    """
    if not len(held_out):
        return
    if state.get("trained_on") is None:
        raise PipelineError(
            f"{where}: the checkpoint does not record which images it trained on, so the utility gate "
            "cannot judge its samples on images it never saw; train it again (expand train-gan "
            "holds the gate's images out) or set synthesis.gate.enabled: false"
        )
    seen = set(json.loads(state["trained_on"])) & set(id_digests(list(held_out)))
    if seen:
        raise PipelineError(
            f"{where}: the checkpoint trained on {len(seen)} of the {len(held_out)} images the utility "
            "gate validates on, which would judge its samples on images the generator learned; train "
            "it with this config (expand train-gan holds them out) or set synthesis.gate.enabled: false"
        )


def check_compatible(state: dict[str, Any], shape: GanShape, settings: GanTrainConfig, where: str) -> None:
    """Refuse a checkpoint made for other data or network settings."""
    expected = [shape.num_classes, shape.channels, shape.height, shape.width]
    if list(state["shape"]) != expected:
        raise PipelineError(
            f"{where}: made for (classes, channels, height, width) = "
            f"{list(state['shape'])}, this data is {expected}"
        )
    # Checkpoints saved before native resolutions did not record theirs: a power of two.
    resolution = state.get("resolution", power_of_two_resolution(max(shape.height, shape.width)))
    if resolution != shape.resolution:
        raise PipelineError(
            f"{where}: trained at {resolution}x{resolution}; this version trains "
            f"{shape.height}x{shape.width} images at {shape.resolution}x{shape.resolution}: retrain"
        )
    fit = state.get("fit", "stretch")  # checkpoints before synthesis.train.fit: stretched
    if fit != shape.fit and shape.height != shape.width:
        raise PipelineError(
            f"{where}: trained on images fitted by {fit!r}, the config has synthesis.train.fit="
            f"{shape.fit!r}: set it to {fit!r} or retrain"
        )
    saved = json.loads(state["settings"])
    for key in ("width", "z_dim"):
        if saved.get(key) != getattr(settings, key):
            raise PipelineError(
                f"{where}: made with synthesis.train.{key}={saved.get(key)}, "
                f"config has {getattr(settings, key)}"
            )
