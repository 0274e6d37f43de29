"""GAN training throughput: ours against the textbook DCGAN, same resolution and batch.

The DCGAN follows pytorch/examples (transposed-conv generator, strided-conv discriminator,
BatchNorm, BCE loss, Adam 2e-4/0.5), resized to the resolution. Ours is the project's
conditional ResNet GAN with spectral norm, projection D, DiffAugment and EMA, run through
the same ``GanTrainer`` the pipeline uses (bf16 autocast and channels_last on CUDA).
Throughput = real training images per second (batch x iterations / s). Each eager row also
gives ``ops_per_step``: the tensor operators one training step dispatches, views left out.
On a GPU each is at least one kernel launch, and eager training at small batches is
launch-bound, so this count, measurable on any machine, puts a floor under the eager step
time there. Compiled rows give ``ops_outside_compiled`` instead: the operators a step
still runs eagerly next to the compiled graphs (with ``reduce-overhead``, next to the CUDA
graphs' replays).

    python bench/gan.py --resolution 32 --channels 3 --batches 64 256 1024 \
        [--width 64 | --width equal] [--compile default reduce-overhead]

``--width equal`` picks the width at which our G and D together cost the DCGAN's FLOPs per
image (forward), so the two are compared at equal model size; every row also gives
``flop_per_image`` (one training step's FLOPs, forward and backward, counted by
``torch.utils.flop_counter``, divided by the batch) and ``tflop_per_s``, what the step
achieves (FLOPs per step x steps per second).

``--compile`` also times ours with ``synthesis.train.compile`` set to each mode (the
first steps, which compile, are in the warm-up). A variant that fails is reported with
its error and the others still run.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from pipeline.config import GanTrainConfig
from pipeline.gan.checkpoint import GanShape
from pipeline.gan.train import GanTrainer


def dcgan(resolution: int, channels: int, nz: int = 100, ngf: int = 64, ndf: int = 64):
    ups = int(math.log2(resolution // 4))
    width = ngf * 2 ** (ups - 1)
    g_layers = [nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
    for _ in range(ups - 1):
        g_layers += [
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width // 2),
            nn.ReLU(True),
        ]
        width //= 2
    g_layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
    d_layers = [nn.Conv2d(channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    width = ndf
    for _ in range(ups - 1):
        d_layers += [
            nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width * 2),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        width *= 2
    d_layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
    return nn.Sequential(*g_layers), nn.Sequential(*d_layers)


def forward_flops(resolution: int, channels: int, width: int | None) -> float:
    """FLOPs per image of one forward pass of G and of D (``width`` None: the DCGAN)."""
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.gan.models import Discriminator, Generator

    if width is None:
        G, D = dcgan(resolution, channels)
        z = torch.randn(2, 100, 1, 1)
        run = lambda: D(G(z))  # noqa: E731
    else:
        G = Generator(num_classes=10, channels=channels, resolution=resolution, z_dim=64, width=width)
        D = Discriminator(num_classes=10, channels=channels, resolution=resolution, width=width)
        y = torch.tensor([0, 1])
        run = lambda: D(G(torch.randn(2, 64), y), y)  # noqa: E731
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / 2


def equal_width(resolution: int, channels: int) -> int:
    """The width (a multiple of 4) whose forward FLOPs per image are nearest the DCGAN's."""
    target = forward_flops(resolution, channels, None)
    return min(range(4, 129, 4), key=lambda w: abs(forward_flops(resolution, channels, w) - target))


