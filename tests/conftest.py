"""Shared fixtures: small datasets written by the tests themselves, and Prefect isolation."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import tempfile
from pathlib import Path

# Prefect reads its settings at import: isolate it before any test imports it.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.build import load_config  # noqa: E402

RECIPE = [{"Affine": {"rotate": [-20, 20], "p": 1.0}}, {"RandomBrightnessContrast": {"p": 0.5}}]


def random_image(rng: np.random.Generator, size=(8, 8), mode="RGB") -> Image.Image:
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_imagefolder(
    root: Path, per_class: dict[str, int], splits=None, mode="RGB", size=(8, 8), seed=0
) -> Path:
    """``root/[split/]class/img_k.png`` with random pixels."""
    rng = np.random.default_rng(seed)
    for split in splits or [None]:
        for name, count in per_class.items():
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                random_image(rng, size, mode).save(folder / f"img_{k:03d}.png")
    return root


def make_parquet(path: Path, labels: list, class_names=None, mode="RGB", seed=0) -> Path:
    """An HF-style Parquet file; ``class_names`` go into the ClassLabel metadata."""
    rng = np.random.default_rng(seed)
    images = [{"bytes": png_bytes(random_image(rng, mode=mode)), "path": None} for _ in labels]
    label_type = pa.string() if labels and isinstance(labels[0], str) else pa.int64()
    table = pa.table(
        {
            "image": pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "label": pa.array(labels, label_type),
        }
    )
    if class_names:
        meta = (
            '{"info": {"features": {"image": {"_type": "Image"}, "label": {"names": '
            + str(list(class_names)).replace("'", '"')
            + ', "_type": "ClassLabel"}}}}'
        )
        table = table.replace_schema_metadata({"huggingface": meta})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def make_cifar(folder: Path, per_batch: int = 6, batches=("data_batch_1", "test_batch"), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({b"label_names": names}, handle, protocol=2)
    for name in batches:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [int(x) for x in rng.integers(0, 10, per_batch)],
        }
        with (folder / name).open("wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    return folder


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_mnist(folder: Path, train=12, test=4, gz=True, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, (count, 8, 8), dtype=np.uint8)
        labels = np.arange(count) % 3
        for kind, data in (("images-idx3", images), ("labels-idx1", labels)):
            raw = idx_bytes(data)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw, mtime=0))
            else:
                (folder / name).write_bytes(raw)
    return folder


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return make_imagefolder(tmp_path / "src", {"cat": 6, "dog": 4, "eel": 5})


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_folder: Path):
    """A config over ``tiny_folder`` with 2 copies, small shards, one worker, writing under tmp_path."""

    def make(*overrides: str):
        base = [
            "source.kind=imagefolder",
            f"source.path={tiny_folder}",
            f"output.root={tmp_path / 'out'}",
            "augment.copies_per_image=2",
            f"augment.transforms={json.dumps(RECIPE)}",
            "output.shard_size=7",
            "split.test_fraction=0.34",
            "runner.workers=1",  # in-process, so monkeypatches reach the shard writer
        ]
        return load_config(None, [*base, *overrides])

    return make


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite) for every flow test of the session."""
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        # Prefect binds its console log handler to sys.stderr at the first run: make that
        # the session's stream, not a test's capsys stream that closes after the test.
        flow(lambda: None, name="warm-up")()
        yield


def mean_pixel_features(images):
    """A plug-in feature extractor for tests: per-channel means and spreads."""
    return np.concatenate([images.mean(dim=(2, 3)).numpy(), images.std(dim=(2, 3)).numpy()], axis=1)
