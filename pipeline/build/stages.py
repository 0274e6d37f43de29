"""The stages of a build, written once, in order, as data: :data:`STAGES`.

After :func:`pipeline.build.context.prepare` (ingest, version id, staging) a build runs
each stage that applies to its config; a stage takes the :class:`BuildContext` and returns
it with what it added. :func:`pipeline.build.runner.run_stages` runs the list, in this
process (:func:`pipeline.build.runner.build`) or as Prefect tasks (``flows.expand``): the
order, error handling, staging clean-up and progress are the runner's, once.

    tune-augmentation -> train-gan -> synthesize -> plan -> write-shard (one per shard)
    -> publish -> upload

A published version that already exists runs only the stages marked ``existing``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.augment.counts import allocate_copies
from pipeline.augment.recipe import check_augment
from pipeline.build.context import BuildContext, release_arrow_memory
from pipeline.build.plan import build_plan
from pipeline.build.publish import publish, upload
from pipeline.build.torchrun import launch_train_gan
from pipeline.build.write import rows_per_shard, write_shard
from pipeline.config import Config, GanTrainConfig, read_config
from pipeline.core.errors import ConfigError
from pipeline.gan.stage import read_synthetic, synthesize_stage, train_gan_stage, write_history
from pipeline.ingest.store import INDEX_FILE, load_index
from pipeline.version.pictures import TUNE_FILE, tune_chart

if TYPE_CHECKING:  # torch is imported by the stages that use it
    from pipeline.gan.filtering import Spread

Log = Callable[[str], None]


def quiet(message: str) -> None:
    """A log that drops its lines."""


def _always(config: Config) -> bool:
    return True


@dataclass(frozen=True)
class Stage:
    """One step of a build.

    Attributes:
        name: the step's name (a Prefect task's name).
        run: ``(context, log) -> context``; ``log`` takes one line for the run's log.
        applies: whether a build with this config runs the stage.
        per_shard: ``run`` is ``(context, shard) -> shard entry``, called once per planned
            shard (on worker processes, or one Prefect task per shard); the entries land in
            ``context.entries`` in shard order.
        spread: ``run`` also takes a :data:`pipeline.gan.filtering.Spread`, to hand
            chunks of its work to the executor's workers (a cluster); without one it does
            the work itself.
        retried: I/O: an orchestrator may retry a failed attempt.
        existing: also runs when the version is already published.
        makes: what the stage adds to the context or the version (for readers and logs).
    """

    name: str
    run: Callable[..., Any]
    makes: str = ""
    applies: Callable[[Config], bool] = _always
    per_shard: bool = False
    spread: bool = False
    retried: bool = False
    existing: bool = False


def tune(context: BuildContext, log: Log = quiet) -> BuildContext:
    """Choose the augmentation on validation data (``augment.tune``, see
    :mod:`pipeline.augment.tune`); the rest of the build uses the winner, and the manifest,
    the card and ``tune.png`` say what was tried."""
    from pipeline.augment.tune import tune_augmentation  # imports torch: only builds that tune pay for it

    augment, summary = tune_augmentation(
        context.config, context.work_dir, context.shape, context.class_names, context.workers
    )
    tune_chart(summary, context.version_dir / TUNE_FILE)
    log(f"augment.tune: {summary['reason']}")
    config = context.config.model_copy(update={"augment": augment})
    return replace(context, config=config, details={**context.details, "tune": summary})


def train_gan(context: BuildContext, log: Log = quiet) -> BuildContext:
    """Train the GAN on the staged training split (see :func:`pipeline.gan.stage.train_gan_stage`)."""
    settings = context.config.synthesis.train
    if settings.processes > 1:  # torchrun's processes stage the same split themselves
        summary = launch_train_gan(context.config, context.work_dir / "gan")
        write_history(context.work_dir, summary["history"])
    else:
        summary = train_gan_stage(
            context.config,
            context.work_dir,
            context.shape,
            len(context.class_names),
            on_metrics=lambda metrics: log(gan_progress_line(metrics, settings)),
        )
    return replace(context, checkpoint=str(summary["checkpoint"]))


def gan_progress_line(metrics: dict[str, float], settings: GanTrainConfig) -> str:
    """One line of GAN training progress: losses, images/s and the time left (or the
    classifier FD of an evaluation step)."""
    if "fd" in metrics:
        return f"GAN step {metrics['step']}: classifier FD {metrics['fd']:.3f}"
    steps_per_s = metrics["img_per_s"] / settings.batch_size
    left = (settings.steps - metrics["step"]) / max(steps_per_s, 1e-9)
    memory = f", peak memory {metrics['peak_mem_gib']:.2f} GiB" if "peak_mem_gib" in metrics else ""
    return (
        f"GAN step {metrics['step']}/{settings.steps}: d_loss {metrics['d_loss']:.3f} "
        f"g_loss {metrics['g_loss']:.3f}, {metrics['img_per_s']:.0f} img/s{memory}, about {left:.0f} s left"
    )


def synthesize(context: BuildContext, log: Log = quiet, spread: Spread | None = None) -> BuildContext:
    """Sample, filter and gate synthetic rows into staging (see
    :func:`pipeline.gan.stage.synthesize_stage`), from the trained or the given generator;
    the candidates are made through ``spread`` when the executor gives one (a cluster)."""
    config = context.config
    checkpoint = Path(context.checkpoint or config.synthesis.checkpoint)
    report = synthesize_stage(
        config,
        context.work_dir,
        context.version_dir,
        context.shape,
        context.class_names,
        checkpoint,
        spread,
    )
    if report.get("gate"):
        log(f"utility gate: {report['gate']['reason']}")
    return replace(context, synthesis=report)


def plan(context: BuildContext, log: Log = quiet) -> BuildContext:
    """Allocate augmented copies, add synthetic rows if any, and cut the splits into shards."""
    config = context.config
    index = load_index(context.work_dir / INDEX_FILE)
    copies, shortfall = allocate_copies(index, config.augment, config.seed, context.class_names)
    synthetic = read_synthetic(context.work_dir) if context.synthesis else None
    total_rows = (
        len(index.source_ids) + int(copies.sum()) + (synthetic.num_rows if synthetic is not None else 0)
    )
    per_shard = rows_per_shard(config, context, total_rows)
    shards = build_plan(
        index, copies, config.seed, per_shard, context.work_dir, synthetic, config.augment.mix
    )
    details = dict(context.details)
    details["augment"] = {
        "rows_per_shard": per_shard,
        "planned_copies": int(copies.sum()),
        "shortfall": {context.class_names[k]: v for k, v in shortfall.items()},
    }
    release_arrow_memory()
    log(f"building {context.version_id}: {len(shards)} shards")
    return replace(context, shards=shards, details=details)


def _publish(context: BuildContext, log: Log = quiet) -> BuildContext:
    publish(context)
    return context


def _upload(context: BuildContext, log: Log = quiet) -> BuildContext:
    upload(context)
    log(f"uploaded {context.version_id} to {context.config.output.remote}")
    return context


STAGES: tuple[Stage, ...] = (
    Stage(
        "tune-augmentation",
        tune,
        "config.augment (the winner), details.tune, tune.png",
        applies=lambda c: c.augment.tune.enabled,
    ),
    Stage(
        "train-gan",
        train_gan,
        "checkpoint (work/gan/best.pt)",
        applies=lambda c: c.synthesis.enabled and not c.synthesis.checkpoint,
    ),
    Stage(
        "synthesize",
        synthesize,
        "synthesis (the report), the kept rows in work/, the generator and samples.png",
        applies=lambda c: c.synthesis.enabled,
        spread=True,
    ),
    Stage("plan", plan, "shards, details.augment"),
    Stage("write-shard", write_shard, "entries (one per shard)", per_shard=True, retried=True),
    Stage("publish", _publish, "the version at final_dir, latest", retried=True, existing=True),
    Stage(
        "upload",
        _upload,
        "the version at output.remote",
        applies=lambda c: bool(c.output.remote),
        retried=True,
        existing=True,
    ),
)

_BY_NAME = {s.name: s for s in STAGES}


def stage_named(name: str) -> Stage:
    """The stage called ``name`` (for runners that pass stages by name, e.g. to other processes)."""
    return _BY_NAME[name]


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a config for a run: the YAML tree (:func:`pipeline.config.read_config`), then
    each stage's own checks (the augmentation recipes build).

    Raises:
        ConfigError: the message names the file and the dotted key.
    """
    config = read_config(path, overrides)
    try:
        check_augment(config.augment)
    except ValueError as exc:
        where = str(path) if path is not None else "<defaults>"
        raise ConfigError(f"invalid config {where}:\n  augment: {exc}") from None
    return config
