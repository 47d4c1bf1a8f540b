"""Controllers of the closed loop: propose θ candidates, learn from their feedback.

``make_controller(name, space, seed=..., **options)`` builds one by its registry name:

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
==================== =================================================== =====================

Every controller passes :class:`loop.controllers.testing.ControllerConformance`.
"""

from __future__ import annotations

from typing import Any

from generator.space import ParameterSpace

from .adr import ADR
from .attribute_descent import AttributeDescent
from .base import Controller, Feedback
from .credit import CreditAscent
from .metasim import MetaSim, MetaSimTask
from .optuna_search import OptunaController
from .random_dr import RandomDR
from .reinforce import Reinforce
from .vadra import VADRA

CONTROLLERS: dict[str, type[Controller]] = {
    c.name: c for c in (RandomDR, Reinforce, MetaSim, MetaSimTask, VADRA, CreditAscent, ADR, AttributeDescent,
                        OptunaController)
}


def make_controller(name: str, space: ParameterSpace, *, seed: int, **options: Any) -> Controller:
    """The controller registered as ``name``; options are validated by its constructor."""
    if name not in CONTROLLERS:
        raise ValueError(f"optimizer: expected one of {list(CONTROLLERS)}, got {name!r}")
    return CONTROLLERS[name](space, seed=seed, **options)


__all__ = [
    "ADR", "CONTROLLERS", "CreditAscent", "AttributeDescent", "Controller", "Feedback", "MetaSim", "MetaSimTask",
    "OptunaController", "RandomDR", "Reinforce", "VADRA", "make_controller",
]
