"""pipeline.evaluate.evaluation: settings, subsets, the report and its files."""

import json

import numpy as np
import pytest
import torch

from pipeline.build import build
from pipeline.config import EvaluateConfig
from pipeline.core.errors import ConfigError, PipelineError
from pipeline.evaluate.evaluation import (
    SUBSETS,
    EvaluationSettings,
    _Rows,
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
        "results": {"real": result(), "synthetic only (CAS)": {"rows": 0}},
        "note": "a note",
    }


def test_evaluation_settings_is_an_evaluate_config_with_config_errors():
    assert EvaluationSettings(seeds=2) == EvaluateConfig(seeds=2)
    with pytest.raises(ConfigError, match="evaluation needs seeds >= 1 and epochs >= 1, got 3, 0"):
        EvaluationSettings(epochs=0)


def test_low_data_mask_is_seeded():
    rows = _Rows(
        images=np.zeros((6, 2, 2), np.uint8),
        labels=np.array([0, 0, 0, 1, 1, 1]),
        origins=np.array(["real"] * 6),
        source_ids=np.array(list("abcdef")),
    )
    masks = [low_data_mask(rows, 1, seed).tolist() for seed in range(8)]
    assert all(sum(m) == 2 for m in masks) and len({tuple(m) for m in masks}) > 1
    assert masks[0] == low_data_mask(rows, 1, 0).tolist()


def test_same_rows_and_reused_results():
    manifest = {"splits": {"train": {"by_origin": {"real": 5, "augmented": 0}}}}
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
    assert unbalanced_test(document()) is None
    assert unbalanced_test({**document(), "test_per_class": {"a": 3, "b": 1}}) == "1 to 3 rows per class"


def test_markdown_states_the_protocol():
    text = markdown(document(real_per_class=2, seeds=1, epochs=4), chart="evaluation-k2.png")
    assert "Reference classifier, 4 epochs, 1 seeds, 2 real images per class" in text
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
    assert doc["settings"] == {"seeds": 1, "epochs": 1, "real_per_class": None, "seed": 0, "device": "cpu"}
    assert doc["classifier"]["device"] == "cpu" and doc["classifier"]["epochs"] == 1
    whole = evaluate(version, settings, subsets=["real", "synthetic only (CAS)"])
    assert list(whole["results"]) == ["real", "synthetic only (CAS)"]
    assert whole["results"]["real"]["runs"] == real["runs"]  # seeded: the same figures
    assert whole["results"]["synthetic only (CAS)"] == {"rows": 0}
    with pytest.raises(PipelineError, match="unknown subsets"):
        evaluate(version, settings, subsets=["fake"])
    assert set(SUBSETS) >= set(whole["results"])
