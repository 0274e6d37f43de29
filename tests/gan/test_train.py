"""pipeline.gan.train: checkpoints carry their config and library versions, and round-trip."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY_GAN_SETTINGS, tiny_gan_trainer
from pipeline.config import GanTrainConfig
from pipeline.core.errors import PipelineError
from pipeline.gan.checkpoint import (
    CHECKPOINT_LIBRARIES,
    GanShape,
    check_compatible,
    load_checkpoint,
    provenance,
    save_checkpoint,
)
from pipeline.gan.diffaug import AugmentedDiscriminator, augment, draw
from pipeline.gan.geometry import images_to_tensor
from pipeline.gan.models import (
    Discriminator,
    Generator,
    _SpectralNorm,
)
from pipeline.gan.sample import recompute_batchnorm
from pipeline.gan.train import GanTrainer
from pipeline.version.manifest import library_versions

SHAPE = GanShape(num_classes=2, channels=1, height=8, width=8)
SETTINGS = GanTrainConfig(batch_size=4, width=8, z_dim=4, device="cpu")
CONFIG = {"seed": 5, "synthesis": {"train": {"width": 8}}}


def trainer(seed: int = 5) -> GanTrainer:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
    return GanTrainer(
        images=images,
        labels=np.arange(12) % 2,
        shape=SHAPE,
        settings=SETTINGS,
        seed=seed,
        config_json=json.dumps(CONFIG, sort_keys=True),
    )


def test_checkpoint_round_trip_keeps_weights_config_and_versions(tmp_path):
    first = trainer()
    first.train(2)
    save_checkpoint(first.state_dict(), tmp_path / "last.pt")
    state = load_checkpoint(tmp_path / "last.pt")
    assert set(CHECKPOINT_LIBRARIES) == {"torch", "torchvision"}
    made = provenance(state)
    assert made["libraries"] == library_versions(CHECKPOINT_LIBRARIES)
    assert made["libraries"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert made["settings"] == SETTINGS.model_dump(mode="json")
    assert made["config"] == CONFIG
    second = trainer(seed=6)  # other initial weights, replaced by the checkpoint's
    second.load_state_dict(state)
    assert second.step == 2
    for name in ("G", "D", "G_ema"):
        saved, loaded = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_checkpoints_saved_before_the_record_still_load(tmp_path):
    state = trainer().state_dict()
    del state["libraries"]
    save_checkpoint(state, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert provenance(loaded)["libraries"] == {}
    resumed = trainer(seed=6)
    resumed.load_state_dict(loaded)
    assert all(torch.equal(v, loaded["G"][k]) for k, v in resumed.G.state_dict().items())


def test_train_step_reports_metrics():
    t = tiny_gan_trainer()
    metrics = t.train_step()
    assert set(metrics) >= {"step", "d_loss", "g_loss", "d_real", "d_fake"}
    assert metrics["step"] == 1 and np.isfinite(metrics["d_loss"])
    assert all(p.requires_grad for p in t.D.parameters())  # frozen for the G update only


def test_resume_is_exact(tmp_path):
    straight = tiny_gan_trainer()
    straight.train(5)
    first = tiny_gan_trainer()
    first.train(3)
    save_checkpoint(first.state_dict(), tmp_path / "c.pt")
    resumed = tiny_gan_trainer(seed=123)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    resumed.train(2)
    assert resumed.step == straight.step == 5
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_loaded_discriminator_scores_as_the_saved_one(tmp_path):
    """Sampling scores with D straight after loading, before any power iteration: the
    spectral norm's cached u v^T must follow the loaded vectors."""
    saved = tiny_gan_trainer()
    saved.train(3)
    save_checkpoint(saved.state_dict(), tmp_path / "c.pt")
    loaded = tiny_gan_trainer(seed=123)
    loaded.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    x, y = torch.rand(6, 1, 8, 8) * 2 - 1, torch.arange(6) % 4
    with torch.no_grad():
        assert torch.equal(loaded.D(x, y), saved.D(x, y))


