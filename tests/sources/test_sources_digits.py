import numpy as np

from conftest import read_source


def test_digits_is_embedded_and_scaled():
    reader, samples = read_source("digits")
    assert reader.class_names == [str(i) for i in range(10)] and reader.mode == "L"
    assert len(samples) == 1797 and samples[0].pixels.shape == (8, 8)
    assert samples[0].pixels.dtype == np.uint8 and max(s.pixels.max() for s in samples) == 255
    assert all(s.split is None for s in samples)


def test_open_digits_takes_class_names():
    import pytest

    from pipeline.core.errors import SourceError
    from pipeline.sources.digits import open_digits

    names = [f"digit-{i}" for i in range(10)]
    reader = open_digits(names)
    assert reader.class_names == names and reader.count == 1797
    first = next(iter(reader))
    assert first.source_id == "digits/0000" and first.label == 0 and first.pixels.shape == (8, 8)
    with pytest.raises(SourceError, match="digits: source.class_names has 2 names but the data has 10"):
        open_digits(["a", "b"])
