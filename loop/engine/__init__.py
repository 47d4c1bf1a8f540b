"""The engine: one evaluation path for every front door (see :mod:`loop.engine.core`)."""

from .core import Engine, round_seeds
from .evaluators import build_evaluator, check_evaluator, evaluator_class, fidelity
from .executor import Executor
from .jobs import CandidateJob, CandidateResult, evaluate_job, evaluate_or_fail
from .real import FEW_VAL_IMAGES, check_real, load_real

__all__ = ["FEW_VAL_IMAGES", "CandidateJob", "CandidateResult", "Engine", "Executor", "build_evaluator",
           "check_evaluator", "check_real", "evaluate_job", "evaluate_or_fail", "evaluator_class",
           "fidelity", "load_real", "round_seeds"]
