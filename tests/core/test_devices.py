import pytest
import torch

from pipeline.core.devices import pick_device
from pipeline.core.errors import ConfigError


def test_pick_device_takes_cpu_and_auto_and_names_the_key_of_a_missing_accelerator(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"synthesis.train.device: cuda is not available .*use auto or cpu"):
        pick_device("cuda", key="synthesis.train.device")
    with pytest.raises(ConfigError, match="^device: mps is not available"):
        pick_device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")


def test_peak_memory_is_the_process_peak_on_the_cpu_and_unknown_elsewhere():
    import torch

    from pipeline.core.devices import peak_memory_gib

    before = peak_memory_gib(torch.device("cpu"))
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB more, touched
    assert before > 0.01 and peak_memory_gib(torch.device("cpu")) >= before
    assert float(block.sum()) > 0
    assert peak_memory_gib(torch.device("meta")) is None
