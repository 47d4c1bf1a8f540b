"""What several commands share: the parser class, argument types and common options."""

from __future__ import annotations

import argparse
import sys

from ...errors import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit status 2."""

    def error(self, message: str):  # noqa: D401
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def int_at_least(lo: int):
    """An argparse type: an integer >= lo, with an "expected X, got Y" message."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return v

    return parse


positive_int, non_negative_int = int_at_least(1), int_at_least(0)


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment TOML, e.g. experiments/shapes/default.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help='override a config key, e.g. --set generator.image_size=128 (repeatable)')


def add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help="join this Ray cluster instead of starting a local Ray")


def add_workers(p: argparse.ArgumentParser, default: str = "the config's render.workers; 0 = in-process") -> None:
    p.add_argument("--workers", type=non_negative_int, default=None, help=f"Ray render actors (default: {default})")


def add_json(p: argparse.ArgumentParser, instead_of: str = "lines") -> None:
    p.add_argument("--json", action="store_true", help=f"print one JSON object instead of {instead_of}")


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (refused otherwise)")
