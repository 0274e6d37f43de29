"""Reading a config: YAML, ``--set`` overrides, and validation problems as one
:class:`~pipeline.core.errors.ConfigError` that names the file (or option) and the key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.root import Config
from pipeline.core.errors import ConfigError

Section = TypeVar("Section", bound=BaseModel)


def read_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply ``dotted.key=value`` overrides, validate the tree.

    The stages' own checks (an augmentation recipe builds) are
    :func:`pipeline.build.stages.load_config`'s: use that to load a config for a run.

    Relative ``source.path`` and ``output.root`` in the file are kept relative to the
    working directory, as users type them on the command line.

    Raises:
        ConfigError: unreadable file, bad YAML, bad override, or invalid values; the
            message names the file and the dotted key.
    """
    where = str(path) if path is not None else "<defaults>"
    raw = _read_yaml(Path(path)) if path is not None else {}
    for item in overrides:
        apply_override(raw, item)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(where, exc)) from None


def validate_section(section: type[Section], values: Mapping[str, Any]) -> Section:
    """One config section from plain values (command-line options, flow parameters).

    Returns:
        The validated section.

    Raises:
        ConfigError: a bad value; one message per problem, joined by "; ". A section's own
            checks name their key in the message; other problems are prefixed with the key.
    """
    try:
        return section.model_validate(dict(values))
    except ValidationError as exc:
        parts = [
            message if kind == "value_error" else f"{key}: {message}" for key, kind, message in _problems(exc)
        ]
        raise ConfigError("; ".join(parts)) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``dotted.key=value`` (the value read as YAML) in the raw config mapping ``raw``,
    creating the sections on the way.

    Raises:
        ConfigError: no ``=``, an empty key part, a value that is not YAML, or a key that
            goes through a value that is not a section.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {text!r} is not valid YAML: {exc}") from None
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def format_validation_error(where: str, exc: ValidationError) -> str:
    """The lines of a config error: ``invalid config WHERE:``, then ``  dotted.key: message``
    for each problem (an unknown key says so; a bad choice shows the value given)."""
    lines = [f"invalid config {where}:"]
    lines += [f"  {key}: {message}" for key, _, message in _problems(exc)]
    return "\n".join(lines)


def _problems(exc: ValidationError) -> list[tuple[str, str, str]]:
    """(dotted key, pydantic error type, message) of each problem in ``exc``."""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "literal_error":
            message = f"{message}, got {error.get('input')!r}"
        problems.append((key, error["type"], message))
    return problems


def _read_yaml(path: Path) -> dict[str, Any]:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text: {exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping, got {type(raw).__name__}")
    return raw
