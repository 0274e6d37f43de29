"""cli/run.py: ``expand run``, ``init``, ``preview``, ``train-gan`` and ``serve`` on small data,
in-process (no Prefect API is configured for them)."""

from pathlib import Path

import numpy as np
import torch

from cli.main import main
from conftest import TINY_GAN
from pipeline.build import build, load_config
from pipeline.core.progress import GAN, REFERENCE, SAMPLING, WRITING, reporting
from pipeline.gan.synthesis import REFERENCE_FILE
from pipeline.version.manifest import load_manifest


def test_cli_run_prints_version_dir_last(prefect_harness, tiny_folder, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        f"source:\n  kind: imagefolder\n  path: {tiny_folder}\noutput:\n  root: {tmp_path / 'cli-out'}\n"
    )
    assert main(["run", str(config), "--set", "augment.copies_per_image=1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    version_dir = lines[-1]
    assert load_manifest(version_dir).version_id in version_dir
    assert main(["run", str(config), "--set", "augment.copies_per_image=1"]) == 0
    again = capsys.readouterr().out.strip().splitlines()
    assert again[-1] == version_dir and "already published" in again[0]


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


def test_cli_a_device_this_machine_lacks_exits_2_before_ingest(prefect_harness, tiny_config, capsys):
    config = tiny_config()
    overrides = [f"source.path={config.source.path}", f"output.root={config.output.root}"]
    overrides += ["source.kind=imagefolder", "synthesis.enabled=true", "synthesis.device=mps"]
    code = main(["run", "/dev/null", *(a for o in overrides for a in ("--set", o))])
    err = capsys.readouterr().err
    assert code == 2 and "synthesis.device: mps is not available on this machine" in err
    assert "Traceback" not in err
    assert not list((config.output.root / config.dataset_name()).glob(".incomplete-*"))


def test_synthesis_on_images_over_256_pixels_stops_with_the_keys_to_change(prefect_harness, tmp_path, capsys):
    """No traceback: the size is known after ingest (or from source.resize, at load)."""
    from conftest import make_imagefolder

    folder = make_imagefolder(tmp_path / "big", {"cat": 3, "dog": 3}, size=(300, 272))
    args = ["run", "/dev/null", "--set", "source.kind=imagefolder", "--set", f"source.path={folder}"]
    args += ["--set", f"output.root={tmp_path / 'o'}", "--set", "synthesis.enabled=true"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        "the GAN trains at up to 256x256, and these images are 300x272: set synthesis.train.resolution" in err
    )
    assert "Traceback" not in err
    assert main([*args, "--set", "source.resize=[272, 300]"]) == 2
    assert "the GAN trains at up to 256x256, and source.resize is [272, 300]" in capsys.readouterr().err
    tiny = [item for key in TINY_GAN for item in ("--set", key)]
    assert main([*args, "--set", "source.resize=[16, 16]", *tiny]) == 0  # resized, it trains
    # At a set resolution it trains the photos' size down and samples back up to 300x272.
    at = ["--set", "synthesis.train.resolution=16", "--set", "synthesis.train.fit=pad", "--set", "name=at16"]
    assert main([*args, *tiny, *at]) == 0


def test_full_disk_fails_the_run_cleanly(prefect_harness, tiny_config, tmp_path, capsys, monkeypatch):
    import errno

    from pipeline.build import write as build_module
    from pipeline.version.catalog import list_versions

    calls = {"n": 0}

    def no_space(*args, **kwargs):
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
    manifest = load_manifest(out.strip().splitlines()[-1])
    [skipped] = manifest.source.skipped
    assert skipped.source_id == "cat/broken.png" and "cannot decode image" in skipped.reason
    assert manifest.source.images == good + 1  # the .jfif is read


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
    manifest = load_manifest(version)
    assert manifest.synthesis.checkpoint_step in {2, 4}  # the best by FD, not the last
    assert manifest.splits["train"].by_origin["synthetic"] == 9
    stages.clear()  # resumed training, in a fresh staging folder, finds the classifier too
    more = ["--resume", str(tmp_path / "ckpt" / "last.pt"), "--set", "synthesis.train.steps=6"]
    with reporting(lambda stage, *_: stages.add(stage)):
        assert main(["train-gan", "/dev/null", *common, "--out", str(tmp_path / "more"), *more]) == 0
    assert GAN in stages and REFERENCE not in stages
    assert torch.load(tmp_path / "more" / "last.pt", weights_only=True)["step"] == 6


def test_cli_train_gan_on_two_processes_launched_or_under_torchrun(
    prefect_harness, tiny_config, tmp_path, capsys
):
    """synthesis.train.processes 2: ``expand train-gan`` launches torchrun itself; the same
    command started by torchrun trains as its ranks. Both give the same training."""
    import os
    import subprocess
    import sys

    source = tiny_config().source.path
    settings = (*TINY_GAN, "synthesis.gate.enabled=false", "synthesis.train.processes=2")
    common = ["--set", "source.kind=imagefolder", "--set", f"source.path={source}"]
    common += ["--set", f"output.root={tmp_path / 'o'}"] + [a for s in settings for a in ("--set", s)]
    assert main(["train-gan", "/dev/null", *common, "--out", str(tmp_path / "launched")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "launched" / "best.pt")
    launched = torch.load(tmp_path / "launched" / "last.pt", weights_only=True)
    assert launched["step"] == 4
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command += [f"--log-dir={tmp_path / 'torchrun-logs'}"]  # not the system's temp folder
    command += ["-m", "cli.main", "train-gan", "/dev/null", *common, "--out", str(tmp_path / "ranks")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=os.environ)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(tmp_path / "ranks" / "best.pt")  # rank 0 alone
    ranks = torch.load(tmp_path / "ranks" / "last.pt", weights_only=True)
    assert ranks["step"] == 4 and ranks["best"] == launched["best"]
    assert all(torch.equal(ranks["G"][k], v) for k, v in launched["G"].items())


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
    manifest = load_manifest(version)
    assert manifest.image.height == 10 and manifest.image.width == 12
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
    made = load_manifest(version).splits["train"].by_origin["augmented"]
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


def test_serve_needs_a_schedule_of_at_least_a_second(capsys):
    assert main(["serve", "/dev/null"]) == 2
    assert "needs a schedule: --cron or --interval" in capsys.readouterr().err
    assert main(["serve", "/dev/null", "--interval", "0"]) == 2
    assert "--interval must be at least 1 second, got 0" in capsys.readouterr().err
