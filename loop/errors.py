"""One error hierarchy for every front door.

:class:`UsageError` (the config, a flag, a path, a dataset the user gave) exits with status 2,
:class:`RunFailure` (the run cannot go on: every candidate of a round failed, a disk filled)
with status 1; the CLI prints either as one line, never a traceback.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_FAILURE = 1


class DroptError(Exception):
    """Any error dropt reports as one line."""

    exit_code = EXIT_FAILURE


class UsageError(DroptError, ValueError):
    """Bad input from the user; the message is one line that names the key, flag or path."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A bad config file, override or flag. The message is one line that names the key."""


class RunFailure(DroptError, RuntimeError):
    """The run cannot go on; the message says what failed and what was kept."""

    exit_code = EXIT_FAILURE


__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "ConfigError", "DroptError", "RunFailure", "UsageError"]
