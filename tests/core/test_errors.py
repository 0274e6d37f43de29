import pytest

from pipeline.core.errors import ConfigError, PipelineError, SourceError


@pytest.mark.parametrize("kind", [ConfigError, SourceError])
def test_config_and_source_errors_are_pipeline_errors_the_cli_reports_without_a_traceback(kind):
    with pytest.raises(PipelineError, match="a.png: cannot decode image"):
        raise kind("a.png: cannot decode image")
    assert issubclass(PipelineError, Exception) and not issubclass(ConfigError, SourceError)
