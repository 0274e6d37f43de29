"""The torch device a setting names: 'auto' is cuda, then mps, then cpu."""

from __future__ import annotations

import torch

from pipeline.core.errors import ConfigError


def pick_device(name: str, key: str = "device") -> torch.device:
    """The device ``name`` names on this machine.

    Raises:
        ConfigError: ``name`` asks for cuda or mps and this machine has none (names ``key``).
    """
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ConfigError(f"{key}: {name} is not available on this machine (use auto or cpu)")
    return torch.device(name)


def peak_memory_gib(device: torch.device) -> float | None:
    """The most memory used so far, in GiB: on CUDA, what torch allocated on ``device`` (the
    training's own tensors); on the CPU, the process's peak resident size (all of it, data
    and libraries included); None where torch does not say (mps)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    if device.type == "cpu":
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return None
