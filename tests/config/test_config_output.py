"""pipeline.config.output: shard sizes, remote URLs, the runner."""

import os

import pytest
from pydantic import ValidationError

from pipeline.build import load_config
from pipeline.config import AUTO_SHARDS
from pipeline.config.common import AUTO_SHARD_ROWS
from pipeline.config.output import OutputConfig, RunnerConfig
from pipeline.core.errors import ConfigError


def test_shard_limit_in_rows_bytes_or_auto():
    assert OutputConfig(shard_size=7).shard_limit(100) == ("rows", 7)
    assert OutputConfig(shard_size="1KiB").shard_limit(100) == ("bytes", 1024)
    low, high = AUTO_SHARD_ROWS
    assert OutputConfig().shard_limit(10) == ("rows", low)
    assert OutputConfig().shard_limit(10**9) == ("rows", high)


@pytest.mark.parametrize("size, message", [(0, "at least 1 row"), ("lots", "must look like '64MB'")])
def test_bad_shard_sizes(size, message):
    with pytest.raises(ValidationError, match=message):
        OutputConfig(shard_size=size)


def test_remote_must_be_a_known_url():
    assert OutputConfig(remote="memory://bucket/x").remote == "memory://bucket/x"
    with pytest.raises(ValidationError, match="is not a URL"):
        OutputConfig(remote="bucket/x")
    with pytest.raises(ValidationError, match="nosuchprotocol"):
        OutputConfig(remote="nosuchprotocol://x")


def test_runner():
    assert RunnerConfig(workers=3).worker_count() == 3
    assert RunnerConfig().worker_count() == (os.cpu_count() or 1)
    with pytest.raises(ValidationError, match="runner.address is only used with runner.kind 'dask'"):
        RunnerConfig(address="tcp://host:8786")
    assert RunnerConfig(kind="dask", address="tcp://host:8786").address == "tcp://host:8786"


def test_auto_shard_size_depends_on_rows_only():
    output = load_config(None, []).output
    assert output.shard_size == "auto"
    low, high = AUTO_SHARD_ROWS
    assert output.shard_limit(total_rows=10) == ("rows", low)
    assert output.shard_limit(total_rows=AUTO_SHARDS * 3000) == ("rows", 3000)
    assert output.shard_limit(total_rows=10**9) == ("rows", high)
    with pytest.raises(ConfigError, match="shard_size"):
        load_config(None, ["output.shard_size=automatic"])
