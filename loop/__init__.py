"""loop: the engine, the runner, controllers and signals, and the front doors (CLI, env, Tune).

The layout, each folder importing only downward::

    front/      the CLI (one module per command), the gymnasium env, the Ray Tune glue
    bench/      benchmarks that print figures (render, evaluator, loop)
    run/        the runner: open or restore a run, rounds, the final selection, the run directory
    engine/     one evaluation path: render (Ray actors), evaluate (Ray tasks), signals
    controllers/, signals/    the plug-ins the runner composes
    config, schema, registry, errors, target, report, preview

The Python API in one import: ``from loop import load_config, run_loop, register``.
Importing ``loop`` registers ``gymnasium.make("dropt/DomainRandomization-v0", config=PATH)``
(the env module itself is imported only when the env is made)."""

import importlib

_API = {"load_config": "loop.config", "run_loop": "loop.run.runner", "register": "loop.registry",
        "lookup": "loop.registry", "Engine": "loop.engine", "DomainRandomizationEnv": "loop.front.env"}


def __getattr__(name: str):
    """The API names, imported on first use (``import loop`` stays light)."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'loop' has no attribute {name!r}")


def _register_env() -> None:
    try:
        import gymnasium
    except ImportError:  # pragma: no cover - gymnasium is a dependency
        return
    if "dropt/DomainRandomization-v0" not in gymnasium.registry:
        gymnasium.register(id="dropt/DomainRandomization-v0", entry_point="loop.front.env:DomainRandomizationEnv")


_register_env()

__all__ = sorted(_API)
