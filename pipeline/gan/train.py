"""GAN training: a ``train_step`` returning metrics, exact checkpoints, best-by-metric.

Every random draw (batches, latents, labels, DiffAugment) comes from three seeded
``torch.Generator`` objects whose states are checkpointed, so N steps + resume + M steps
equals N + M steps on the CPU. Checkpoints hold only tensors and plain values and load
with ``torch.load(weights_only=True)``; they carry the resolved config they were trained
with and the torch and torchvision versions (see :func:`provenance`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.config import GanTrainConfig
from pipeline.core.devices import peak_memory_gib, pick_device
from pipeline.core.errors import ConfigError, PipelineError
from pipeline.core.progress import GAN, report
from pipeline.gan.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_LIBRARIES,
    GanShape,
    check_compatible,
    id_digests,
)
from pipeline.gan.diffaug import AugmentedDiscriminator, default_policy, draw
from pipeline.gan.distributed import current_world, mean_across, my_rows, sum_across_, sync_batch_norm
from pipeline.gan.geometry import images_to_tensor
from pipeline.gan.losses import LOSSES, lecam_regularizer
from pipeline.gan.models import Discriminator, Generator
from pipeline.gan.sample import recompute_batchnorm
from pipeline.version.manifest import library_versions

LECAM_DECAY = 0.99  # of the moving averages the LeCam regulariser compares D's scores with
ADA_INTERVAL = 4  # steps between adjustments of the adaptive augmentation probability


class GanTrainer:
    """Holds G, D, the EMA generator, both optimizers and the RNG streams."""

    def __init__(
        self,
        *,
        images: np.ndarray,
        labels: np.ndarray,
        shape: GanShape,
        settings: GanTrainConfig,
        seed: int,
        config_json: str = "{}",
        trained_on: list[str] | None = None,
    ):
        self.shape = shape
        self.settings = settings
        self.config_json = config_json
        self.trained_on = id_digests(trained_on) if trained_on is not None else None
        self.world = current_world()
        self.device = pick_device(settings.device, "synthesis.train.device")
        if self.device.type == "cuda" and self.world.size > 1:
            self.device = torch.device("cuda", self.world.local_rank)
        if settings.batch_size % self.world.size:
            raise ConfigError(
                f"synthesis.train.batch_size {settings.batch_size} is the global batch, split over "
                f"{self.world.size} processes: make it a multiple of {self.world.size}"
            )
        policy = (
            tuple(settings.diffaug)
            if settings.diffaug is not None
            else default_policy(shape.channels, shape.resolution)
        )
        self.data = images_to_tensor(images, shape.resolution, shape.fit).to(self.device)
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.G = Generator(
                num_classes=shape.num_classes,
                channels=shape.channels,
                resolution=shape.resolution,
                z_dim=settings.z_dim,
                width=settings.width,
            )
            self.D = Discriminator(
                num_classes=shape.num_classes,
                channels=shape.channels,
                resolution=shape.resolution,
                width=settings.width,
            )
        # channels_last pays on CUDA and on oneDNN CPU convolutions alike (+40% measured).
        self.G.to(self.device, memory_format=torch.channels_last)
        self.D.to(self.device, memory_format=torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval()
        for p in self.G_ema.parameters():
            p.requires_grad_(False)
        self._d_loss, self._g_loss = LOSSES[settings.loss]
        betas = tuple(settings.betas)
        # One kernel per update instead of dozens (fused Adam runs on CUDA and the CPU).
        fused = self.device.type in ("cuda", "cpu")
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=settings.lr_g, betas=betas, fused=fused)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=settings.lr_d, betas=betas, fused=fused)
        # The compiled callables share the modules' parameters; checkpoints save the modules.
        self._augmented_D = AugmentedDiscriminator(self.D, policy)
        self._G, self._D, self._power_iteration = self.G, self._augmented_D, self.D.power_iteration
        # The generator's update runs D without its gradients: the plain module, not DDP's.
        self._D_for_G = self._augmented_D
        if self.world.size > 1:
            sync_batch_norm(self.G)  # not G_ema, copied above: sampling stays in one process
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._G = DistributedDataParallel(self.G, device_ids=ids)
            self._D = DistributedDataParallel(self._augmented_D, device_ids=ids)
        if settings.compile:
            # D sees two batch sizes (real and fake together, then fake alone): one static
            # graph for each rather than a dynamic-shape one.
            self._G = torch.compile(self._G, mode=settings.compile, dynamic=False)
            self._D = torch.compile(self._D, mode=settings.compile, dynamic=False)
            if self.world.size > 1:
                self._D_for_G = torch.compile(self._augmented_D, mode=settings.compile, dynamic=False)
            self._power_iteration = torch.compile(self.D.power_iteration, mode=settings.compile)
        if self.world.size == 1:
            self._D_for_G = self._D
        self.rng = {
            name: torch.Generator(device=self.device).manual_seed(seed * 1000 + k)
            for k, name in enumerate(("batch", "latent", "augment"))
        }
        self.step = 0
        self.best: dict[str, Any] = {}
        # LeCam's moving averages of D's mean scores on real and generated images.
        self.lecam_ema = torch.zeros(2, device=self.device)
        # Adaptive augmentation: the probability of augmenting an image, and the sum of
        # sign(D(real)) and the count of real images since its last adjustment.
        self.ada = torch.zeros(3, device=self.device)

    @property
    def policy(self) -> tuple[str, ...]:
        """The DiffAugment ops D sees (from the settings, or from a loaded checkpoint)."""
        return self._augmented_D.policy

    # -- one step ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        """One discriminator update (or ``d_steps``) and one generator update.

        Returns:
            ``step`` and the losses and mean scores as detached 0-d tensors: reading them
            is left to the caller, so a step never waits for the device.
        """
        s = self.settings
        self.G.train()
        self.D.train()
        if s.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        for _ in range(s.d_steps):
            self._power_iteration()
            real, y = self._batch()
            with self._autocast(), torch.no_grad():
                fake = self._G(self._latents(), y)
            with self._autocast():
                # Real and fake through D as one batch (D has no batch statistics): half the
                # kernel launches of two calls, the same function.
                both = self._scores(torch.cat([real, fake.float()]), torch.cat([y, y]), 2, self._D)
                d_real, d_fake = both.float().split(len(y))
                d_loss = self._d_loss(d_real, d_fake)
                if s.lecam:
                    with torch.no_grad():
                        means = mean_across(torch.stack([d_real.mean(), d_fake.mean()]))
                        self.lecam_ema.mul_(LECAM_DECAY).add_(means, alpha=1 - LECAM_DECAY)
                    d_loss = d_loss + s.lecam * lecam_regularizer(d_real, d_fake, *self.lecam_ema)
            if s.ada_target is not None:  # how sure D is of the real images, for ADA
                self.ada[1] += torch.sign(d_real.detach()).sum()
                self.ada[2] += len(d_real)
            # New tensors now: a CUDA graph may reuse its outputs' memory on its next replay.
            scores = (d_real.detach().mean(), d_fake.detach().mean())
            self.opt_D.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_D.step()
        if s.ada_target is not None and (self.step + 1) % ADA_INTERVAL == 0:
            self._adapt()
        y = self._labels()
        self.D.requires_grad_(False)  # the generator's update needs no gradients for D's weights
        try:
            with self._autocast():
                fake = self._G(self._latents(), y)
                g_loss = self._g_loss(self._scores(fake.float(), y, 1, self._D_for_G).float())
            self.opt_G.zero_grad(set_to_none=True)
            g_loss.backward()
        finally:
            self.D.requires_grad_(True)
        self.opt_G.step()
        self._update_ema()
        self.step += 1
        return {
            "step": self.step,
            # The probability an image is augmented: adaptive, or 1 (every image) without ADA.
            "ada_p": self.ada[0].clone() if s.ada_target is not None else torch.ones((), device=self.device),
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": scores[0],
            "d_fake": scores[1],
        }

    def train(
        self, steps: int, *, on_metrics: Callable[[dict[str, float]], None] | None = None, log_every: int = 50
    ) -> list[dict[str, float]]:
        """Run ``steps`` more steps; report every ``log_every`` steps (with img/s)."""
        history = []
        started, images_done = time.perf_counter(), 0
        for done in range(1, steps + 1):
            step_metrics = self._step_that_fits()
            images_done += self.settings.batch_size  # real images per iteration, as DCGAN counts
            report(GAN, self.step, max(self.settings.steps, self.step))
            if self.step % log_every == 0 or done == steps:
                metrics = _world_means(step_metrics)
                metrics["step"] = self.step
                metrics["img_per_s"] = images_done / max(time.perf_counter() - started, 1e-9)
                peak = peak_memory_gib(self.device)
                if peak is not None:
                    metrics["peak_mem_gib"] = peak
                history.append(metrics)
                if on_metrics:
                    on_metrics(metrics)
        return history

    def _step_that_fits(self) -> dict[str, Any]:
        """:meth:`train_step`, with running out of memory turned into the settings to lower.

        Raises:
            PipelineError: a step does not fit in the device's memory.
        """
        try:
            return self.train_step()
        except torch.OutOfMemoryError:
            pass  # raised below, outside the handler: the failed step's tensors are freed first
        s, r = self.settings, self.shape.resolution
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            total = torch.cuda.get_device_properties(self.device).total_memory / 2**30
            where = f"{self.device} ({total:.0f} GiB)"
        else:
            where = str(self.device)
        raise PipelineError(
            f"synthesis.train: one step at batch_size {s.batch_size}, width {s.width} and {r}x{r} does "
            f"not fit in the memory of {where}: lower synthesis.train.batch_size (e.g. to "
            f"{max(2, s.batch_size // 2)}), width or resolution"
        )

    # -- sampling helpers ---------------------------------------------------------------------
    @torch.no_grad()
    def recompute_ema_batchnorm(self, batches: int = 16) -> None:
        """Replace the EMA generator's BatchNorm statistics by their average over fresh batches.

        Uses its own generator (seeded from the step) so it does not disturb training RNG.
        """
        g = torch.Generator(device=self.device).manual_seed(self.step)
        recompute_batchnorm(
            self.G_ema, self.shape.num_classes, self.settings.z_dim, self.settings.batch_size, batches, g
        )

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` restores, and for the record: ``config`` (the
        resolved config's content settings, JSON), ``settings`` (``synthesis.train``, JSON)
        ``libraries`` (torch and torchvision versions) and ``trained_on`` (digests of the
        training images' source ids, see :func:`check_held_out`; None: not recorded)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config_json,
            "trained_on": None if self.trained_on is None else json.dumps(self.trained_on),
            "settings": json.dumps(self.settings.model_dump(mode="json"), sort_keys=True),
            "libraries": library_versions(CHECKPOINT_LIBRARIES),
            "shape": [self.shape.num_classes, self.shape.channels, self.shape.height, self.shape.width],
            "resolution": self.shape.resolution,
            "fit": self.shape.fit,
            "policy": list(self.policy),
            "step": self.step,
            "best": json.dumps(self.best, sort_keys=True),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "rng": {name: g.get_state() for name, g in self.rng.items()},
            "rng_device": self.device.type,
            "lecam_ema": self.lecam_ema.cpu(),
            "ada": self.ada.cpu(),
        }

    def load_state_dict(self, state: dict[str, Any], where: str = "checkpoint") -> None:
        """Restore everything :meth:`state_dict` saved.

        Raises:
            PipelineError: the checkpoint was made for other data or other settings.
        """
        check_compatible(state, self.shape, self.settings, where)
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        # A generator's state only fits a generator of the same device type: a checkpoint
        # trained on CUDA and sampled or resumed on the CPU keeps this trainer's seeded
        # streams (resume is exact on the same device type only).
        if state.get("rng_device", "cpu") == self.device.type:
            for name, g in self.rng.items():
                g.set_state(state["rng"][name].cpu())
        self.step = int(state["step"])
        self.best = json.loads(state["best"])
        if "lecam_ema" in state:
            self.lecam_ema = state["lecam_ema"].to(self.device)
            self.ada = state["ada"].to(self.device)
        # Resumed: trained on both sets of images; from a checkpoint without the record, unknown.
        if state.get("trained_on") is None:
            self.trained_on = None
        else:
            self.trained_on = sorted(set(json.loads(state["trained_on"])) | set(self.trained_on or []))
        self._augmented_D.policy = tuple(state["policy"])

    # -- internals ----------------------------------------------------------------------------
    # Every draw is of the global batch (the same on every process); each process keeps its
    # rows (pipeline.gan.distributed.my_rows), so the streams do not depend on the world size.
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(
            0, len(self.data), (self.settings.batch_size,), generator=self.rng["batch"], device=self.device
        )
        index = my_rows(index, self.world)
        return self.data[index].contiguous(memory_format=torch.channels_last), self.labels[index]

    def _latents(self) -> torch.Tensor:
        z = torch.randn(
            self.settings.batch_size, self.settings.z_dim, generator=self.rng["latent"], device=self.device
        )
        return my_rows(z, self.world)

    def _labels(self) -> torch.Tensor:
        y = torch.randint(
            0,
            self.shape.num_classes,
            (self.settings.batch_size,),
            generator=self.rng["latent"],
            device=self.device,
        )
        return my_rows(y, self.world)

    def _scores(self, x: torch.Tensor, y: torch.Tensor, parts: int, discriminator: nn.Module) -> torch.Tensor:
        """``discriminator`` on DiffAugment-ed ``x`` (``parts`` parts of this process's rows:
        real and fake, or fake alone): the random numbers are drawn here, in one call for the
        global batch (with adaptive augmentation, then which images are augmented, each with
        probability p)."""
        rows = len(x) * self.world.size
        r = my_rows(draw(rows, self.rng["augment"], self.device), self.world, parts)
        if self.settings.ada_target is None:
            return discriminator(x, r, y)
        chance = torch.rand(rows, generator=self.rng["augment"], device=self.device)
        return discriminator(x, r, y, my_rows(chance, self.world, parts) < self.ada[0])

    def _adapt(self) -> None:
        """ADA's rule (Karras et al. 2020), every ``ADA_INTERVAL`` steps: move p by
        sign(E[sign(D(real))] - target) x (real images seen) / (``ada_kimg`` x 1000), in [0, 1]."""
        sum_across_(self.ada[1:])  # every process's real images
        overfit = self.ada[1] / self.ada[2]  # 1: D is sure of every real image
        step = self.ada[2] / (self.settings.ada_kimg * 1000)
        self.ada[0] = (self.ada[0] + torch.sign(overfit - self.settings.ada_target) * step).clamp(0, 1)
        self.ada[1:] = 0

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early on the
        # average follows the live weights, so short runs do not keep the random init in it.
        steps_in = self.step - self.settings.ema_start
        decay = min(self.settings.ema_decay, (1 + steps_in) / (10 + steps_in)) if steps_in >= 0 else 0.0
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)
        torch._foreach_copy_(list(self.G_ema.buffers()), list(self.G.buffers()))


def _world_means(step_metrics: dict[str, Any]) -> dict[str, float]:
    """A step's metrics as floats; losses and scores averaged over the processes (each
    computed them on its rows), so they are the global batch's."""
    names = [k for k in step_metrics if k != "step"]
    values = mean_across(torch.stack([step_metrics[k].float() for k in names])).tolist()
    return {"step": float(step_metrics["step"]), **dict(zip(names, values, strict=True))}
