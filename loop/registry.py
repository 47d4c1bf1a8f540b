"""One registry for the four kinds of plug-in: generators, evaluators, controllers, signals.

A plug-in is one class in one file. It is found by

- a short name declared as a Python entry point in the group ``dropt.<kind>s`` (dropt's own
  built-ins are declared this way in its ``pyproject.toml``, exactly as a user's package declares
  its own: ``[project.entry-points."dropt.controllers"] my-es = "mypkg.es:MyES"``);
- a short name given to :func:`register` in code that has been imported (a script, a notebook,
  a test);
- or a dotted path ``"package.module:Class"``.

Every lookup checks that what it found is a subclass of the kind's base class before anything
calls it, so a config can never run an arbitrary callable. Entry points are loaded lazily: an
optional backend (Blender, say) is imported only when a config names it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, TypeVar

from .errors import ConfigError

KINDS = ("generator", "evaluator", "controller", "signal")
BASES = {"generator": "generator.base:Generator", "evaluator": "evaluator.base:Evaluator",
         "controller": "loop.controllers.base:Controller", "signal": "loop.signals.base:Signal"}
"""The base class a plug-in of each kind must subclass."""
CONFIG_KEYS = {"generator": "generator.name", "evaluator": "evaluator.task", "controller": "loop.optimizer",
               "signal": "signals"}
"""The config key that names a plug-in of each kind (used in error messages)."""

T = TypeVar("T", bound=type)
_registered: dict[str, dict[str, type]] = {k: {} for k in KINDS}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {list(KINDS)}, got {kind!r}")


def _import(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def base_class(kind: str) -> type:
    _check_kind(kind)
    return _import(BASES[kind])


def register(kind: str, name: str) -> Callable[[T], T]:
    """Class decorator: ``@register("controller", "my-es")`` makes ``my-es`` a lookup name.

    The class must subclass the kind's base class; a name already taken by another class is
    refused (entry points included), so two plug-ins can never shadow each other silently."""
    _check_kind(kind)
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"register: expected a short name without ':', got {name!r}")

    def decorate(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, base_class(kind))):
            raise TypeError(f"register({kind!r}, {name!r}): expected a subclass of {BASES[kind]}, got {cls!r}")
        taken = _registered[kind].get(name)
        if taken is not None and taken.__qualname__ != cls.__qualname__:
            raise ValueError(f"register({kind!r}, {name!r}): the name is taken by {taken.__module__}."
                             f"{taken.__qualname__}")
        if taken is None and name in _entry_points(kind) and _entry_points(kind)[name] != _path_of(cls):
            raise ValueError(f"register({kind!r}, {name!r}): the name is taken by the entry point "
                             f"{_entry_points(kind)[name]}")
        _registered[kind][name] = cls
        return cls

    return decorate


def _path_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _entry_points(kind: str) -> dict[str, str]:
    """``{name: "module:attr"}`` of the installed entry points of ``kind``."""
    return {ep.name: ep.value for ep in entry_points(group=f"dropt.{kind}s")}


def names(kind: str) -> list[str]:
    """Every short name of ``kind``: installed entry points and registered classes, sorted."""
    _check_kind(kind)
    return sorted(set(_entry_points(kind)) | set(_registered[kind]))


def lookup(kind: str, spec: str, *, key: str | None = None) -> type:
    """The class of ``kind`` named ``spec`` (a short name or ``package.module:Class``).

    Anything wrong is a :class:`loop.errors.ConfigError` naming ``key`` (default: the config key
    of the kind)."""
    _check_kind(kind)
    key = key or CONFIG_KEYS[kind]
    if not isinstance(spec, str):
        raise ConfigError(f"{key}: expected a name (a string), got {spec!r}")
    if spec in _registered[kind]:
        return _registered[kind][spec]
    path = _entry_points(kind).get(spec, spec)
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{key}: expected one of {names(kind)} or 'package.module:Class', got {spec!r}")
    try:
        cls = _import(path)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{key}: expected an importable {kind}, got {spec!r} ({e})") from None
    base = base_class(kind)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}: expected a subclass of {BASES[kind].replace(':', '.')}, got {spec!r} "
                         f"({type(cls).__name__} {getattr(cls, '__name__', '')})".rstrip())
    return cls


def all_classes(kind: str) -> dict[str, type]:
    """Every plug-in of ``kind`` by short name (imports each; the conformance suites use it)."""
    return {n: lookup(kind, n) for n in names(kind)}


__all__ = ["BASES", "KINDS", "all_classes", "base_class", "lookup", "names", "register"]
