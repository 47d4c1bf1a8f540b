"""Signals: what a controller needs computed for each candidate, one class per file.

The built-ins (``score``, ``credit``, ``witness``, ``sample_loss``) are registered by entry
points in dropt's ``pyproject.toml``, as a user's package registers its own; see
:mod:`loop.signals.base` for the interface and ``docs/howto/signal.md`` for a new one.
"""

from .base import Signal, signal_classes

__all__ = ["Signal", "signal_classes"]
