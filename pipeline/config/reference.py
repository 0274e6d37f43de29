"""The configuration reference, docs/config.md, generated from the config models: every
section and key with its type, default, constraints and description.

    python -m pipeline.config.reference            # print it
    python -m pipeline.config.reference --write    # write docs/config.md

A test regenerates it and fails when the file is stale.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from pipeline.config.root import Config

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "config.md"
COMMAND = "python -m pipeline.config.reference --write"
_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path", Any: "any"}
_BOUNDS = (
    (annotated_types.Gt, ">", "gt"),
    (annotated_types.Ge, ">=", "ge"),
    (annotated_types.Lt, "<", "lt"),
    (annotated_types.Le, "<=", "le"),
)


def sections(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """Every section of the tree, depth first: (dotted key, model); the root's key is "".
    A mapping of sections (``augment.classes``) appears as ``augment.classes.<class name>``."""
    yield prefix, model
    for name, field in model.model_fields.items():
        inner = _section_of(field.annotation)
        if inner is None:
            continue
        key = f"{prefix}.{name}" if prefix else name
        if typing.get_origin(field.annotation) is dict:
            key += ".<class name>"
        yield from sections(inner, key)


def type_text(annotation: Any) -> str:
    """A field's type in words: ``integer``, ``list of number``, ``one of: a, b``,
    ``string, or null``; a nested model is a ``section``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        # "one of: a, b" lists with commas: the alternatives are set apart by semicolons
        kinds = [type_text(a) for a in args if a is not type(None)]
        joint = "; " if any(":" in k for k in kinds) else ", "
        text = " or ".join(kinds)
        return f"{text}{joint}or null" if type(None) in args else text
    if origin is list:
        return f"list of {type_text(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_text(a) for a in args) + "]"
    if origin is dict:
        value = type_text(args[1])
        return "mapping of class name to section" if value == "section" else "mapping"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    """A field's default as YAML would write it (JSON flow style), or "" for a section."""
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(to_jsonable_python(value))}`"


def constraints_text(field: FieldInfo) -> str:
    """A field's numeric bounds: ``>= 1``, ``> 0, < 1``; "" for none."""
    bounds = []
    for item in field.metadata:
        for kind, sign, attribute in _BOUNDS:
            if isinstance(item, kind):
                bounds.append(f"{sign} {getattr(item, attribute)}")
    return ", ".join(bounds)


def section_markdown(key: str, model: type[BaseModel]) -> str:
    """One section: a heading, the model's docstring, a table of its keys."""
    lines = [f"## {f'`{key}`' if key else 'Top level'}", "", _prose(model.__doc__ or ""), ""]
    lines += [
        "| key | type | default | constraints | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in model.model_fields.items():
        dotted = f"{key}.{name}" if key else name
        cells = [
            f"`{dotted}`",
            type_text(field.annotation),
            default_text(field),
            constraints_text(field),
            # "<root>" would be read as an HTML tag outside a code span
            (field.description or "").replace("<", "&lt;"),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def reference() -> str:
    """The whole of docs/config.md."""
    head = [
        "# Configuration reference",
        "",
        f"<!-- Generated from the models in pipeline/config/ by `{COMMAND}`; do not edit. -->",
        "",
        "A config is one YAML file that holds only what differs from these defaults. "
        "`--set dotted.key=value` overrides one key (the value is read as YAML). Unknown keys "
        "and invalid values are errors that name the file and the dotted key. Examples: "
        "`config/digits.yaml`, `config/imagefolder.example.yaml`, `config/cifar10.example.yaml`.",
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(section_markdown(key, model) for key, model in sections())


def main(argv: Sequence[str] | None = None) -> int:
    """Print the reference, or write it to docs/config.md with ``--write``."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.config.reference", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH} instead of printing")
    args = parser.parse_args(argv)
    text = reference()
    if args.write:
        DOC_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {DOC_PATH}")
    else:
        sys.stdout.write(text)
    return 0


def _section_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _prose(docstring: str) -> str:
    """A docstring as Markdown: Sphinx roles and double backticks become code spans."""
    text = inspect.cleandoc(docstring)
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    raise SystemExit(main())
