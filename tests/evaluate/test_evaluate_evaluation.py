"""pipeline.evaluate.evaluation: settings, subsets, the report and its files."""

import json

import numpy as np
import pytest
import torch

from conftest import TINY_GAN
from pipeline.build import build
from pipeline.config import EvaluateConfig, validate_section
from pipeline.core.errors import ConfigError, PipelineError
from pipeline.evaluate import evaluation
from pipeline.evaluate.evaluation import (
    SUBSETS,
    accuracy_text,
    bar_chart,
    evaluate,
    evaluate_subset,
    low_data_mask,
    markdown,
    report,
    reused_result,
    same_rows_as,
    unbalanced_test,
    write_report,
)
from pipeline.evaluate.rows import VersionRows
from pipeline.version.manifest import verify
from pipeline.version.model import Manifest, SplitCounts


def result(mean=0.5, runs=(0.5,)):
    return {
        "rows": 10,
        "mean": mean,
        "std": 0.0,
        "runs": list(runs),
        "balanced_accuracy": {"mean": mean, "std": 0.0, "runs": list(runs)},
        "per_class": {"a": mean, "b": None},
    }


def document(**settings):
    return {
        "version_id": "v-test",
        "settings": EvaluateConfig(**settings).model_dump(mode="json"),
        "test_rows": 4,
        "test_per_class": {"a": 2, "b": 2},
        "classifier": {"steps": 20},
        "results": {"real": result(), "synthetic only (CAS)": {"rows": 0}},
        "comparisons": {},
        "note": "a note",
    }


def test_evaluation_settings_are_an_evaluate_config_with_config_errors():
    assert validate_section(EvaluateConfig, dict(seeds=2)) == EvaluateConfig(seeds=2)
    with pytest.raises(ConfigError, match="evaluation needs seeds >= 1 and epochs >= 1, got 3, 0"):
        validate_section(EvaluateConfig, dict(epochs=0))


def test_low_data_mask_is_seeded():
    rows = VersionRows(
        images=np.zeros((6, 2, 2), np.uint8),
        labels=np.array([0, 0, 0, 1, 1, 1]),
        origins=np.array(["real"] * 6),
        source_ids=np.array(list("abcdef")),
    )
    masks = [low_data_mask(rows, 1, seed).tolist() for seed in range(8)]
    assert all(sum(m) == 2 for m in masks) and len({tuple(m) for m in masks}) > 1
    assert masks[0] == low_data_mask(rows, 1, 0).tolist()


def test_same_rows_and_reused_results():
    train = SplitCounts(rows=5, by_origin={"real": 5, "augmented": 0})
    manifest = Manifest.model_construct(splits={"train": train})
    assert same_rows_as(manifest, "real+augmented") == "real"
    assert reused_result(manifest, {"real": {"rows": 5}}, "real+augmented") == {
        "rows": 5,
        "same_rows_as": "real",
    }
    assert reused_result(manifest, {}, "real+augmented") is None
    assert reused_result(manifest, {"real": {"rows": 5}}, "real") is None


def test_accuracy_text_and_unbalanced_test():
    assert accuracy_text(result(0.25)) == "0.2500 (1 seed)"
    assert accuracy_text(result(0.5, runs=(0.4, 0.6))) == "0.5000 ± 0.0000"
    assert accuracy_text({"rows": 0, "left_out": "why"}) == "left out (see the report)"
    assert unbalanced_test(document()) is None
    assert unbalanced_test({**document(), "test_per_class": {"a": 3, "b": 1}}) == "1 to 3 rows per class"


def test_markdown_states_the_protocol():
    text = markdown(document(real_per_class=2, seeds=1, epochs=4), chart="evaluation-k2.png")
    assert "Reference classifier, 20 steps for every subset, 1 seeds, 2 real images per class" in text
    assert "| real | 10 | 0.5000 (1 seed) |" in text and "| b | - |" in text
    assert "![test accuracy](evaluation-k2.png)" in text and text.endswith("a note.\n")


