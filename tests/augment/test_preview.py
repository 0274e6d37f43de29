import numpy as np
from PIL import Image


def test_preview_shows_the_mixed_copies(tiny_config, tmp_path):
    from pipeline.augment.preview import preview

    plain = preview(tiny_config(), 6, tmp_path / "plain.png")
    mixed = preview(
        tiny_config("augment.mix.method=cutmix", "augment.mix.fraction=1"), 6, tmp_path / "mixed.png"
    )
    with Image.open(plain) as a, Image.open(mixed) as b:
        assert a.size == b.size and np.asarray(a).tolist() != np.asarray(b).tolist()
