import pytest

from conftest import make_imagefolder
from pipeline.build import load_config
from pipeline.build.starter import starter_config
from pipeline.core.errors import SourceError


def test_starter_config_describes_the_source_and_loads(tmp_path):
    source = make_imagefolder(tmp_path / "my pets", {"cat": 6, "dog": 3}, size=(10, 8))
    text = starter_config(source)
    assert text.startswith(f"# Starter config for {source} (written by `expand init`).")
    assert "Found 9 images in 2 classes (3 to 6 per class), 10x8 RGB, no splits" in text
    out = tmp_path / "expand.yaml"
    out.write_text(text)
    config = load_config(out)
    assert config.name == "my-pets" and config.source.kind == "imagefolder" and config.source.path == source
    with pytest.raises(SourceError):
        starter_config(tmp_path / "missing")
