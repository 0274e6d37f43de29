"""pipeline.evaluate.classifier: the reference CNN, its seeded training, scores and saving."""

import numpy as np
import pytest
import torch

from pipeline.evaluate.classifier import (
    ClassifierSpec,
    ReferenceCNN,
    accuracy,
    correct,
    extract_features,
    metric_weights,
    new_classifier,
    predict_proba,
    saved_or_trained,
    score,
    to_tensor,
    train_classifier,
)

SPEC = ClassifierSpec(epochs=2, batch_size=8, width=8)


def tiny(n=24, channels=1):
    rng = np.random.default_rng(0)
    shape = (n, 8, 8) if channels == 1 else (n, 8, 8, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8), np.arange(n) % 3


def test_to_tensor_scales_and_moves_channels_first():
    images, _ = tiny(4, channels=3)
    x = to_tensor(images)
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x[0, 1], torch.from_numpy(images[0, :, :, 1]).float() / 255)
    assert to_tensor(tiny(2)[0]).shape == (2, 1, 8, 8)


def test_new_classifier_adapts_to_the_shape():
    model = new_classifier((3, 16, 16), 5, SPEC)
    assert isinstance(model, ReferenceCNN) and model.head.out_features == 5
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
    assert model.embed(torch.zeros(2, 3, 16, 16)).shape == (2, model.feature_dim)


def test_a_grid_head_reads_where_things_are_and_keeps_the_pooled_features():
    spec = ClassifierSpec(epochs=2, batch_size=8, width=8, grid=3)
    model = new_classifier((1, 16, 16), 4, spec)
    assert model.head.in_features == 9 * model.feature_dim
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 4)
    assert model.embed(torch.zeros(2, 1, 16, 16)).shape == (2, model.feature_dim)  # metrics unchanged
    images, labels = tiny()
    trained = train_classifier(to_tensor(images), torch.as_tensor(labels), 3, seed=0, spec=spec)
    assert trained.grid == 3 and predict_proba(trained, to_tensor(images)).shape == (24, 3)


def test_training_depends_only_on_the_seed():
    images, labels = tiny()
    x, y = to_tensor(images), torch.as_tensor(labels)
    state = torch.get_rng_state()
    a = train_classifier(x, y, 3, seed=1, spec=SPEC)
    b = train_classifier(x, y, 3, seed=1, spec=SPEC)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was
    assert all(
        torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    epochs = []
    train_classifier(x, y, 3, seed=2, spec=SPEC, on_epoch=epochs.append)
    assert epochs == [1, 2]


def test_predictions_scores_and_features():
    images, labels = tiny()
    x = to_tensor(images)
    model = train_classifier(x, torch.as_tensor(labels), 3, seed=0, spec=SPEC)
    proba = predict_proba(model, x, batch_size=5)
    assert proba.shape == (24, 3) and torch.allclose(proba.sum(1), torch.ones(24))
    right = correct(model, x, labels)
    assert right.dtype == bool and right.tolist() == (proba.argmax(1).numpy() == labels).tolist()
    assert accuracy(model, x, torch.as_tensor(labels)) == pytest.approx(right.mean())
    features = extract_features(model, x, batch_size=7)
    assert features.shape == (24, model.feature_dim) and features.dtype == np.float64


def test_metric_weights_and_score():
    labels = np.array([0, 0, 0, 1])
    right = np.array([True, True, True, False])
    assert metric_weights(labels, "accuracy") is None
    assert score(right, None) == 0.75
    assert score(right, metric_weights(labels, "balanced_accuracy")) == pytest.approx(0.5)  # (1 + 0) / 2


def test_saved_or_trained_loads_what_it_saved(tmp_path, monkeypatch):
    images, labels = tiny()
    path = tmp_path / "reference.pt"
    args = dict(seed=0, spec=SPEC, device=torch.device("cpu"), path=path)
    first = saved_or_trained(images, labels, 3, save=True, **args)
    assert path.is_file()
    from pipeline.evaluate import classifier

    monkeypatch.setattr(classifier, "train_classifier", lambda *a, **k: pytest.fail("trained again"))
    again = saved_or_trained(images, labels, 3, **args)
    assert all(
        torch.equal(p, q)
        for p, q in zip(first.state_dict().values(), again.state_dict().values(), strict=True)
    )
    path.write_bytes(b"not a checkpoint")
    monkeypatch.undo()
    assert isinstance(saved_or_trained(images, labels, 3, **args), ReferenceCNN)  # unreadable: trains


def test_reference_classifier_trains_for_a_handful_of_steps():
    # OneCycleLR divides by zero at exactly 5 scheduled steps; the classifier must not.
    images = torch.rand(10, 1, 8, 8)
    labels = torch.arange(10) % 2
    for epochs in (1, 5):
        model = train_classifier(images, labels, 2, seed=0, spec=ClassifierSpec(epochs=epochs, batch_size=2))
        assert model(images).shape == (10, 2)


def test_a_training_by_steps_takes_exactly_that_many_whatever_the_images():
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from pipeline.evaluate.classifier import ClassifierSpec, equal_steps, train_classifier, training_steps

    assert training_steps(130, ClassifierSpec(epochs=3)) == 9  # 3 passes of ceil(130 / 64) batches
    assert training_steps(130, ClassifierSpec(epochs=3, steps=7)) == 7
    assert equal_steps(130, 3) == 9 and equal_steps(10, 3) == 3
    images, labels = torch.rand(100, 1, 8, 8), torch.arange(100) % 2
    epochs, steps = [], []
    hook = register_optimizer_step_post_hook(lambda *a: steps.append(1))
    try:
        train_classifier(images, labels, 2, seed=0, spec=ClassifierSpec(steps=5), on_epoch=epochs.append)
    finally:
        hook.remove()
    assert len(steps) == 5 and epochs == [1, 2, 3]  # 2 batches per pass: 2 + 2 + 1


def test_a_row_of_weight_zero_does_not_train_and_a_weight_scales_its_loss():
    images, labels = tiny()
    x, y = to_tensor(images), torch.as_tensor(labels)
    weights = torch.ones(len(y))
    weights[::4] = 0.0  # every fourth row: no say in the training
    scrambled = y.clone()
    scrambled[::4] = (y[::4] + 1) % 3

    def trained(targets, w):
        model = train_classifier(x, targets, 3, seed=0, spec=SPEC, weights=w)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(trained(y, weights), trained(scrambled, weights))  # their labels do not matter
    assert not torch.equal(trained(y, None), trained(scrambled, None))  # unweighted, they do
    halved = trained(y, torch.full((len(y),), 0.5))
    assert not torch.allclose(halved, trained(y, None))  # a weight scales the loss, not just its ratio
