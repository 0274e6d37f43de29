"""pipeline.config.reference: docs/config.md is generated from the models and kept current."""

import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from pipeline.config import AugmentConfig, Config, GanTrainConfig, OutputConfig, SplitConfig, reference
from pipeline.config.reference import (
    COMMAND,
    DOC_PATH,
    constraints_text,
    default_text,
    section_markdown,
    sections,
    type_text,
)


def _leaf_keys(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        inner = [
            t
            for t in (field.annotation, *typing.get_args(field.annotation))
            if isinstance(t, type) and issubclass(t, BaseModel)
        ]
        if inner and typing.get_origin(field.annotation) is not dict:
            yield from _leaf_keys(inner[0], f"{prefix}{name}.")
        else:
            yield prefix + name


def test_docs_config_md_is_current():
    stale = not DOC_PATH.is_file() or DOC_PATH.read_text(encoding="utf-8") != reference.reference()
    assert not stale, f"{DOC_PATH} is stale: run `{COMMAND}` and commit the result"


def test_every_key_is_documented_with_a_description():
    text = reference.reference()
    assert [key for key in _leaf_keys(Config) if f"| `{key}` |" not in text] == []
    missing = [
        f"{prefix}.{name}"
        for prefix, model in sections()
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert missing == []


def test_sections_walk_the_tree_depth_first():
    keys = [key for key, _ in sections()]
    assert keys[:3] == ["", "source", "split"]
    assert keys.index("augment") < keys.index("augment.classes.<class name>") < keys.index("augment.tune")
    assert {"augment.mix", "synthesis.train", "synthesis.gate", "evaluate"} <= set(keys)


def test_type_text():
    assert type_text(int) == "integer" and type_text(Path) == "path"
    assert type_text(int | None) == "integer, or null"
    assert type_text(int | str) == "integer or string"
    assert type_text(Literal["a", "b"] | None) == "one of: a, b; or null"
    assert type_text(list[float]) == "list of number"
    assert type_text(tuple[int, int]) == "[integer, integer]"
    assert type_text(dict[str, SplitConfig]) == "mapping of class name to section"
    assert type_text(SplitConfig) == "section"


def test_default_and_constraints_text():
    fields = GanTrainConfig.model_fields
    assert default_text(fields["betas"]) == "`[0.0, 0.9]`"
    assert default_text(fields["compile"]) == "`null`"
    assert default_text(AugmentConfig.model_fields["transforms"]) == "`[]`"  # from a factory
    assert default_text(AugmentConfig.model_fields["tune"]) == ""  # a section
    assert default_text(OutputConfig.model_fields["root"]) == '`"output"`'
    assert constraints_text(fields["ema_decay"]) == ">= 0.0, < 1.0"
    assert constraints_text(fields["device"]) == ""


def test_section_markdown_is_one_table():
    text = section_markdown("split", SplitConfig)
    assert text.startswith("## `split`\n\nHow a test split is carved")
    assert "| `split.test_fraction` | number | `0.2` | > 0.0, < 1.0 | share of the images" in text


def test_main_prints_or_writes(tmp_path, monkeypatch, capsys):
    assert reference.main([]) == 0
    assert capsys.readouterr().out == reference.reference()
    target = tmp_path / "config.md"
    monkeypatch.setattr(reference, "DOC_PATH", target)
    assert reference.main(["--write"]) == 0
    assert target.read_text(encoding="utf-8") == reference.reference()
