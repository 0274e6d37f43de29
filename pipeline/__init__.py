"""dataset-expand: offline expansion of image-classification datasets (library layer)."""

__version__ = "0.2.0"
