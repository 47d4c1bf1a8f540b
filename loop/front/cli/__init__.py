"""The `dropt` command line: one module per command, each with its ``add(sub)`` parser and its
``COMMANDS``; shared options in :mod:`.options`. Usage errors exit with status 2, runtime
failures with status 1, each as one line (never a traceback)."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from contextlib import contextmanager

from ...errors import EXIT_FAILURE, EXIT_USAGE, DroptError
from . import bench, eval, info, make_target, preview, render, run, runs, tune
from .options import Parser

MODULES = (render, preview, run, tune, runs, make_target, eval, info, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dropt", description="Closed-loop learned domain randomization.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in MODULES:
        module.add(sub)
    return parser


def _command(name: str):
    return next(m.COMMANDS[name] for m in MODULES if name in m.COMMANDS)


#: what a shell shows for a command killed by SIGPIPE (128 + 13), as `cat` or `grep` into `head`
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
#: a disk or quota that filled: the run cannot go on (exit 1), the path was fine
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _label(args: argparse.Namespace) -> str:
    """The command as its error lines name it: "dropt run", "dropt bench loop"."""
    return " ".join(["dropt", args.command] + ([args.bench] if getattr(args, "bench", None) else []))


def _run(args: argparse.Namespace) -> int:
    from evaluator.base import EvaluatorError
    from generator.base import RenderError
    from generator.dataset import DatasetError
    from generator.space import SpaceError

    command = _label(args)
    try:
        return _command(args.command)(args)
    except DroptError as e:         # usage errors exit 2, runtime failures 1; one line each
        print(f"{command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except (SpaceError, DatasetError, EvaluatorError) as e:
        print(f"{command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RenderError as e:        # the renderer cannot run here: a runtime failure
        print(f"{command}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        raise                       # stdout's reader went away: main's to handle
    except OSError as e:
        if e.filename is None:      # a write with no file named (stdout, a full disk): main's to handle
            raise
        print(f"{command}: error: {e.filename} {e.strerror or e}", file=sys.stderr)  # a user's path
        return EXIT_FAILURE if e.errno in DISK_FULL else EXIT_USAGE
    except ValueError as e:
        if "embedded null byte" not in str(e):     # os and open() refuse a NUL byte in a path
            raise
        print(f"{command}: error: a path: expected no NUL byte, got one", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as e:
        print(f"{command}: error: out of memory ({str(e) or 'an allocation failed'})", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as e:     # Ctrl-C, or SIGTERM / SIGHUP (see _stop_on_signals)
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"{command}: interrupted" + ("" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"),
              file=sys.stderr)
        return 128 + signum


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the command is, so its clean-up runs as for Ctrl-C (a
    writer's hidden folder removed, the run directory's lock released)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signum)


@contextmanager
def _stop_on_signals():
    """SIGTERM and SIGHUP stop the command as Ctrl-C does, for the length of one command (the
    handlers before it are put back: `main` also runs inside tests and other programs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def _stdout_discarded() -> None:
    """Point stdout at /dev/null, so that the interpreter's own flush at exit neither fails again
    nor prints "Exception ignored … BrokenPipeError" (Python's documented recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):   # no real stdout (a test's capture): nothing will flush it at exit
        pass


class StdoutFailed(OSError):
    """Writing stdout failed (other than EPIPE): a full disk, /dev/full, an I/O error."""


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise StdoutFailed(e.errno, e.strerror) from None


def main(argv: list[str] | None = None) -> int:
    """Run one command. Whatever writing stdout meets is handled here, once for every command:
    a reader that went away (``dropt plugins | head -1``, EPIPE) ends it quietly with status 141,
    as a tool killed by SIGPIPE does; a full stdout (``> /dev/full``) or disk is one line, exit 1.
    A command's own files are written before its last print, so neither loses them."""
    command = "dropt"
    try:
        try:
            args = build_parser().parse_args(argv)       # --help and usage errors exit here
            command = _label(args)
            with _stop_on_signals():
                return _run(args)
        finally:
            _flush_stdout()                              # now, not at exit: its failure is caught below
    except BrokenPipeError:
        _stdout_discarded()
        return EXIT_BROKEN_PIPE
    except StdoutFailed as e:
        _stdout_discarded()
        print(f"{command}: error: stdout: {e.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as e:           # a write with no file named: a full disk, or stdout unbuffered or overflowing
        print(f"{command}: error: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILURE if e.errno in DISK_FULL else EXIT_USAGE


__all__ = ["build_parser", "main"]
