"""The Prefect flow and the ``expand`` command, end to end on small data."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_synthesis import TINY_GAN

from cli.main import main
from pipeline.build import build, load_config
from pipeline.core.progress import GAN, REFERENCE, SAMPLING, WRITING, reporting
from pipeline.gan.synthesis import REFERENCE_FILE
from pipeline.version.manifest import read_manifest


def test_flow_publishes_then_reuses(prefect_harness, tiny_config, tmp_path):
    from flows.expand import expand_for

    config = tiny_config()
    overrides = [
        f"{k}={v}"
        for k, v in (
            ("source.kind", "imagefolder"),
            ("source.path", config.source.path),
            ("output.root", tmp_path / "flow-out"),
            ("augment.copies_per_image", 1),
            ("output.shard_size", 4),
            ("runner.workers", 2),  # a pool of worker processes
        )
    ]
    expand = expand_for(load_config(None, overrides))
    first = expand(config_path=None, overrides=overrides)
    assert first["created"] is True
    manifest = read_manifest(first["version_dir"])
    assert len(manifest["shards"]) > 2  # several shard tasks ran
    assert first["splits"]["train"]["augmented"] == first["splits"]["train"]["real"]
    second = expand(config_path=None, overrides=overrides)
    assert second["created"] is False and second["version_dir"] == first["version_dir"]
    assert manifest["run"]["orchestrator"] == "prefect" and manifest["run"]["flow_run_id"]
    version = Path(first["version_dir"])
    assert os.readlink(version.parent / "latest") == version.name
    # Shard tasks in worker processes under Prefect, or one worker in-process: same bytes.
    alone, _ = build(load_config(None, [*overrides, f"output.root={tmp_path / 'alone'}", "runner.workers=1"]))
    assert alone.name == version.name
    assert {f["path"]: f["sha256"] for f in read_manifest(alone)["files"]} == {
        f["path"]: f["sha256"] for f in manifest["files"]
    }


def test_cli_run_prints_version_dir_last(prefect_harness, tiny_folder, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"source:\n  kind: imagefolder\n  path: {tiny_folder}\noutput:\n  root: {tmp_path / 'cli-out'}\n"
    )
    assert main(["run", str(config), "--set", "augment.copies_per_image=1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    version_dir = lines[-1]
    assert read_manifest(version_dir)["version_id"] in version_dir
    assert main(["run", str(config), "--set", "augment.copies_per_image=1"]) == 0
    again = capsys.readouterr().out.strip().splitlines()
    assert again[-1] == version_dir and "already published" in again[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "{cfg}", "--set", "augment.bogus=1"], "augment.bogus: unknown key"),
        (
            ["run", "{cfg}", "--set", "source.kind=imagefolder", "--set", "source.path=/no/such/dir"],
            "source.path does not exist: /no/such/dir",
        ),
        (["run", "{missing}"], "cannot read config file"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_usage_errors_exit_2_without_traceback(tmp_path, args, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 1\n")
    args = [a.format(cfg=cfg, missing=tmp_path / "missing.yaml") for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_cli_bad_source_data_exits_1_without_traceback(prefect_harness, tmp_path, capsys):
    folder = tmp_path / "src" / "cls"
    folder.mkdir(parents=True)
    (folder / "bad.png").write_bytes(b"definitely not a png")
    code = main(
        [
            "run",
            "/dev/null",
            "--set",
            "source.kind=imagefolder",
            "--set",
            f"source.path={tmp_path / 'src'}",
            "--set",
            f"output.root={tmp_path / 'o'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "bad.png" in err


def test_cli_a_device_this_machine_lacks_exits_2_before_ingest(prefect_harness, tiny_config, capsys):
    config = tiny_config()
    overrides = [f"source.path={config.source.path}", f"output.root={config.output.root}"]
    overrides += ["source.kind=imagefolder", "synthesis.enabled=true", "synthesis.device=mps"]
    code = main(["run", "/dev/null", *(a for o in overrides for a in ("--set", o))])
    err = capsys.readouterr().err
    assert code == 2 and "synthesis.device: mps is not available on this machine" in err
    assert "Traceback" not in err
    assert not list((config.output.root / config.dataset_name()).glob(".incomplete-*"))


def test_cli_train_gan_then_sample_from_checkpoint(prefect_harness, tiny_config, tmp_path, capsys):
    source = tiny_config().source.path
    common = [
        "--set",
        "source.kind=imagefolder",
        "--set",
        f"source.path={source}",
        "--set",
        f"output.root={tmp_path / 'o'}",
    ] + [a for s in (*TINY_GAN, "synthesis.gate.enabled=false") for a in ("--set", s)]
    assert main(["train-gan", "/dev/null", *common, "--out", str(tmp_path / "ckpt")]) == 0
    checkpoint = capsys.readouterr().out.strip().splitlines()[-1]
    assert checkpoint == str(tmp_path / "ckpt" / "best.pt")
    assert (tmp_path / "ckpt" / "last.pt").is_file()
    assert (tmp_path / "ckpt" / REFERENCE_FILE).is_file()
    assert not list((tmp_path / "o").rglob("manifest.json"))  # training alone publishes nothing
    stages = set()
    with reporting(lambda stage, *_: stages.add(stage)):
        code = main(["run", "/dev/null", *common, "--set", f"synthesis.checkpoint={checkpoint}"])
    assert code == 0
    assert SAMPLING in stages and REFERENCE not in stages  # the classifier saved beside it is used
    version = capsys.readouterr().out.strip().splitlines()[-1]
    manifest = read_manifest(version)
    assert manifest["synthesis"]["checkpoint_step"] in {2, 4}  # the best by FD, not the last
    assert manifest["splits"]["train"]["by_origin"]["synthetic"] == 9
    stages.clear()  # resumed training, in a fresh staging folder, finds the classifier too
    more = ["--resume", str(tmp_path / "ckpt" / "last.pt"), "--set", "synthesis.train.steps=6"]
    with reporting(lambda stage, *_: stages.add(stage)):
        assert main(["train-gan", "/dev/null", *common, "--out", str(tmp_path / "more"), *more]) == 0
    assert GAN in stages and REFERENCE not in stages
    assert torch.load(tmp_path / "more" / "last.pt", weights_only=True)["step"] == 6


def test_full_disk_fails_the_run_cleanly(prefect_harness, tiny_config, tmp_path, capsys, monkeypatch):
    import errno

    from pipeline.build import write as build_module
    from pipeline.version.catalog import list_versions

    calls = {"n": 0}

    def no_space(*args):
        calls["n"] += 1
        raise OSError(errno.ENOSPC, "Error writing bytes to file")

    monkeypatch.setattr(build_module, "encode_image", no_space)
    source = tiny_config().source.path
    written = []
    with reporting(lambda stage, done, total: written.append(done) if stage == WRITING else None):
        code = main(
            ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
            + ["--set", f"output.root={tmp_path / 'o'}", "--set", "runner.workers=1"]
        )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert (
        f"expand: run failed: [Errno 28] No space left on device under output.root ({tmp_path / 'o'}): "
        in err
    )
    assert "this version needs about 1.1 MB (15 rows of about" in err  # the source images, nothing augmented
    # at most one attempt per shard (train, test), none retried: another cannot find space;
    # the test shard may be cancelled before it starts, once the train shard failed
    assert 1 <= calls["n"] <= 2
    assert written == []  # failed shards are not counted as written
    dataset = tmp_path / "o" / "src"
    assert list_versions(dataset) == [] and not list(dataset.glob(".incomplete-*"))


def test_a_transient_write_error_is_retried(prefect_harness, tiny_config, tmp_path, monkeypatch):
    from flows.expand import expand_for
    from pipeline.build import write as build_module
    from pipeline.version.manifest import verify

    real_encode = build_module.encode_image
    flaky, _ = _failing_once(real_encode, 3, "Input/output error (transient)")
    monkeypatch.setattr(build_module, "encode_image", flaky)
    config = tiny_config(f"output.root={tmp_path / 'flaky'}")
    result = expand_for(config)(config_path=None, overrides=_overrides_of(config))
    assert result["created"] and verify(Path(result["version_dir"])) == []
    monkeypatch.setattr(build_module, "encode_image", real_encode)
    reference, _ = build(tiny_config(f"output.root={tmp_path / 'ref'}"))
    assert reference.name == Path(result["version_dir"]).name


def test_the_flow_uploads_to_remote_storage_and_retries_a_failed_upload(
    prefect_harness, tiny_config, tmp_path, monkeypatch
):
    import fsspec

    from flows.expand import expand_for
    from pipeline.version import remote
    from pipeline.version.manifest import verify

    flaky, calls = _failing_once(remote._upload, 2, "connection reset (transient)")
    monkeypatch.setattr(remote, "_upload", flaky)
    bucket = f"memory://flow-{tmp_path.name}"
    config = tiny_config(f"output.root={tmp_path / 'up'}", f"output.remote={bucket}")
    try:
        overrides = [*_overrides_of(config), f"output.remote={bucket}"]
        result = expand_for(config)(config_path=None, overrides=overrides)
        assert result["remote"] == f"{bucket}/src/{result['version_id']}" and calls["n"] > 2
        assert verify(result["remote"]) == [] and verify(Path(result["version_dir"])) == []
    finally:
        fsspec.filesystem("memory").rm(f"/flow-{tmp_path.name}", recursive=True)


def _failing_once(real, at: int, message: str):
    """``real`` wrapped to raise OSError(message) on call number ``at``; and the call count."""
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == at:
            raise OSError(message)
        return real(*args)

    return flaky, calls


def _overrides_of(config) -> list[str]:
    import json

    return [
        "source.kind=imagefolder",
        f"source.path={config.source.path}",
        f"output.root={config.output.root}",
        f"augment.copies_per_image={config.augment.copies_per_image}",
        f"augment.transforms={json.dumps(config.augment.transforms)}",
        f"output.shard_size={config.output.shard_size}",
        f"split.test_fraction={config.split.test_fraction}",
        "runner.workers=1",
    ]


def test_cli_skip_policy_completes_and_counts_what_it_left_out(
    prefect_harness, tiny_config, tmp_path, capsys
):
    import shutil

    from PIL import Image

    source = tmp_path / "messy"
    shutil.copytree(tiny_config().source.path, source)
    good = len(list(source.rglob("*.png")))
    (source / "cat" / "broken.png").write_bytes(b"definitely not a png")
    (source / "cat" / "notes.txt").write_text("not an image")
    Image.new("RGB", (8, 8)).save(source / "dog" / "photo.jfif", "JPEG")  # an image, by Pillow's names
    args = ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
    args += ["--set", f"output.root={tmp_path / 'o'}", "--set", "source.on_bad_image=skip"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "source: 1 images left out, 0 groups of identical images, 1 files ignored" in out
    manifest = read_manifest(out.strip().splitlines()[-1])
    [skipped] = manifest["source"]["skipped"]
    assert skipped["source_id"] == "cat/broken.png" and "cannot decode image" in skipped["reason"]
    assert manifest["source"]["images"] == good + 1  # the .jfif is read


def test_init_writes_a_commented_config_that_loads(tmp_path, capsys):
    from conftest import make_imagefolder

    folder = make_imagefolder(tmp_path / "my photos", {"cat": 6, "dog": 2})
    out = tmp_path / "expand.yaml"
    assert main(["init", str(folder), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    text = out.read_text()
    assert "# Found 8 images in 2 classes (2 to 6 per class), 8x8 RGB" in text
    config = load_config(out)
    assert config.source.path == folder and config.name == "my-photos"
    # unbalanced: filled up to the largest class's training images, 6 less the test one carved
    assert config.augment.target_per_class == 5
    assert "few training images" not in text and "metric: balanced_accuracy" in text  # 2 to 6 per class
    assert main(["init", str(folder), "--out", str(out)]) == 2  # no silent overwrite
    assert "exists; pass --force" in capsys.readouterr().err


def test_init_names_classes_that_filling_would_copy_many_times(tmp_path, capsys):
    from conftest import make_imagefolder

    folder = make_imagefolder(tmp_path / "data", {"cat": 60, "dog": 2, "eel": 3})
    assert main(["init", str(folder), "--out", str(tmp_path / "expand.yaml")]) == 0
    text = (tmp_path / "expand.yaml").read_text()
    assert load_config(tmp_path / "expand.yaml").augment.target_per_class == 48  # 12 of 60 carved for test
    # dog keeps both images for training (2 x 0.2 rounds to 0), eel keeps 2 of 3
    assert "# few training images: dog (2), eel (2); filling them takes up to 23 augmented copies" in text
    assert "  #   metric: balanced_accuracy" in text
    uncommented = text.replace("  # gate:", "  gate:").replace("  #   metric:", "    metric:")
    (tmp_path / "gate.yaml").write_text(uncommented)
    assert load_config(tmp_path / "gate.yaml").synthesis.gate.metric == "balanced_accuracy"


def test_init_fills_classes_up_to_the_largest_training_split(tmp_path, capsys):
    """Test images are never augmented: the training counts decide the target."""
    from conftest import make_imagefolder

    folder = make_imagefolder(tmp_path / "data", {"cat": 6, "dog": 2}, splits=["train"])
    make_imagefolder(folder, {"cat": 1, "dog": 5}, splits=["test"], seed=1)
    assert main(["init", str(folder), "--out", str(tmp_path / "expand.yaml")]) == 0
    text = (tmp_path / "expand.yaml").read_text()
    assert "# Found 14 images in 2 classes (2 to 6 training images per class)" in text
    assert load_config(tmp_path / "expand.yaml").augment.target_per_class == 6  # not 7: cat's test image


def test_init_finds_the_source_kind_from_its_files(tmp_path, capsys):
    """CIFAR-10 batches, IDX files and Parquet get a config of their kind that loads, with
    the counts of their training split; integer labels get a hint to name them."""
    from conftest import make_cifar, make_mnist, make_parquet

    sources = {
        "cifar10": make_cifar(tmp_path / "cifar-10-batches-py", per_batch=20),
        "mnist-idx": make_mnist(tmp_path / "idx", train=12, test=4),
        "parquet": make_parquet(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet", [0, 0, 0, 1]),
    }
    make_parquet(tmp_path / "pq" / "data" / "test-00000-of-00001.parquet", [1, 1, 1, 1], seed=1)
    for kind, path in sources.items():
        source = path.parent.parent if kind == "parquet" else path
        out = tmp_path / f"{kind}.yaml"
        assert main(["init", str(source), "--out", str(out)]) == 0
        text, config = out.read_text(), load_config(out)
        assert config.source.kind == kind and config.source.path == source
        assert ("# class_names:" in text) == (kind != "cifar10")  # CIFAR's names are in batches.meta
        assert ("on_bad_image" in text) == (kind == "parquet")  # arrays of pixels cannot be unreadable
    cifar = (tmp_path / "cifar10.yaml").read_text()
    assert "# Found 40 images in 10 classes" in cifar and "32x32 RGB, splits: test, train." in cifar
    idx = (tmp_path / "mnist-idx.yaml").read_text()
    assert "# Found 16 images in 3 classes (4 to 4 training images per class), 8x8 L" in idx
    parquet = (tmp_path / "parquet.yaml").read_text()
    assert "# Found 8 images in 2 classes (1 to 3 training images per class), 8x8 RGB" in parquet
    assert load_config(tmp_path / "parquet.yaml").augment.target_per_class == 3


def test_init_resizes_images_of_several_sizes_to_the_most_common(prefect_harness, tmp_path, capsys):
    """A folder of photos of several sizes gets source.resize (the most common size), and
    the config builds."""
    from conftest import make_imagefolder, random_image

    folder = make_imagefolder(tmp_path / "photos", {"cat": 3, "dog": 3}, size=(12, 10))
    random_image(np.random.default_rng(1), size=(30, 20)).save(folder / "dog" / "big.png")
    out = tmp_path / "expand.yaml"
    assert main(["init", str(folder), "--out", str(out)]) == 0
    text = out.read_text()
    assert "# Found 7 images in 2 classes (3 to 4 per class), 2 sizes, most often 12x10 RGB" in text
    assert "the images come in 2 sizes (12x10 to 30x20)" in text
    config = load_config(out, [f"output.root={tmp_path / 'o'}"])
    assert config.source.resize == (10, 12) and config.source.resize_mode == "crop"
    assert main(["run", str(out), "--set", f"output.root={tmp_path / 'o'}", "--quiet"]) == 0
    version = Path(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = read_manifest(version)
    assert manifest["image"]["height"] == 10 and manifest["image"]["width"] == 12
    assert "was resized to 12x10 as it was ingested (crop" in (version / "README.md").read_text()


def test_init_counts_sizes_as_the_images_decode(tmp_path, capsys):
    """A phone photo stored 40x20 with EXIF orientation 6 decodes 20x40: two sizes."""
    from PIL import Image

    folder = tmp_path / "photos"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        Image.new("RGB", (40, 20)).save(folder / name / "a.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20)).save(folder / "dog" / "turned.jpg", exif=exif.tobytes())
    out = tmp_path / "expand.yaml"
    assert main(["init", str(folder), "--out", str(out)]) == 0
    assert "2 sizes, most often 40x20" in out.read_text()
    assert load_config(out).source.resize == (20, 40)


def test_init_offers_to_shrink_large_images(tmp_path, capsys):
    """Images over 512 a side: a commented resize when they share one size, a resize to the
    most common size shrunk to 512 when they do not."""
    from PIL import Image

    folder = tmp_path / "photos"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        Image.new("RGB", (1024, 600)).save(folder / name / "a.jpg")
    out = tmp_path / "expand.yaml"
    assert main(["init", str(folder), "--out", str(out)]) == 0
    assert "  # resize: [300, 512]" in out.read_text() and load_config(out).source.resize is None
    Image.new("RGB", (700, 700)).save(folder / "dog" / "b.jpg")
    assert main(["init", str(folder), "--out", str(out), "--force"]) == 0
    assert "shrunk" in out.read_text() and load_config(out).source.resize == (300, 512)


def test_init_on_a_published_version_says_its_copies_read_as_real(tiny_config, tmp_path, capsys):
    version, _ = build(tiny_config())
    made = read_manifest(version)["splits"]["train"]["by_origin"]["augmented"]
    out = tmp_path / "expand.yaml"
    assert main(["init", str(version / "data"), "--out", str(out)]) == 0
    text = out.read_text()
    assert f"# {version.name} is a version written by expand: {made:,} of its training" in text
    assert load_config(out).source.kind == "parquet"


def test_init_names_what_it_cannot_read(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["init", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "a.yaml")]) == 1
    assert "notes.txt: not a folder, a .parquet file or an archive (.zip, .tar" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "missing"), "--out", str(tmp_path / "a.yaml")]) == 1
    assert "missing: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "a.yaml").exists()


def test_init_in_the_image_folder_puts_versions_next_to_it(tmp_path, monkeypatch, capsys):
    """``expand init .`` in the data folder: ``output`` would be inside the source (and
    refused), so the versions go to a folder beside it."""
    from conftest import make_imagefolder

    monkeypatch.chdir(make_imagefolder(tmp_path / "pets", {"cat": 3, "dog": 3}))
    assert main(["init", "."]) == 0
    config = load_config("expand.yaml")
    assert config.source.path == Path(".") and config.output.root == Path("../pets-versions")


def test_synthesis_on_images_over_64_pixels_stops_with_the_keys_to_change(prefect_harness, tmp_path, capsys):
    """No traceback: the size is known after ingest (or from source.resize, at load)."""
    from conftest import make_imagefolder

    folder = make_imagefolder(tmp_path / "big", {"cat": 3, "dog": 3}, size=(80, 72))
    args = ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={folder}"]
    args += ["--set", f"output.root={tmp_path / 'o'}", "--set", "synthesis.enabled=true"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "GAN synthesis supports images up to 64x64, these are 80x72: set source.resize" in err
    assert "Traceback" not in err
    assert main([*args, "--set", "source.resize=[72, 80]"]) == 2
    assert "synthesis.enabled: GAN synthesis supports images up to 64x64, and source.resize is [72, 80]" in (
        capsys.readouterr().err
    )
    tiny = [item for key in TINY_GAN for item in ("--set", key)]
    assert main([*args, "--set", "source.resize=[16, 16]", *tiny]) == 0  # resized, it trains


def test_run_json_and_quiet(prefect_harness, tiny_config, tmp_path, capsys):
    import json

    source = tiny_config().source.path
    args = ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
    args += ["--set", f"output.root={tmp_path / 'o'}"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["created"] and set(result["splits"]) == {"train", "test"}
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == result["version_dir"]


def test_preview_writes_a_grid_and_publishes_nothing(tiny_config, tmp_path, capsys):
    from PIL import Image

    source = tiny_config().source.path
    out = tmp_path / "preview.png"
    args = ["preview", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
    args += ["--set", f"output.root={tmp_path / 'o'}", "--set", "augment.transforms=[{Affine: {rotate: 20}}]"]
    assert main([*args, "--n", "5", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as grid:
        assert grid.size[0] > 6 * 8 * 6 and grid.size[1] > 3 * 8 * 6  # 1 + 5 tiles, 3 classes, scaled 6x
    assert not (tmp_path / "o").exists()


def test_a_one_off_run_sends_no_flow_heartbeats_unless_they_are_set():
    """``expand run`` (and ``train-gan``, ``evaluate``) turn Prefect's flow-run heartbeats
    off (their thread holds every run up to a second at exit); a frequency the user set is
    kept."""
    from prefect.settings import get_current_settings, temporary_settings

    from flows.settings import one_off_run_settings

    if getattr(get_current_settings().flows, "heartbeat_frequency", None) is None:
        pytest.skip("this Prefect sends no flow-run heartbeats by default")
    with one_off_run_settings():
        assert get_current_settings().flows.heartbeat_frequency is None
    with temporary_settings(updates={"flows.heartbeat_frequency": 60}), one_off_run_settings():
        assert get_current_settings().flows.heartbeat_frequency == 60
    assert get_current_settings().flows.heartbeat_frequency is not None  # restored on exit


def test_a_one_off_run_batches_task_run_records_on_a_server_it_starts():
    """A temporary server started by ``expand run`` gets the batched task-run recorder
    through its environment; values the user set are kept, and nothing else changes."""
    from prefect.settings import get_current_settings, temporary_settings

    from flows.settings import one_off_run_settings

    before = get_current_settings()
    if not hasattr(before.server.services, "task_run_recorder"):
        pytest.skip("this Prefect has no task-run recorder settings")
    with one_off_run_settings():
        inside = get_current_settings()
        env = inside.to_environment_variables(exclude_unset=True)
        assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "100"
        assert inside.server.services.task_run_recorder.flush_interval == 3600.0
        assert inside.api.url == before.api.url
        assert inside.server.services.event_persister == before.server.services.event_persister
    mine = {"server.services.task_run_recorder.batch_size": 7}
    with temporary_settings(updates=mine), one_off_run_settings():
        assert get_current_settings().server.services.task_run_recorder.batch_size == 7
        assert get_current_settings().server.services.task_run_recorder.flush_interval == 3600.0
    assert get_current_settings() is before


def test_serve_needs_a_schedule_of_at_least_a_second(capsys):
    assert main(["serve", "/dev/null"]) == 2
    assert "needs a schedule: --cron or --interval" in capsys.readouterr().err
    assert main(["serve", "/dev/null", "--interval", "0"]) == 2
    assert "--interval must be at least 1 second, got 0" in capsys.readouterr().err


def test_a_run_that_will_not_fit_is_warned_before_it_writes(
    prefect_harness, tiny_config, tmp_path, monkeypatch
):
    import logging

    from flows.expand import expand_for
    from pipeline.ingest import space
    from pipeline.ingest import stage as ingest

    monkeypatch.setattr(space, "_free", lambda where: 8192)
    monkeypatch.setattr(ingest, "check_staging_room", lambda *args, **kwargs: None)  # not this test's
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("prefect").addHandler(handler)
    try:
        config = tiny_config(f"output.root={tmp_path / 'w'}")
        result = expand_for(config)(config_path=None, overrides=_overrides_of(config))
    finally:
        logging.getLogger("prefect").removeHandler(handler)
    assert result["created"]  # a warning, not a refusal: the estimate may be wrong
    [warning] = [w for w in warnings if "may run out of space" in w]
    assert warning.startswith(
        f"output.root {tmp_path / 'w'} may run out of space: this version needs about 1.1 MB"
    )
    assert warning.endswith("and 0.0 MB was free after ingest")


def _group_members(group: int) -> list[str]:
    """The live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while listed
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(stat.parent.name)
    return members


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")
@pytest.mark.parametrize(
    ("signum", "whole_group", "code", "said"),
    [
        (signal.SIGINT, True, 130, "expand: run interrupted"),  # Ctrl-C reaches every process of the group
        (signal.SIGTERM, False, 143, "expand: run terminated"),  # `kill PID`: the command's process only
    ],
)
def test_a_stopped_run_cleans_up_and_leaves_no_process(
    tmp_path, tiny_folder, signum, whole_group, code, said
):
    import json

    tests = Path(__file__).parent
    recipe = [{"custom_transforms:Slow": {"seconds": 0.4}}]  # a shard of 300 rows: 2 minutes
    args = [
        "run",
        "/dev/null",
        *("--set", "source.kind=imagefolder", "--set", f"source.path={tiny_folder}"),
        *("--set", f"output.root={tmp_path / 'o'}", "--set", "runner.workers=2"),
        *("--set", "augment.copies_per_image=400", "--set", "output.shard_size=300"),
        *("--set", 'augment.custom_transforms=["custom_transforms:Slow"]'),
        *("--set", f"augment.transforms={json.dumps(recipe)}"),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a terminal gives a command
    )
    dataset = tmp_path / "o" / "src"
    deadline = time.monotonic() + 120
    try:
        while not list(dataset.glob(".incomplete-*/version/data/*.parquet")):  # shards being written
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        (os.killpg if whole_group else os.kill)(process.pid, signum)
        # the shards running are stopped, not waited for (the workers ignore Ctrl-C themselves)
        out, err = process.communicate(timeout=30)
        assert process.returncode == code, err
        assert said in err and "Traceback" not in err
        assert not list(dataset.glob(".incomplete-*")) and not list(dataset.glob("v-*"))
        while _group_members(process.pid) and time.monotonic() < deadline:  # the server stops in 5 s
            time.sleep(0.1)
        assert _group_members(process.pid) == []  # no temporary server or worker outlives the run
    finally:
        if _group_members(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
