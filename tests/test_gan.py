"""GAN building blocks on the CPU at 8x8: shapes, losses, DiffAugment, exact resume, checkpoints."""

import numpy as np
import pytest
import torch

from pipeline.config import GanTrainConfig
from pipeline.core.errors import ConfigError, PipelineError
from pipeline.evaluate.classifier import ClassifierSpec, train_classifier
from pipeline.gan import metrics as gm
from pipeline.gan.diffaug import augment, default_policy, draw
from pipeline.gan.losses import discriminator_hinge, generator_hinge
from pipeline.gan.models import (
    Discriminator,
    Generator,
    SNConv2d,
    SNEmbedding,
    SNLinear,
    _SpectralNorm,
    layout,
    train_resolution,
)
from pipeline.gan.sample import generate, latent, select
from pipeline.gan.train import GanShape, GanTrainer, load_checkpoint, save_checkpoint

SHAPE = GanShape(4, 1, 8, 8)
SETTINGS = GanTrainConfig(batch_size=8, width=8, z_dim=8, device="cpu", eval_every=2)


def tiny_data(n=40, shape=(8, 8)):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n) % 4


def trainer(seed=0, shape=SHAPE, settings=SETTINGS):
    images, labels = tiny_data(shape=(shape.height, shape.width) + ((3,) if shape.channels == 3 else ()))
    return GanTrainer(images=images, labels=labels, shape=shape, settings=settings, seed=seed)


@pytest.mark.parametrize("resolution, channels", [(8, 1), (12, 1), (16, 3), (28, 1), (32, 3)])
def test_model_shapes(resolution, channels):
    g = Generator(num_classes=3, channels=channels, resolution=resolution, z_dim=8, width=8)
    d = Discriminator(num_classes=3, channels=channels, resolution=resolution, width=8)
    y = torch.tensor([0, 2])
    x = g(torch.randn(2, 8), y)
    assert x.shape == (2, channels, resolution, resolution) and x.abs().max() <= 1
    assert d(x, y).shape == (2,)


def test_train_resolution():
    # Square sides of the form b * 2^k (b in 4..7) train as they are; others go to a power of two.
    assert [train_resolution(s, s) for s in (8, 12, 28, 32, 48, 64)] == [8, 12, 28, 32, 48, 64]
    assert [train_resolution(s, s) for s in (5, 9, 18, 27, 36)] == [8, 16, 32, 32, 64]
    assert train_resolution(28, 24) == 32
    assert [layout(r) for r in (8, 28, 32, 48)] == [(4, 1), (7, 2), (4, 3), (6, 3)]
    with pytest.raises(
        ConfigError, match=r"synthesis.enabled: .* up to 64x64, these are 96x80: set source.resize"
    ):
        train_resolution(80, 96)


def test_hinge_losses():
    assert discriminator_hinge(torch.tensor([2.0]), torch.tensor([-2.0])) == 0
    assert discriminator_hinge(torch.tensor([0.0]), torch.tensor([0.0])) == 2
    assert generator_hinge(torch.tensor([1.0, 3.0])) == -2


def test_diffaug_is_seeded_and_policy_fits_resolution():
    assert "cutout" not in default_policy(1, 8) and "color" not in default_policy(1, 32)
    assert default_policy(3, 32) == ("color", "translation", "cutout")
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    policy = default_policy(3, 16)
    a, b, c = (augment(x, policy, draw(len(x), torch.Generator().manual_seed(s))) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape


def test_diffaug_translation_shifts_and_cutout_zeroes_a_square():
    n, side = 400, 16
    x = torch.arange(side * side, dtype=torch.float32).add_(1).view(1, 1, side, side).expand(n, 1, -1, -1)
    r = draw(n, torch.Generator().manual_seed(0))
    moved = augment(x, ("translation",), r)
    shifts = set()
    for image, out in zip(x[:, 0], moved[:, 0], strict=True):
        shifts.add(_shift(image, out))  # a whole-image shift with zero fill, or it fails
    assert shifts == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}  # 16 * 0.125 = 2

    cut = augment(torch.ones(n, 1, side, side), ("cutout",), r)[:, 0]
    for out in cut:
        rows, cols = (out == 0).any(1).nonzero()[:, 0], (out == 0).any(0).nonzero()[:, 0]
        assert int((out == 0).sum()) == len(rows) * len(cols)  # one rectangle
        assert 4 <= len(rows) <= 8 and 4 <= len(cols) <= 8  # the 8x8 square, clipped at most by half
    centres = {int((out == 0).any(1).nonzero()[:, 0].float().mean()) for out in cut}
    assert min(centres) <= 2 and max(centres) >= 13


def _shift(image, out):
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            if torch.equal(out, _shifted(image, dy, dx)):
                return dy, dx
    raise AssertionError("not a translation")