def test_bar_chart_and_write_report(tmp_path):
    bar_chart(document(), tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")
    paths = write_report(tmp_path, document(real_per_class=3))
    assert [p.name for p in paths] == ["evaluation-k3.json", "evaluation-k3.md", "evaluation-k3.png"]
    assert json.loads(paths[0].read_text())["settings"]["real_per_class"] == 3


def test_subset_report_and_evaluate_on_a_version(tiny_config, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    version, _ = build(tiny_config())
    settings = EvaluateConfig(seeds=1, epochs=1, device="cpu")
    with pytest.raises(PipelineError, match="unknown subset"):
        evaluate_subset(version, "fake", settings)
    real = evaluate_subset(version, "real", settings)
    assert real["rows"] > 0 and len(real["runs"]) == 1
    doc = report(version, settings, {"real": real})
    assert doc["settings"] == {
        "seeds": 1,
        "epochs": 1,
        "real_per_class": None,
        "seed": 0,
        "device": "cpu",
        "grid": 2,
    }
    assert doc["classifier"]["device"] == "cpu" and doc["classifier"]["epochs"] == 1
    assert doc["classifier"]["grid"] == 2
    # the global-pooling head (evaluate.grid 1): the classifiers train with it, and the report says so
    specs, train = [], evaluation.train_classifier
    monkeypatch.setattr(
        evaluation, "train_classifier", lambda *a, spec, **k: specs.append(spec) or train(*a, spec=spec, **k)
    )
    pooled = EvaluateConfig(seeds=1, epochs=1, device="cpu", grid=1)
    global_head = evaluate_subset(version, "real", pooled)
    assert [s.grid for s in specs] == [1] and report(version, pooled, {"real": global_head})["classifier"][
        "grid"
    ] == 1
    whole = evaluate(version, settings, subsets=["real", "synthetic only (CAS)"])
    assert list(whole["results"]) == ["real", "synthetic only (CAS)"]
    assert whole["results"]["real"]["runs"] == real["runs"]  # seeded: the same figures
    assert whole["results"]["synthetic only (CAS)"] == {"rows": 0}
    with pytest.raises(PipelineError, match="unknown subsets"):
        evaluate(version, settings, subsets=["fake"])
    assert set(SUBSETS) >= set(whole["results"])


def test_low_data_mask_keeps_k_real_per_class_and_their_copies():
    ids = np.asarray(["a", "b", "c", "d", "a", "b", "c", "d", "g1", "g2"])
    rows = VersionRows(
        images=np.zeros((10, 2, 2), np.uint8),
        labels=np.asarray([0, 0, 1, 1, 0, 0, 1, 1, 0, 1]),
        origins=np.asarray(["real"] * 4 + ["augmented"] * 4 + ["synthetic"] * 2),
        source_ids=ids,
    )
    mask = low_data_mask(rows, 1, seed=0)
    kept_real = set(ids[mask & (rows.origins == "real")])
    assert len(kept_real) == 2 and len(kept_real & {"a", "b"}) == 1 and len(kept_real & {"c", "d"}) == 1
    assert set(ids[mask & (rows.origins == "augmented")]) == kept_real
    assert mask[rows.origins == "synthetic"].all()
    assert low_data_mask(rows, None, 0).all()


def test_subsets_without_rows_to_tell_them_apart_are_the_same():
    def manifest(**by_origin):
        train = SplitCounts(rows=sum(by_origin.values()), by_origin=by_origin)
        return Manifest.model_construct(splits={"train": train})

    full = manifest(real=10, augmented=40, synthetic=10)
    assert [same_rows_as(full, s) for s in SUBSETS] == [None] * 4
    declined = manifest(real=10, augmented=40, synthetic=0)
    assert same_rows_as(declined, "real+augmented+synthetic") == "real+augmented"
    assert same_rows_as(declined, "synthetic only (CAS)") is None  # no rows, nothing to train
    plain = manifest(real=10)
    assert same_rows_as(plain, "real+augmented") == same_rows_as(plain, "real+augmented+synthetic") == "real"


def test_evaluation_of_every_subset(tiny_config):
    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.enabled=false"))
    document = evaluate(version, validate_section(EvaluateConfig, dict(seeds=2, epochs=1)))
    results = document["results"]
    assert (
        results["real"]["rows"]
        < results["real+augmented"]["rows"]
        < results["real+augmented+synthetic"]["rows"]
    )
    assert results["synthetic only (CAS)"]["rows"] == 9
    for result in results.values():
        assert len(result["runs"]) == 2 and 0 <= result["mean"] <= 1
        assert set(result["per_class"]) == {"cat", "dog", "eel"}
        # balanced accuracy: each seed's mean of the per-class accuracies
        balanced = result["balanced_accuracy"]
        assert len(balanced["runs"]) == 2
        per_class = [v for v in result["per_class"].values() if v is not None]
        assert balanced["mean"] == pytest.approx(np.mean(per_class))
    paths = write_report(version, document)
    assert [p.name for p in paths] == ["evaluation.json", "evaluation.md", "evaluation.png"]
    assert json.loads(paths[0].read_text())["results"] == results
    report_text = paths[1].read_text()
    assert "| real+augmented |" in report_text and "| eel |" in report_text
    assert verify(version) == []  # attachments are not part of the hashed content
    with pytest.raises(ConfigError):
        validate_section(EvaluateConfig, dict(seeds=0))
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or mps"):
        validate_section(EvaluateConfig, dict(device="tpu"))


def test_an_unbalanced_test_split_gets_a_balanced_accuracy_column():
    result = {"rows": 40, "mean": 0.9, "std": 0.0, "runs": [0.9], "per_class": {"a": 1.0, "b": 0.0}}
    result["balanced_accuracy"] = {"mean": 0.5, "std": 0.0, "runs": [0.5]}
    document = {
        "version_id": "v-x",
        "settings": {"epochs": 1, "seeds": 1, "real_per_class": None},
        "test_rows": 10,
        "test_per_class": {"a": 9, "b": 1},
        "results": {"real": result, "synthetic only (CAS)": {"rows": 0}},
        "note": "n",
    }
    text = markdown(document)
    assert "unbalanced (1 to 9 rows per class)" in text
    assert "| real | 40 | 0.9000 (1 seed) | 0.5000 (1 seed) |" in text
    assert "| synthetic only (CAS) | 0 | no rows | no rows |" in text
    balanced = markdown({**document, "test_per_class": {"a": 5, "b": 5}})
    assert "balanced" not in balanced and "| real | 40 | 0.9000 (1 seed) |" in balanced


def test_accuracy_text_shows_no_spread_for_one_seed():
    from pipeline.evaluate.evaluation import accuracy_text

    one = {"rows": 10, "runs": [0.5], "mean": 0.5, "std": 0.0}
    two = {"rows": 10, "runs": [0.5, 0.6], "mean": 0.55, "std": 0.05}
    assert accuracy_text(one) == "0.5000 (1 seed)" and accuracy_text(two) == "0.5500 ± 0.0500"
    assert accuracy_text({"rows": 0}) == "no rows"


def test_every_subset_trains_as_long_and_is_compared_with_its_baseline_by_a_paired_interval(
    tiny_config, monkeypatch
):
    from pipeline.evaluate import evaluation as module

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    version, _ = build(tiny_config())
    trained, train = [], module.train_classifier
    monkeypatch.setattr(
        module,
        "train_classifier",
        lambda *a, spec, **k: trained.append((len(a[0]), spec.steps)) or train(*a, spec=spec, **k),
    )
    doc = evaluate(version, EvaluateConfig(seeds=2, epochs=2, device="cpu"))
    rows = {n: r["rows"] for n, r in doc["results"].items() if r["rows"]}
    assert rows["real+augmented"] == 3 * rows["real"]  # 2 copies per image
    # 2 epochs of the largest subset (3 x 10 rows, batches of 64: 1 step each), for every subset.
    assert {steps for _, steps in trained} == {2} and doc["classifier"]["steps"] == 2
    assert len(trained) == 4  # real and real+augmented, 2 seeds each (no synthetic rows)
    gain = doc["comparisons"]["real+augmented"]
    assert gain["baseline"] == "real" and set(gain) == {"baseline", "accuracy", "balanced_accuracy"}
    interval = gain["accuracy"]
    assert interval["seeds"] == 2 and interval["images"] == doc["test_rows"]
    assert interval["low"] <= interval["gain"] <= interval["high"]
    expected = doc["results"]["real+augmented"]["mean"] - doc["results"]["real"]["mean"]
    assert interval["gain"] == pytest.approx(expected)
    assert doc["results"]["real"]["std"] == pytest.approx(np.std(doc["results"]["real"]["runs"], ddof=1))
    assert "_correct" not in json.dumps(doc, default=str)
    assert "over real" in markdown(doc)


def test_the_low_data_protocol_leaves_out_synthetic_rows_of_a_generator_that_saw_more(
    tiny_config, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.enabled=false"))
    settings = EvaluateConfig(seeds=1, epochs=1, device="cpu", real_per_class=1)
    doc = evaluate(version, settings)
    for subset in ("real+augmented+synthetic", "synthetic only (CAS)"):
        assert doc["results"][subset]["rows"] == 0
        assert "generator trained on up to" in doc["results"][subset]["left_out"]
        assert "more than the 1 this protocol keeps" in doc["results"][subset]["left_out"]
    assert doc["results"]["real"]["rows"] > 0
    assert "left out: the synthetic rows" in markdown(doc)
    whole = evaluate(version, EvaluateConfig(seeds=1, epochs=1, device="cpu"), ["synthetic only (CAS)"])
    assert whole["results"]["synthetic only (CAS)"]["rows"] > 0  # every real image kept: no leak


def test_leaked_synthesis_and_arm_steps():
    from pipeline.evaluate.evaluation import arm_steps, leaked_synthesis

    train = SplitCounts(
        rows=30,
        by_origin={"real": 10, "augmented": 10, "synthetic": 10},
        by_origin_class={"real": {"a": 6, "b": 4}},
    )
    manifest = Manifest.model_construct(splits={"train": train})
    assert leaked_synthesis(manifest, EvaluateConfig()) is None  # every real image kept
    assert leaked_synthesis(manifest, EvaluateConfig(real_per_class=6)) is None  # no more than K seen
    assert "up to 6 real images per class" in leaked_synthesis(manifest, EvaluateConfig(real_per_class=5))
    rows = VersionRows(
        images=np.zeros((200, 2, 2), np.uint8),
        labels=np.arange(200) % 2,
        origins=np.asarray(["real"] * 20 + ["augmented"] * 100 + ["synthetic"] * 80),
        source_ids=np.asarray([f"s{k % 20}" for k in range(200)]),
    )
    # The largest subset is real+augmented+synthetic (200 rows): 4 batches of 64 per epoch;
    # with 5 real images per class kept, the synthetic subsets are left out (their generator
    # saw 6): the largest is real+augmented, 10 real + 50 copies, 1 batch.
    assert arm_steps(rows, EvaluateConfig(epochs=2), manifest) == 8
    assert arm_steps(rows, EvaluateConfig(epochs=2, real_per_class=5), manifest) == 2