def test_checkpoint_refusals(tmp_path):
    t = tiny_gan_trainer()
    save_checkpoint(t.state_dict(), tmp_path / "ok.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(PipelineError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "corrupt.pt")
    torch.save({"format": "someone-else"}, tmp_path / "other.pt")
    with pytest.raises(PipelineError, match="not a dataset-expand-gan/2 checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(PipelineError, match="made for"):
        tiny_gan_trainer(shape=GanShape(5, 1, 8, 8)).load_state_dict(load_checkpoint(tmp_path / "ok.pt"))
    legacy = load_checkpoint(tmp_path / "ok.pt")
    del legacy["resolution"]  # saved before native resolutions: taken as the power of two
    tiny_gan_trainer().load_state_dict(legacy)
    legacy["shape"] = [4, 1, 12, 12]
    with pytest.raises(PipelineError, match="trained at 16x16.*at 12x12: retrain"):
        tiny_gan_trainer(shape=GanShape(4, 1, 12, 12)).load_state_dict(legacy)
    wider = tiny_gan_trainer(settings=TINY_GAN_SETTINGS.model_copy(update={"width": 16}))
    with pytest.raises(PipelineError, match="synthesis.train.width"):
        wider.load_state_dict(load_checkpoint(tmp_path / "ok.pt"))


def test_ema_warm_up_follows_live_weights_early():
    t = tiny_gan_trainer()
    initial = [p.clone() for p in t.G_ema.parameters()]
    t.train_step()
    live, ema = list(t.G.parameters()), list(t.G_ema.parameters())
    to_live = sum(float((e - p.detach()).abs().sum()) for e, p in zip(ema, live, strict=True))
    to_init = sum(float((e - p).abs().sum()) for e, p in zip(ema, initial, strict=True))
    assert to_live < to_init  # decay min(0.999, 1/10) at the first step, not 0.999


def test_power_iteration_runs_once_per_discriminator_update():
    t = tiny_gan_trainer()
    t.train_step()  # the first iteration sees the initial weights, on which u has converged
    before = [m.sn_u.clone() for m in _sn_layers(t.D)]
    t.D(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))  # a forward never updates u
    assert all(torch.equal(a, m.sn_u) for a, m in zip(before, _sn_layers(t.D), strict=True))
    t.train_step()  # the weights moved, so u moves (except the 1-row head's, which is ±1)
    moved = [not torch.equal(a, m.sn_u) for a, m in zip(before, _sn_layers(t.D), strict=True) if len(a) > 1]
    assert moved and all(moved)


def _sn_layers(module):
    return [m for m in module.modules() if isinstance(m, _SpectralNorm)]


def test_checkpoint_from_another_device_type_loads_without_its_random_streams(tmp_path):
    """A CUDA-trained generator must sample on the CPU: its RNG states do not fit there."""
    t = tiny_gan_trainer()
    t.train(2)
    state = t.state_dict()
    state["rng"] = {name: torch.zeros(16, dtype=torch.uint8) for name in state["rng"]}  # a CUDA state
    state["rng_device"] = "cuda"
    save_checkpoint(state, tmp_path / "cuda.pt")
    fresh = tiny_gan_trainer()
    fresh.load_state_dict(load_checkpoint(tmp_path / "cuda.pt"))
    assert fresh.step == 2
    assert all(torch.equal(a, b) for a, b in zip(fresh.G_ema.parameters(), t.G_ema.parameters(), strict=True))
    assert torch.equal(fresh.rng["latent"].get_state(), tiny_gan_trainer().rng["latent"].get_state())


def test_compiled_training_matches_eager_and_saves_plain_modules(tmp_path):
    """``train.compile`` traces G and D (our spectral norm keeps the forward pure); about a
    minute of compiling on 2 cores."""
    compiled = tiny_gan_trainer(settings=TINY_GAN_SETTINGS.model_copy(update={"compile": "default"}))
    eager = tiny_gan_trainer()
    got = compiled.train(3, log_every=1)
    want = eager.train(3, log_every=1)
    for a, b in zip(got, want, strict=True):
        assert a["d_loss"] == pytest.approx(b["d_loss"], rel=1e-3, abs=1e-4)
        assert a["g_loss"] == pytest.approx(b["g_loss"], rel=1e-3, abs=1e-4)
    save_checkpoint(compiled.state_dict(), tmp_path / "c.pt")
    plain = tiny_gan_trainer()  # no "_orig_mod." prefixes: an eager trainer loads it
    plain.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    assert plain.step == 3


def test_bf16_autocast_step_keeps_float32_weights_and_losses(monkeypatch):
    """The CUDA path's mixed precision, run on the CPU: the convolutions run in bfloat16,
    the weights, optimiser state and losses stay float32, and the first step's losses
    match float32 to bfloat16's precision."""
    want = tiny_gan_trainer().train_step()
    monkeypatch.setattr(GanTrainer, "_autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    t = tiny_gan_trainer()
    conv_dtypes = set()
    for module in (*t.G.modules(), *t.D.modules()):
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, args, out: conv_dtypes.add(out.dtype))
    got = t.train_step()
    assert conv_dtypes == {torch.bfloat16}
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert got[name].dtype == torch.float32 and torch.isfinite(got[name])
        assert float(got[name]) == pytest.approx(float(want[name]), rel=0.01, abs=0.01), name
    t.train(3)
    tensors = [*t.G.parameters(), *t.D.parameters(), *t.G_ema.parameters()]
    tensors += [v for opt in (t.opt_G, t.opt_D) for st in opt.state.values() for v in st.values()]
    assert all(x.dtype == torch.float32 for x in tensors if x.is_floating_point())


def test_images_to_tensor_scales_to_minus_one_one_and_resizes():
    grey = np.array([[[0, 255], [255, 0]]], dtype=np.uint8)  # one 2x2 image
    x = images_to_tensor(grey, 2)
    assert x.shape == (1, 1, 2, 2) and x.tolist() == [[[[-1.0, 1.0], [1.0, -1.0]]]]
    rgb = np.zeros((3, 12, 12, 3), dtype=np.uint8)
    rgb[..., 2] = 255  # blue
    resized = images_to_tensor(rgb, 16)
    assert resized.shape == (3, 3, 16, 16)  # channels first, at the GAN's resolution
    assert torch.allclose(resized[:, 2], torch.ones(3, 16, 16)) and torch.allclose(
        resized[:, 0], -torch.ones(3, 16, 16)
    )


def test_augmented_discriminator_scores_the_augmented_images():
    torch.manual_seed(0)
    d = Discriminator(num_classes=4, channels=1, resolution=8, width=8)
    x, y = torch.rand(5, 1, 8, 8) * 2 - 1, torch.arange(5) % 4
    r = draw(len(x), torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(AugmentedDiscriminator(d, ())(x, r, y), d(x, y))  # no policy: D itself
        policy = ("translation", "cutout")
        assert torch.allclose(AugmentedDiscriminator(d, policy)(x, r, y), d(augment(x, policy, r), y))


def test_recompute_batchnorm_measures_the_generator_and_leaves_it_in_eval_mode():
    def stats(seed):
        torch.manual_seed(0)
        g = Generator(num_classes=3, channels=1, resolution=8, z_dim=8, width=8)
        recompute_batchnorm(g, 3, 8, batch_size=4, batches=2, g=torch.Generator().manual_seed(seed))
        norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert not g.training and all(m.momentum == 0.1 for m in norms)  # the momentum is restored
        assert all(int(m.num_batches_tracked) == 2 for m in norms)
        return torch.cat([m.running_mean for m in norms])

    first = stats(1)
    assert torch.equal(first, stats(1)) and not torch.equal(first, stats(2))
    assert first.abs().sum() > 0  # measured, not left at the reset value


def test_check_compatible_refuses_other_data_and_network_settings():
    state = tiny_gan_trainer().state_dict()
    check_compatible(state, GanShape(4, 1, 8, 8), TINY_GAN_SETTINGS, "ckpt")  # its own: fine
    with pytest.raises(
        PipelineError, match=r"ckpt: made for .* = \[4, 1, 8, 8\], this data is \[3, 1, 8, 8\]"
    ):
        check_compatible(state, GanShape(3, 1, 8, 8), TINY_GAN_SETTINGS, "ckpt")
    with pytest.raises(
        PipelineError, match="ckpt: trained at 8x8; this version trains 12x12 images at 12x12"
    ):
        check_compatible(
            {**state, "shape": [4, 1, 12, 12]}, GanShape(4, 1, 12, 12), TINY_GAN_SETTINGS, "ckpt"
        )
    other = TINY_GAN_SETTINGS.model_copy(update={"z_dim": 16})
    with pytest.raises(PipelineError, match="made with synthesis.train.z_dim=8, config has 16"):
        check_compatible(state, GanShape(4, 1, 8, 8), other, "ckpt")


def test_the_minimax_loss_trains_with_binary_cross_entropy():
    import math

    from conftest import TINY_GAN_SETTINGS

    settings = TINY_GAN_SETTINGS.model_copy(update={"loss": "minimax", "betas": (0.5, 0.999)})
    trainer = tiny_gan_trainer(settings=settings)
    assert trainer.opt_D.param_groups[0]["betas"] == (0.5, 0.999)
    first = trainer.train_step()
    assert float(first["d_loss"]) > 0 and float(first["g_loss"]) > 0  # softplus sums: positive
    hinge = tiny_gan_trainer().train_step()  # the same networks and draws, the other loss
    assert float(hinge["d_real"]) == float(first["d_real"]) and float(hinge["d_loss"]) != float(
        first["d_loss"]
    )
    for _ in range(3):
        metrics = trainer.train_step()
    assert all(math.isfinite(float(metrics[k])) for k in ("d_loss", "g_loss"))


def test_lecam_regularisation_moves_its_averages_and_resumes_exactly(tmp_path):
    from conftest import TINY_GAN_SETTINGS

    settings = TINY_GAN_SETTINGS.model_copy(update={"lecam": 0.3})
    trainer = tiny_gan_trainer(settings=settings)
    plain = tiny_gan_trainer()
    with_lecam, without = trainer.train_step(), plain.train_step()
    assert float(with_lecam["d_loss"]) > float(without["d_loss"])  # the same draws, plus the penalty
    assert trainer.lecam_ema.abs().sum() > 0 and plain.lecam_ema.abs().sum() == 0
    save_checkpoint(trainer.state_dict(), tmp_path / "a.pt")
    resumed = tiny_gan_trainer(settings=settings)
    resumed.load_state_dict(load_checkpoint(tmp_path / "a.pt"))
    assert torch.equal(resumed.lecam_ema, trainer.lecam_ema)
    assert float(resumed.train_step()["d_loss"]) == float(trainer.train_step()["d_loss"])


def test_adaptive_augmentation_raises_p_while_d_is_sure_of_the_real_images(tmp_path):
    from conftest import TINY_GAN_SETTINGS

    # A tiny ada_kimg makes each adjustment large: 4 steps x 8 images / 100 = 0.32.
    settings = TINY_GAN_SETTINGS.model_copy(update={"ada_target": 0.6, "ada_kimg": 0.1})
    trainer = tiny_gan_trainer(settings=settings)
    assert float(trainer.ada[0]) == 0.0  # starts without augmentation
    seen = []
    for _ in range(8):
        metrics = trainer.train_step()
        seen.append(float(metrics["ada_p"]))
    assert seen[:3] == [0.0, 0.0, 0.0] and seen[3] == pytest.approx(0.32)  # D is sure at first: p rises
    assert all(0.0 <= p <= 1.0 for p in seen) and len(set(seen)) <= 3
    trainer.ada[:] = torch.tensor([0.5, 8.0, 8.0])  # D sure of all 8 real images: p rises
    trainer.step = 3
    trainer._adapt()
    assert float(trainer.ada[0]) == pytest.approx(0.5 + 8 / 100) and float(trainer.ada[2]) == 0
    trainer.ada[:] = torch.tensor([0.05, -8.0, 8.0])  # D wrong on every real image: p falls, not below 0
    trainer._adapt()
    assert float(trainer.ada[0]) == 0.0
    save_checkpoint(trainer.state_dict(), tmp_path / "a.pt")
    resumed = tiny_gan_trainer(settings=settings)
    resumed.load_state_dict(load_checkpoint(tmp_path / "a.pt"))
    assert torch.equal(resumed.ada, trainer.ada)
    # Without ADA no extra random numbers are drawn: training is what it always was.
    assert float(tiny_gan_trainer().train_step()["ada_p"]) == 1.0  # every image augmented


def test_photo_sizes_train_at_128_on_the_cpu_and_sample_at_the_data_size(tmp_path):
    """A few steps at 128x128 from 96x160 RGB images letterboxed (pad); the samples come
    back at 96x160, the checkpoint records the fit, and the log line has the peak memory."""
    from pipeline.gan.sample import generate

    shape = GanShape(4, 3, 96, 160, side=128, fit="pad")
    t = tiny_gan_trainer(shape=shape, settings=TINY_GAN_SETTINGS.model_copy(update={"batch_size": 4}))
    assert t.data.shape[1:] == (3, 128, 128)
    assert (t.data[:, :, :24] == -1).all() and (t.data[:, :, -24:] == -1).all()  # the letterbox bars
    history = t.train(2, log_every=1)
    assert t.step == 2 and all(np.isfinite(h["d_loss"]) for h in history)
    assert history[-1]["peak_mem_gib"] > 0
    images, _ = generate(
        t.G_ema, None, np.array([0, 1]), np.array([1, 2]), out_size=shape.size, fit=shape.fit
    )
    assert images.shape == (2, 96, 160, 3)
    save_checkpoint(t.state_dict(), tmp_path / "photo.pt")
    state = load_checkpoint(tmp_path / "photo.pt")
    assert (state["resolution"], state["fit"]) == (128, "pad")
    cropped = tiny_gan_trainer(shape=GanShape(4, 3, 96, 160, side=128, fit="crop"))
    with pytest.raises(PipelineError, match="fitted by 'pad', the config has synthesis.train.fit='crop'"):
        cropped.load_state_dict(state)


def test_a_step_that_does_not_fit_in_memory_names_the_settings_to_lower(monkeypatch):
    t = tiny_gan_trainer()

    def too_big():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(t, "train_step", too_big)
    with pytest.raises(PipelineError, match="batch_size 8, width 8 and 8x8 does not fit .* to 4"):
        t.train(1)