def _shifted(image, dy, dx):
    """out[i, j] = image[i + dy, j + dx], zero outside."""
    side = image.shape[0]
    padded = torch.nn.functional.pad(image, [2, 2, 2, 2])
    return padded[2 + dy : 2 + dy + side, 2 + dx : 2 + dx + side]


def test_train_step_reports_metrics():
    t = trainer()
    metrics = t.train_step()
    assert set(metrics) >= {"step", "d_loss", "g_loss", "d_real", "d_fake"}
    assert metrics["step"] == 1 and np.isfinite(metrics["d_loss"])
    assert all(p.requires_grad for p in t.D.parameters())  # frozen for the G update only


def test_resume_is_exact(tmp_path):
    straight = trainer()
    straight.train(5)
    first = trainer()
    first.train(3)
    save_checkpoint(first.state_dict(), tmp_path / "c.pt")
    resumed = trainer(seed=123)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    resumed.train(2)
    assert resumed.step == straight.step == 5
    for name in ("G", "D", "G_ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_a_loaded_discriminator_scores_as_the_saved_one(tmp_path):
    """Sampling scores with D straight after loading, before any power iteration: the
    spectral norm's cached u v^T must follow the loaded vectors."""
    saved = trainer()
    saved.train(3)
    save_checkpoint(saved.state_dict(), tmp_path / "c.pt")
    loaded = trainer(seed=123)
    loaded.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    x, y = torch.rand(6, 1, 8, 8) * 2 - 1, torch.arange(6) % 4
    with torch.no_grad():
        assert torch.equal(loaded.D(x, y), saved.D(x, y))


def test_checkpoint_refusals(tmp_path):
    t = trainer()
    save_checkpoint(t.state_dict(), tmp_path / "ok.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(PipelineError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "corrupt.pt")
    torch.save({"format": "someone-else"}, tmp_path / "other.pt")
    with pytest.raises(PipelineError, match="not a dataset-expand-gan/2 checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(PipelineError, match="made for"):
        trainer(shape=GanShape(5, 1, 8, 8)).load_state_dict(load_checkpoint(tmp_path / "ok.pt"))
    legacy = load_checkpoint(tmp_path / "ok.pt")
    del legacy["resolution"]  # saved before native resolutions: taken as the power of two
    trainer().load_state_dict(legacy)
    legacy["shape"] = [4, 1, 12, 12]
    with pytest.raises(PipelineError, match="trained at 16x16.*at 12x12: retrain"):
        trainer(shape=GanShape(4, 1, 12, 12)).load_state_dict(legacy)
    wider = trainer(settings=SETTINGS.model_copy(update={"width": 16}))
    with pytest.raises(PipelineError, match="synthesis.train.width"):
        wider.load_state_dict(load_checkpoint(tmp_path / "ok.pt"))


def test_sampling_is_reproducible_per_seed():
    t = trainer()
    t.recompute_ema_batchnorm(batches=2)
    labels, seeds = np.array([0, 1, 2]), np.array([5, 6, 7])
    a, scores = generate(t.G_ema, t.D, labels, seeds, out_size=(8, 8))
    b, _ = generate(t.G_ema, None, labels[1:], seeds[1:], out_size=(8, 8))
    assert a.dtype == np.uint8 and a.shape == (3, 8, 8) and np.isfinite(scores).all()
    assert np.array_equal(a[1:], b)
    assert latent(3, 64, truncation=0.5).abs().max() <= 0.5


def test_select_filters_and_counts():
    labels = np.array([0, 0, 0, 1, 1])
    confidence = np.array([0.9, 0.1, 0.8, 0.7, 0.95])
    d_score = np.array([1.0, 2.0, -5.0, 0.0, 0.0])
    kept = select(labels, confidence, d_score, {0: 2, 1: 1}, min_confidence=0.5, reject_d_fraction=0.0)
    assert kept.tolist() == [0, 2, 3]
    kept = select(labels, confidence, d_score, {0: 2, 1: 2}, min_confidence=0.5, reject_d_fraction=0.4)
    assert 2 not in kept.tolist()
    # fill_short: a short class takes its most confident rejected candidates, and no more
    kept = select(labels, confidence, d_score, {0: 3, 1: 1}, min_confidence=0.85, reject_d_fraction=0.0)
    assert kept.tolist() == [0, 4]
    kept = select(
        labels, confidence, d_score, {0: 2, 1: 1}, min_confidence=0.85, reject_d_fraction=0.0, fill=True
    )
    assert kept.tolist() == [0, 2, 4]


def test_metrics_behave():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 4))
    same = rng.normal(size=(300, 4))
    shifted = same + 3.0
    assert gm.frechet_distance(real, real) < 1e-6
    assert gm.frechet_distance(real, same) < 0.3 < gm.frechet_distance(real, shifted)
    assert gm.frechet_distance(real, shifted) == pytest.approx(36.0, rel=0.15)
    kid_same = gm.kernel_inception_distance(real, same, rng=rng, subset_size=100)
    kid_far = gm.kernel_inception_distance(real, shifted, rng=rng, subset_size=100)
    assert abs(kid_same) < 0.05 < kid_far
    precision, recall = gm.precision_recall(real, same)
    assert precision > 0.8 and recall > 0.8
    assert gm.precision_recall(real, shifted + 10)[0] == 0.0
    per_class = gm.per_class_frechet(real, np.arange(300) % 2, same, np.arange(300) % 2, 3)
    assert per_class[1] is not None and per_class[2] is None


def test_ema_warm_up_follows_live_weights_early():
    t = trainer()
    initial = [p.clone() for p in t.G_ema.parameters()]
    t.train_step()
    live, ema = list(t.G.parameters()), list(t.G_ema.parameters())
    to_live = sum(float((e - p.detach()).abs().sum()) for e, p in zip(ema, live, strict=True))
    to_init = sum(float((e - p).abs().sum()) for e, p in zip(ema, initial, strict=True))
    assert to_live < to_init  # decay min(0.999, 1/10) at the first step, not 0.999


@pytest.mark.parametrize(
    "make",
    [
        lambda: SNConv2d(3, 16, 3, padding=1),
        lambda: SNLinear(32, 1),
        lambda: SNLinear(32, 8),
        lambda: SNEmbedding(10, 32),
    ],
    ids=["conv", "linear-1", "linear", "embedding"],
)
def test_spectral_norm_divides_by_the_largest_singular_value(make):
    # Seeded: power iteration converges at the rate of the top two singular values' ratio,
    # which an unseeded random matrix can make arbitrarily slow.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = make()
    for _ in range(300):
        layer.power_iteration()
    matrix = layer.weight.detach().flatten(1)
    normalized = layer.normalized_weight().detach().flatten(1)
    assert torch.linalg.matrix_norm(normalized, 2) == pytest.approx(1.0, rel=1e-3)
    assert torch.allclose(normalized * torch.linalg.matrix_norm(matrix, 2), matrix, rtol=1e-3, atol=1e-6)


def test_power_iteration_runs_once_per_discriminator_update():
    t = trainer()
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
    t = trainer()
    t.train(2)
    state = t.state_dict()
    state["rng"] = {name: torch.zeros(16, dtype=torch.uint8) for name in state["rng"]}  # a CUDA state
    state["rng_device"] = "cuda"
    save_checkpoint(state, tmp_path / "cuda.pt")
    fresh = trainer()
    fresh.load_state_dict(load_checkpoint(tmp_path / "cuda.pt"))
    assert fresh.step == 2
    assert all(torch.equal(a, b) for a, b in zip(fresh.G_ema.parameters(), t.G_ema.parameters(), strict=True))
    assert torch.equal(fresh.rng["latent"].get_state(), trainer().rng["latent"].get_state())


def test_reference_classifier_trains_for_a_handful_of_steps():
    # OneCycleLR divides by zero at exactly 5 scheduled steps; the classifier must not.
    images = torch.rand(10, 1, 8, 8)
    labels = torch.arange(10) % 2
    for epochs in (1, 5):
        model = train_classifier(images, labels, 2, seed=0, spec=ClassifierSpec(epochs=epochs, batch_size=2))
        assert model(images).shape == (10, 2)


def test_compiled_training_matches_eager_and_saves_plain_modules(tmp_path):
    """``train.compile`` traces G and D (our spectral norm keeps the forward pure); about a
    minute of compiling on 2 cores."""
    compiled = trainer(settings=SETTINGS.model_copy(update={"compile": "default"}))
    eager = trainer()
    got = compiled.train(3, log_every=1)
    want = eager.train(3, log_every=1)
    for a, b in zip(got, want, strict=True):
        assert a["d_loss"] == pytest.approx(b["d_loss"], rel=1e-3, abs=1e-4)
        assert a["g_loss"] == pytest.approx(b["g_loss"], rel=1e-3, abs=1e-4)
    save_checkpoint(compiled.state_dict(), tmp_path / "c.pt")
    plain = trainer()  # no "_orig_mod." prefixes: an eager trainer loads it
    plain.load_state_dict(load_checkpoint(tmp_path / "c.pt"))
    assert plain.step == 3


def test_bf16_autocast_step_keeps_float32_weights_and_losses(monkeypatch):
    """The CUDA path's mixed precision, run on the CPU: the convolutions run in bfloat16,
    the weights, optimiser state and losses stay float32, and the first step's losses
    match float32 to bfloat16's precision."""
    want = trainer().train_step()
    monkeypatch.setattr(GanTrainer, "_autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    t = trainer()
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
