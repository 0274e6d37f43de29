"""dataset-expand: offline expansion of image-classification datasets (library layer)."""

import os

# albumentations asks PyPI for a newer version of itself at import; an offline tool must not.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Arrow's default pool (mimalloc) keeps what its threads freed: reading one 3 MB shard left
# a process 40 MB larger, and a build grew with its source. The system allocator hands it
# back (read before pyarrow's first allocation, so pyarrow must not be imported earlier).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__version__ = "0.5.0"
