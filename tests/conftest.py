"""Shared fixtures: small datasets written by the tests themselves, and Prefect isolation."""

from __future__ import annotations

import atexit
import gzip
import io
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

# Prefect reads its settings at import: isolate it before any test imports it, and remove
# its home at exit (registered before Prefect's own exit hooks, so it runs after them).
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.build import load_config  # noqa: E402
from pipeline.config import GanTrainConfig  # noqa: E402

RECIPE = [{"Affine": {"rotate": [-20, 20], "p": 1.0}}, {"RandomBrightnessContrast": {"p": 0.5}}]


def random_image(rng: np.random.Generator, size=(8, 8), mode="RGB") -> Image.Image:
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kw)
    return buffer.getvalue()


def config_for(path: Path, tmp_path: Path, *overrides: str, kind: str = "imagefolder"):
    """A config reading ``path`` as a ``kind`` source, in-process, writing under ``tmp_path/out``."""
    return load_config(
        None,
        [
            f"source.kind={kind}",
            f"source.path={path}",
            f"output.root={tmp_path / 'out'}",
            "runner.workers=1",
            *overrides,
        ],
    )


def read_source(kind, path=None, **kw):
    """The reader of a ``kind`` source at ``path`` and its samples, decoded."""
    from dataclasses import replace

    from pipeline.config import SourceConfig
    from pipeline.sources import open_source

    reader = open_source(SourceConfig(kind=kind, path=path, **kw))
    return reader, [replace(s, pixels=reader.pixels(s)) for s in reader]


def version_rows(version: Path, split: str) -> list[dict]:
    """The rows of a Parquet version's ``split``, in shard order."""
    files = sorted((version / "data").glob(f"{split}-*.parquet"))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


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


# Settings for a GAN small enough to train in seconds on the CPU (8x8 images, 4 steps).
TINY_GAN = [
    "synthesis.enabled=true",
    "synthesis.per_class=3",
    "synthesis.train.steps=4",
    "synthesis.train.eval_every=2",
    "synthesis.train.width=8",
    "synthesis.train.z_dim=8",
    "synthesis.train.batch_size=8",
    "synthesis.train.device=cpu",
    "synthesis.device=cpu",
    "synthesis.gate.seeds=1",
    "synthesis.gate.classifier_epochs=1",
    "synthesis.gate.ratios=[0.5]",
]

# Augmentation tuning with one seed and one epoch per candidate.
TINY_TUNE = ["augment.tune.enabled=true", "augment.tune.seeds=1", "augment.tune.classifier_epochs=1"]


def raw_manifest(version) -> dict:
    """A version's manifest.json as the plain dict on disk (unvalidated), for schema tests."""
    from pipeline.version.manifest import MANIFEST_FILE

    return json.loads((Path(version) / MANIFEST_FILE).read_text())


class LogLines:
    """A logger that keeps its info lines."""

    def __init__(self):
        self.lines = []

    def info(self, message, *args):
        self.lines.append(message % args)


def tiny_gan_data(n=40, shape=(8, 8)):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n) % 4


TINY_GAN_SETTINGS = GanTrainConfig(batch_size=8, width=8, z_dim=8, device="cpu", eval_every=2)


def tiny_gan_trainer(seed=0, shape=None, settings=TINY_GAN_SETTINGS):
    """A GAN trainer on 40 random images of 4 classes (``shape``: a GanShape; 8x8 grey by default)."""
    from pipeline.gan.checkpoint import GanShape
    from pipeline.gan.train import GanTrainer

    shape = shape or GanShape(4, 1, 8, 8)
    images, labels = tiny_gan_data(shape=(shape.height, shape.width) + ((3,) if shape.channels == 3 else ()))
    return GanTrainer(images=images, labels=labels, shape=shape, settings=settings, seed=seed)


@pytest.fixture
def bucket(tmp_path):
    """A fresh ``memory://`` URL, removed afterwards (the memory file system is per process)."""
    import fsspec

    fs = fsspec.filesystem("memory")
    url = f"memory://bucket-{tmp_path.name}/datasets"
    yield url
    fs.rm(f"/bucket-{tmp_path.name}", recursive=True)


def screen(text: str) -> list[str]:
    """What a terminal shows: each line's last redraw."""
    return [line.split("\r")[-1].replace("\x1b[2K", "") for line in text.split("\n") if line]


def group_members(group: int) -> list[str]:
    """The live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while listed
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(stat.parent.name)
    return members
