"""Controllers of the closed loop: propose θ candidates, learn from their feedback.

Each controller is one class in one module, registered under its name by an entry point
(``dropt.controllers``, see :mod:`loop.registry`); a user's package adds its own the same way.
``make_controller(name, space, seed=..., **options)`` builds one by name or dotted path. Its
options are the config's ``[loop.options]``: plain keys go to whichever controller runs, and a
table named after a controller (``[loop.options.reinforce]``) only to that one, on top of the
plain keys, so one config can tune several controllers and still run with ``--optimizer X``.

The built-ins (``dropt plugins`` lists every registered one, with its signals):

==================== =================================================== =====================
name                 algorithm                                           signals
==================== =================================================== =====================
random               fixed wide domain randomization (the baseline)      score
reinforce            Gaussian policy, REINFORCE (Learning to Simulate)   score
metasim              score-function gap matching (Meta-Sim)              witness
metasim+task         gap matching, then REINFORCE on the task score      witness, score
vadra                adversarial: maximise the task model's loss         sample_loss
credit               per-image TracIn credit, score-function ascent      credit, score
adr                  automatic domain randomization (range growth)       score
attribute-descent    greedy coordinate search over attribute means       score
optuna               Optuna ask/tell: TPE, CMA-ES or GP                  score
surrogate            linear slope over recent rounds, guided ES          score
surrogate-metagrad   the same, guided by exact per-image metagradients   score, metagrad
==================== =================================================== =====================

Every registered controller passes :class:`loop.controllers.testing.ControllerConformance`.
"""

from __future__ import annotations

from typing import Any

from generator.space import ParameterSpace

from ..registry import lookup, names
from .base import Controller, Feedback, parse_options


def controller_class(name: str) -> type[Controller]:
    """The controller registered as ``name`` (or at the dotted path ``name``)."""
    return lookup("controller", name, key="optimizer")


def options_for(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options controller ``name`` gets: the plain keys, then its own table's keys over them;
    other controllers' tables are dropped. A table named after no controller is refused."""
    tables = {k: v for k, v in options.items() if isinstance(v, dict)}
    known = names("controller")
    for key in tables:
        if key not in known and key != name:
            raise ValueError(f"options.{key}: expected a controller's name for a table of its own options "
                             f"(one of {known}), got {key!r}")
    shared = {k: v for k, v in options.items() if k not in tables}
    return {**shared, **tables.get(name, {})}


def check_options(name: str, options: dict[str, Any]) -> None:
    """What :func:`make_controller` would refuse in ``name`` and ``options``, without building
    the controller (which may open files): the one-line error before Ray starts."""
    cls = controller_class(name)
    parse_options(cls.name, cls.Options, options_for(name, options)).check(cls.name)


def make_controller(name: str, space: ParameterSpace, *, seed: int, **options: Any) -> Controller:
    """The controller registered as ``name``, with :func:`options_for` ``name`` of ``options``;
    the options are validated by its constructor."""
    return controller_class(name)(space, seed=seed, **options_for(name, options))


__all__ = ["Controller", "Feedback", "check_options", "controller_class", "make_controller", "options_for"]
