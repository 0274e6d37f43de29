"""dataset-expand: offline expansion of image-classification datasets (library layer)."""

import os

# albumentations asks PyPI for a newer version of itself at import; an offline tool must not.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.3.0"
