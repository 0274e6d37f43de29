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


def _tar_of(path, members: dict[str, bytes]):
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_members_that_fit_one_by_one_but_not_together_are_refused(tmp_path, monkeypatch):
    import types

    from pipeline.sources.archive import extract

    archive = _tar_of(tmp_path / "many.tar", {f"cat/{i}.png": bytes(400) for i in range(4)})
    # 1,000 bytes free: each 400-byte member fits on its own, not all four
    monkeypatch.setattr(
        "pipeline.sources.archive.shutil.disk_usage", lambda _: types.SimpleNamespace(free=1000)
    )
    with pytest.raises(
        SourceError, match=r"member 'cat/2.png' \(400 bytes\) does not fit .* 1,200 bytes, 1,000"
    ):
        extract(archive, tmp_path / "into")


def test_too_many_members_are_refused(tmp_path, monkeypatch):
    from pipeline.sources import archive as archive_module

    monkeypatch.setattr(archive_module, "MAX_MEMBERS", 3)
    archive = _tar_of(tmp_path / "many.tar", {f"cat/{i}.png": b"x" for i in range(5)})
    with pytest.raises(SourceError, match="member 'cat/3.png': the archive holds more than 3 files"):
        archive_module.extract(archive, tmp_path / "into")


def test_an_archive_bomb_is_refused_by_its_compression_ratio(tmp_path):
    import zipfile

    from pipeline.sources.archive import extract

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("cat/zeros.png", bytes(20_000_000))  # 20 MB of zeros: about 20 KB zipped
    with pytest.raises(
        SourceError, match="more than 100 times the archive's size: refused as an archive bomb"
    ):
        extract(bomb, tmp_path / "into")
    assert not list((tmp_path / "into").rglob("*.png"))  # refused before a byte was written


def test_a_member_larger_than_it_declares_is_not_copied_on(tmp_path):
    import io

    from pipeline.sources.archive import _Budget, _write

    target = tmp_path / "into"
    target.mkdir()
    archive = _tar_of(tmp_path / "a.tar", {"x": b"x"})
    with pytest.raises(SourceError, match="holds more than the 3 bytes it declares"):
        _write(archive, "cat/lie.png", 3, io.BytesIO(b"0123456789"), target, _Budget(archive, target))
