"""The `dropt` command line: one module per command, each with its ``add(sub)`` parser and its
``COMMANDS``; shared options in :mod:`.options`. Usage errors exit with status 2, runtime
failures with status 1, each as one line (never a traceback)."""

from __future__ import annotations

import argparse
import sys

from ...errors import EXIT_USAGE, DroptError
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from evaluator.base import EvaluatorError
    from generator.dataset import DatasetError
    from generator.space import SpaceError

    try:
        return _command(args.command)(args)
    except DroptError as e:         # usage errors exit 2, runtime failures 1; one line each
        print(f"dropt {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except (SpaceError, DatasetError, EvaluatorError) as e:
        print(f"dropt {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:   # a path the user gave that cannot be read or written
        where = f" {e.filename}" if e.filename else ""
        print(f"dropt {args.command}: error:{where} {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"dropt {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["build_parser", "main"]
