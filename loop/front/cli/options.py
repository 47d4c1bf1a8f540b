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

    def print_help(self, file=None) -> None:
        """argparse's, without its silencing of write errors: a --help into a full stdout is
        reported by the CLI's main, like any command's output."""
        (file or sys.stdout).write(self.format_help())


def _refuse(what: str, text: str) -> argparse.ArgumentTypeError:
    from generator.space import short_repr

    return argparse.ArgumentTypeError(f"expected {what}, got {short_repr(text)}")


def int_in(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi] (no upper bound when hi is None), with an
    "expected X, got Y" message."""
    what = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise _refuse(what, text) from None
        if v < lo or (hi is not None and v > hi):
            raise _refuse(what, text)
        return v

    return parse


positive_int, non_negative_int = int_in(1), int_in(0)
#: a training seed goes to torch.manual_seed, which takes up to 2**64 - 1
training_seed = int_in(0, 2**64 - 1)
#: the real set's split seed goes to scikit-learn's random_state, which takes up to 2**32 - 1
split_seed = int_in(0, 2**32 - 1)
#: torch threads: far more than any machine's cores, and fewer than the threads it cannot create
threads = int_in(1, 1024)
#: images in one grid (preview, report): 32 × 32 cells already take ~40 s and 1 GB to draw
grid_images = int_in(1, 1024)


def text(what: str):
    """An argparse type: a non-empty string without NUL bytes (a path, a name, an address);
    "" would silently mean the current folder or the config's default."""
    def parse(value: str) -> str:
        if not value or "\0" in value:
            raise _refuse(what, value)
        return value

    return parse


path = text("a path")


def int_list(lo: int, *, empty: bool = False):
    """An argparse type: comma-separated distinct integers >= lo, as a tuple (``empty``: "" is ())."""
    what = f"comma-separated distinct integers >= {lo}" + (" (or '' for none)" if empty else "")

    def parse(value: str) -> tuple[int, ...]:
        items = [x.strip() for x in value.split(",")] if value.strip() else []
        try:
            ints = tuple(int(x) for x in items)
        except ValueError:
            raise _refuse(what, value) from None
        if (not ints and not empty) or any(v < lo for v in ints) or len(set(ints)) != len(ints):
            raise _refuse(what, value)
        return ints

    return parse


def name_list(value: str) -> tuple[str, ...]:
    """An argparse type: comma-separated distinct names, at least one, as a tuple."""
    names = tuple(x.strip() for x in value.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise _refuse("comma-separated distinct names", value)
    return names


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=path, help="experiment TOML, e.g. experiments/shapes/default.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help='override a config key, e.g. --set generator.image_size=128 (repeatable)')


def add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", type=text("a Ray address (host:port, auto or ray://…)"), default=None,
                   help="join this Ray cluster instead of starting a local Ray")


def add_workers(p: argparse.ArgumentParser, default: str = "the config's render.workers; 0 = in-process") -> None:
    p.add_argument("--workers", type=non_negative_int, default=None, help=f"Ray render actors (default: {default})")


def add_json(p: argparse.ArgumentParser, instead_of: str = "lines") -> None:
    p.add_argument("--json", action="store_true", help=f"print one JSON object instead of {instead_of}")


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (refused otherwise)")