def step_flops(step) -> float:
    """FLOPs of one call of ``step`` (a training step: forward, backward, optimizer)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def time_dcgan(resolution, channels, batch, device, steps, warmup):
    torch.manual_seed(0)
    G, D = dcgan(resolution, channels)
    G, D = G.to(device), D.to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loss = nn.BCEWithLogitsLoss()
    data = torch.rand(4096, channels, resolution, resolution, device=device) * 2 - 1
    ones = torch.ones(batch, device=device)
    zeros = torch.zeros(batch, device=device)

    def step():
        real = data[torch.randint(0, len(data), (batch,), device=device)]
        fake = G(torch.randn(batch, 100, 1, 1, device=device))
        d_loss = loss(D(real).view(-1), ones) + loss(D(fake.detach()).view(-1), zeros)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = loss(D(fake).view(-1), ones)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()

    return _measure(step, batch, device, steps, warmup)


def time_ours(resolution, channels, batch, device, steps, warmup, width, compile_mode=None):
    images = np.random.default_rng(0).integers(
        0, 256, (4096, resolution, resolution, channels), dtype=np.uint8
    )
    if channels == 1:
        images = images[..., 0]
    labels = np.arange(4096) % 10
    settings = GanTrainConfig(batch_size=batch, width=width, device=device, compile=compile_mode)
    if compile_mode:
        torch._dynamo.reset()  # no graphs compiled for another mode or batch size
    trainer = GanTrainer(
        images=images,
        labels=labels,
        shape=GanShape(10, channels, resolution, resolution),
        settings=settings,
        seed=0,
    )
    started = time.perf_counter()
    trainer.train_step()
    first = time.perf_counter() - started
    timed = _measure(trainer.train_step, batch, device, steps, warmup, count_ops=not compile_mode)
    if compile_mode:
        timed["ops_outside_compiled"] = _ops_outside_compiled(trainer.train_step)
    return {**timed, "first_step_s": first}


# Profiler names of operators that launch nothing (views, no-op casts, allocations).
_NO_KERNEL = {
    f"aten::{name}"
    for name in "view detach t unsqueeze expand as_strided alias permute select slice split squeeze "
    "transpose _unsafe_view lift_fresh reshape to contiguous empty empty_strided item "
    "_local_scalar_dense".split()
}


def _ops_outside_compiled(step) -> int:
    """Operators one step runs eagerly, outside compiled graphs: under ``reduce-overhead``
    each is a launch of its own next to the graphs' replays. Counted as the operators called
    from Python, views and allocations left out (what one runs inside is its own business:
    on the CPU a fused Adam calls a loop of small operators, on CUDA it is one kernel)."""
    from torch.profiler import profile

    with profile() as prof:
        step()

    def compiled(event) -> bool:
        while event is not None:
            if "Compiled" in event.name:  # Torch-Compiled Region, CompiledFunction(Backward)
                return True
            event = event.cpu_parent
        return False

    def top_level(event) -> bool:  # called from Python, not inside another operator
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        return parent is None

    return sum(
        1
        for e in prof.events()
        if e.name.startswith("aten::") and e.name not in _NO_KERNEL and top_level(e) and not compiled(e)
    )


class _OpCounter(TorchDispatchMode):
    """Counts the operators that compute (not views, not profiler markers)."""

    NOT_COMPUTING = {"aten.detach", "aten.lift_fresh", "aten._unsafe_view", "aten._local_scalar_dense"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if not (func.is_view or name in self.NOT_COMPUTING or name.startswith("profiler.")):
            self.count += 1
        return func(*args, **(kwargs or {}))


def _measure(step, batch, device, steps, warmup, count_ops=True):
    for _ in range(warmup):
        step()
    counted = {}
    if count_ops:
        with _OpCounter() as counter:
            step()
        counted = {"ops_per_step": counter.count, "flop_per_image": step_flops(step) / batch}
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    rates = {"img_per_s": batch * steps / elapsed, "it_per_s": steps / elapsed}
    if "flop_per_image" in counted:
        rates["tflop_per_s"] = counted["flop_per_image"] * rates["img_per_s"] / 1e12
    return {**rates, **counted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[64])
    parser.add_argument(
        "--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    parser.add_argument("--width", default="64", help="ours' width, or 'equal': the DCGAN's FLOPs per image")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 20 cpu, 200 cuda)")
    parser.add_argument(
        "--compile",
        nargs="*",
        default=[],
        choices=["default", "reduce-overhead"],
        help="also time ours with these torch.compile modes",
    )
    args = parser.parse_args()
    args.width = equal_width(args.resolution, args.channels) if args.width == "equal" else int(args.width)
    rows = []
    for device in args.devices:
        steps = args.steps or (20 if device == "cpu" else 200)
        warmup = 3 if device == "cpu" else 30
        for batch in args.batches:
            row = {
                "device": torch.cuda.get_device_name()
                if device == "cuda"
                else f"cpu x{torch.get_num_threads()}",
                "resolution": args.resolution,
                "batch": batch,
                "width": args.width,
                "forward_flop_per_image": {
                    "dcgan": forward_flops(args.resolution, args.channels, None),
                    "ours": forward_flops(args.resolution, args.channels, args.width),
                },
                "dcgan": time_dcgan(args.resolution, args.channels, batch, device, steps, warmup),
                "ours": time_ours(args.resolution, args.channels, batch, device, steps, warmup, args.width),
            }
            for mode in args.compile:
                try:
                    row[f"ours_compile_{mode}"] = time_ours(
                        args.resolution, args.channels, batch, device, steps, warmup, args.width, mode
                    )
                except Exception as exc:  # a benchmark reports the failure and goes on
                    row[f"ours_compile_{mode}"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                compiled = row[f"ours_compile_{mode}"]
                if "img_per_s" in compiled:  # the same step's FLOPs, counted eagerly
                    compiled["tflop_per_s"] = row["ours"]["flop_per_image"] * compiled["img_per_s"] / 1e12
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
