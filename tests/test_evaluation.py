"""The evaluation: subsets, the low-data protocol, the report beside (not inside) the version."""

import json

import numpy as np
import pytest
import torch
from test_synthesis import TINY_GAN

from cli.main import main
from pipeline.build import build
from pipeline.core.errors import ConfigError
from pipeline.evaluate.evaluation import (
    SUBSETS,
    EvaluationSettings,
    _Rows,
    evaluate,
    low_data_mask,
    markdown,
    same_rows_as,
    write_report,
)
from pipeline.version.manifest import verify


def test_low_data_mask_keeps_k_real_per_class_and_their_copies():
    ids = np.asarray(["a", "b", "c", "d", "a", "b", "c", "d", "g1", "g2"])
    rows = _Rows(
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
        return {"splits": {"train": {"by_origin": by_origin}}}

    full = manifest(real=10, augmented=40, synthetic=10)
    assert [same_rows_as(full, s) for s in SUBSETS] == [None] * 4
    declined = manifest(real=10, augmented=40, synthetic=0)
    assert same_rows_as(declined, "real+augmented+synthetic") == "real+augmented"
    assert same_rows_as(declined, "synthetic only (CAS)") is None  # no rows, nothing to train
    plain = manifest(real=10)
    assert same_rows_as(plain, "real+augmented") == same_rows_as(plain, "real+augmented+synthetic") == "real"


def test_evaluation_of_every_subset(tiny_config):
    version, _ = build(tiny_config(*TINY_GAN, "synthesis.gate.enabled=false"))
    document = evaluate(version, EvaluationSettings(seeds=2, epochs=1))
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
        EvaluationSettings(seeds=0)
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or mps"):
        EvaluationSettings(device="tpu")


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


def test_evaluate_cli_runs_the_flow(prefect_harness, tiny_config, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same figures on a GPU host
    version, _ = build(tiny_config())
    code = main(
        ["evaluate", str(version), "--seeds", "1", "--epochs", "1", "--real-per-class", "2", "--json"]
    )
    assert code == 0
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert document["settings"]["real_per_class"] == 2
    assert (document["settings"]["device"], document["classifier"]["device"]) == ("auto", "cpu")
    assert document["classifier"]["cpu_threads"] == torch.get_num_threads()
    assert document["results"]["real"]["rows"] == 6  # 2 per class, 3 classes
    assert document["results"]["real+augmented"]["rows"] == 18
    assert document["results"]["synthetic only (CAS)"] == {"rows": 0}
    # No synthetic rows: that subset is real+augmented, trained once.
    same = document["results"]["real+augmented+synthetic"]
    assert same == {**document["results"]["real+augmented"], "same_rows_as": "real+augmented"}
    assert (version / "attachments" / "evaluation-k2.md").is_file()
    capsys.readouterr()
    assert main(["show", str(version)]) == 0
    assert "attachments/evaluation-k2.json" in capsys.readouterr().out
    assert main(["evaluate", str(version), "--seeds", "0"]) == 2
    assert main(["evaluate", str(version), "--device", "mps"]) == 2  # none here: said before Prefect starts
    assert "--device: mps is not available on this machine" in capsys.readouterr().err


def test_accuracy_text_shows_no_spread_for_one_seed():
    from pipeline.evaluate.evaluation import accuracy_text

    one = {"rows": 10, "runs": [0.5], "mean": 0.5, "std": 0.0}
    two = {"rows": 10, "runs": [0.5, 0.6], "mean": 0.55, "std": 0.05}
    assert accuracy_text(one) == "0.5000 (1 seed)" and accuracy_text(two) == "0.5500 ± 0.0500"
    assert accuracy_text({"rows": 0}) == "no rows"
