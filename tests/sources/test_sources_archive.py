import pytest

from conftest import make_imagefolder, read_source
from pipeline.core.errors import SourceError


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_an_archive_builds_as_its_folder_would(tmp_path, suffix):
    """A tarball or zip of an image folder (under one top folder, with macOS's __MACOSX
    beside it in the zip) gives the same version as the folder; the extraction is removed."""
    import shutil
    import tarfile
    import zipfile

    from pipeline.augment.preview import preview
    from pipeline.build import build, load_config

    folder = make_imagefolder(tmp_path / "pets", {"cat": 3, "dog": 3})
    archive = tmp_path / f"pets{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as zipped:
            for file in sorted(folder.rglob("*.png")):
                zipped.write(file, file.relative_to(tmp_path).as_posix())
            zipped.writestr("__MACOSX/pets/._cat", b"resource fork")
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname="pets")

    def version(path):
        overrides = ["source.kind=imagefolder", f"source.path={path}", f"output.root={tmp_path / 'out'}"]
        return build(load_config(None, [*overrides, "augment.copies_per_image=1", "runner.workers=1"]))[0]

    assert version(archive) == version(folder)  # the same id: the same content
    assert not [p for p in (tmp_path / "out").rglob("source-*")]
    config = load_config(
        None, ["source.kind=imagefolder", f"source.path={archive}", "augment.copies_per_image=1"]
    )
    assert preview(config, 1, tmp_path / "preview.png").is_file()
    shutil.rmtree(tmp_path / "out")


def test_an_archive_of_one_split_folder_keeps_its_split(tmp_path, capsys):
    """train/<class>/... stays a train split; expand init names the archive's kind and path."""
    import tarfile

    from cli.main import main
    from pipeline.build import load_config
    from pipeline.sources.archive import extracted

    make_imagefolder(tmp_path / "data", {"cat": 2, "dog": 2}, splits=["train"])
    archive = tmp_path / "pets-v2.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "data" / "train", arcname="train")
    with extracted(archive) as folder:
        reader, samples = read_source("imagefolder", folder)
        assert {s.split for s in samples} == {"train"} and samples[0].source_id == "train/cat/img_000.png"
    assert not folder.exists()  # the temporary extraction is removed
    out = tmp_path / "expand.yaml"
    assert main(["init", str(archive), "--out", str(out)]) == 0
    config = load_config(out)
    assert config.source.path == archive and config.source.kind == "imagefolder" and config.name == "pets-v2"


def test_an_unsafe_or_oversized_archive_member_is_refused(tmp_path, monkeypatch):
    import io
    import tarfile
    import types

    from pipeline.sources.archive import extract

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../escape.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(SourceError, match=r"evil.tar: member '../escape.png' would be extracted outside"):
        extract(archive, tmp_path / "into")
    assert not (tmp_path / "escape.png").exists()
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("cat/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(SourceError, match="member 'cat/link.png' is a link"):
        extract(archive, tmp_path / "into")
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("cat/big.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    monkeypatch.setattr("pipeline.sources.archive.shutil.disk_usage", lambda _: types.SimpleNamespace(free=2))
    with pytest.raises(SourceError, match=r"member 'cat/big.png' \(3 bytes\) does not fit on the disk"):
        extract(archive, tmp_path / "into")
    monkeypatch.undo()
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="broken.zip: cannot read the archive"):
        extract(tmp_path / "broken.zip", tmp_path / "into")
