"""The torch device a setting names: 'auto' is cuda, then mps, then cpu."""

from __future__ import annotations

import torch

from pipeline.config import Config
from pipeline.errors import ConfigError


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
