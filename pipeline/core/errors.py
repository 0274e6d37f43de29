"""Errors the pipeline raises for bad input. The CLI turns them into exit code 2."""


class PipelineError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class ConfigError(PipelineError):
    """The configuration is invalid: names the file and the key."""


class SourceError(PipelineError):
    """A source dataset cannot be read: names the file and the reason."""
