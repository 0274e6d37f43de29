"""Reading a version for training: our readers against torchvision's ImageFolder.

Publishes one expansion of the embedded digits (or, with --fashion, of Fashion-MNIST's
training split from ../shared/datasets/) in both output formats, then times one epoch
through a DataLoader (2 workers by default) with:

- torchvision ImageFolder over the image-folder version (PIL decode + tensor conversion),
- ExpandedDataset over the Parquet version (map-style, shuffled),
- IterableExpandedDataset over the Parquet version (streams row groups),
- ExpandedDataset over the image-folder version.

    python bench/reader.py --copies 20 --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from pipeline.build import build, load_config
from pipeline.dataset import ExpandedDataset, IterableExpandedDataset

TARBALL = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist.tar.gz"


def to_tensor(image) -> torch.Tensor:
    array = np.asarray(image)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div_(255.0)


def epoch(dataset, workers: int, batch: int, shuffle: bool) -> tuple[int, float]:
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=shuffle)
    started, rows = time.perf_counter(), 0
    for x, _ in loader:
        rows += len(x)
    return rows, time.perf_counter() - started


def source_overrides(tmp: Path, fashion: bool) -> list[str]:
    if not fashion:
        return []
    if not TARBALL.is_file():
        sys.exit(f"skipped: {TARBALL} not found")
    with tarfile.open(TARBALL) as tar:
        members = [m for m in tar if m.isfile() and m.name.startswith("train/")]
        tar.extractall(tmp / "src", members=members, filter="data")
    return ["source.kind=imagefolder", f"source.path={tmp / 'src' / 'train'}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--fashion", action="store_true", help="Fashion-MNIST train (60k) instead of digits")
    args = parser.parse_args()
    results = {"workers": args.workers, "batch": args.batch, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        base = [
            *source_overrides(Path(tmp), args.fashion),
            f"output.root={tmp}/out",
            f"augment.copies_per_image={args.copies}",
            'augment.transforms=[{"Affine": {"rotate": [-10, 10], "p": 1.0}}]',
        ]
        parquet, _ = build(load_config(None, [*base, "output.format=parquet"]))
        folder, _ = build(load_config(None, [*base, "output.format=imagefolder"]))
        readers = {
            "torchvision ImageFolder (image-folder version)": lambda: ImageFolder(
                str(folder / "train"), transform=to_tensor
            ),
            "ExpandedDataset (Parquet version)": lambda: ExpandedDataset(parquet, "train"),
            "IterableExpandedDataset (Parquet version)": lambda: IterableExpandedDataset(parquet, "train"),
            "ExpandedDataset (image-folder version)": lambda: ExpandedDataset(folder, "train"),
        }
        for name, make in readers.items():
            opened = time.perf_counter()
            dataset = make()
            open_s = time.perf_counter() - opened
            shuffle = not isinstance(dataset, IterableExpandedDataset)
            rows, seconds = epoch(dataset, args.workers, args.batch, shuffle)
            results[name] = {
                "rows": rows,
                "open_s": round(open_s, 2),
                "epoch_s": round(seconds, 2),
                "img_per_s": round(rows / seconds),
            }
            print(
                f"{name:<48} {rows:>7} rows  open {open_s:5.2f}s  epoch {seconds:6.2f}s  "
                f"{rows / seconds:>8.0f} img/s",
                flush=True,
            )
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
