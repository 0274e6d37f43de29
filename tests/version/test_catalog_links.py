"""The catalog never writes through a symbolic link: the lock file and the tags folder."""

import os

import pytest

from pipeline.build import build
from pipeline.core.errors import PipelineError
from pipeline.version.catalog import LOCK_FILE, TAGS_DIR, dataset_lock, refs, tag_version


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_kept(tmp_path):
    dataset = tmp_path / "data"
    dataset.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("do not truncate me")
    (dataset / LOCK_FILE).symlink_to(precious)
    with pytest.raises(PipelineError, match="is a symbolic link"):
        with dataset_lock(dataset, purpose="test"):
            pass
    assert precious.read_text() == "do not truncate me"


def test_a_lock_path_that_is_not_a_regular_file_is_refused(tmp_path):
    dataset = tmp_path / "data"
    (dataset / LOCK_FILE).mkdir(parents=True)
    with pytest.raises((PipelineError, IsADirectoryError)):
        with dataset_lock(dataset, purpose="test"):
            pass
    fifo = tmp_path / "fifo-data"
    fifo.mkdir()
    os.mkfifo(fifo / LOCK_FILE)
    # O_RDWR on a FIFO does not block; the lock refuses it as not a regular file
    with pytest.raises(PipelineError, match="not a regular file"):
        with dataset_lock(fifo, purpose="test"):
            pass


def test_a_tags_folder_that_is_a_link_is_neither_followed_nor_written(tiny_config, tmp_path):
    version, _ = build(tiny_config())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (version.parent / TAGS_DIR).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(PipelineError, match="is a symbolic link"):
        tag_version(version, "best")
    assert list(elsewhere.iterdir()) == []
    (elsewhere / "planted").symlink_to(f"../{version.name}")
    assert refs(version.parent)[1] == {}  # a linked tags folder's entries are not the dataset's tags


def test_set_aside_moves_a_version_out_of_the_way_with_its_problems(tmp_path):
    from pipeline.version.catalog import DAMAGED_NOTE, DAMAGED_PREFIX, set_aside

    version = tmp_path / "data" / "v-0123456789abcdef"
    version.mkdir(parents=True)
    aside = set_aside(version, ["manifest.json: unreadable"])
    assert not version.exists() and aside.parent == version.parent
    assert aside.name.startswith(f"{DAMAGED_PREFIX}{version.name}-")
    assert (aside / DAMAGED_NOTE).read_text() == "manifest.json: unreadable\n"


def test_digest_records_are_never_written_through_a_linked_folder(tmp_path):
    from pipeline.version.catalog import record_digest
    from pipeline.version.manifest import DIGESTS_DIR

    dataset, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    dataset.mkdir()
    elsewhere.mkdir()
    assert record_digest(dataset, "v-0123456789abcdef", "ab" * 32).read_text().startswith("ab" * 32)
    (dataset / DIGESTS_DIR / "v-0123456789abcdef.sha256").unlink()
    (dataset / DIGESTS_DIR).rmdir()
    (dataset / DIGESTS_DIR).symlink_to(elsewhere)
    with pytest.raises(PipelineError, match="is a symbolic link"):
        record_digest(dataset, "v-0123456789abcdef", "ab" * 32)
    assert list(elsewhere.iterdir()) == []
