"""The ``expand`` command line: the parser, error handling and exit codes.

Exit codes: 0 success, 1 the run failed (unreadable data, I/O, a version that does not
verify), 2 bad usage or config, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). The
commands live by concern: :mod:`cli.run` (run, init, preview, train-gan, serve),
:mod:`cli.evaluate` and :mod:`cli.catalog` (versions, show, diff, tag, gc, verify,
lineage, push). Arguments several commands share are declared once in :mod:`cli.options`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading

from cli import catalog, evaluate, run
from cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, Terminated
from cli.reaper import start_reaper
from pipeline.core.errors import ConfigError, PipelineError

_MODULES = (run, catalog, evaluate)


class _UsageParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits with 2 too; keep its message short
        self.print_usage(sys.stderr)
        print(f"expand: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _UsageParser(prog="expand", description="Offline dataset expansion.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_UsageParser)
    for module in _MODULES:
        module.add_commands(commands)
    return parser


def entry() -> int:
    """The ``expand`` program: :func:`main`, with a watchdog that stops every process the
    command started if it is killed (:mod:`cli.reaper`)."""
    start_reaper()
    return main()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":  # Prefect's runner handles its own signals
            return _dispatch(args)
        with _sigterm_raises():
            return _dispatch(args)
    except BrokenPipeError:  # e.g. `expand diff A B | head`: the reader left, not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    handler = next(m.COMMANDS[args.command] for m in _MODULES if args.command in m.COMMANDS)
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"expand: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        _stop_workers()
        print(f"expand: {args.command} interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        _stop_workers()
        print(f"expand: {args.command} terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except (PipelineError, OSError) as exc:  # OSError: a full disk, a lost mount, permissions
        print(f"expand: {args.command} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _stop_workers() -> None:
    """Terminate worker processes still busy (they ignore Ctrl-C), rather than wait at exit
    for the calls they hold."""
    from pipeline.core.workers import stop_workers

    stop_workers()


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises :class:`Terminated` while the command runs (main thread only).

    During a flow run Prefect's own handler turns SIGTERM into its ``TerminationSignal``,
    records the crash, and sends the signal again to the handler it replaced: this one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(entry())
