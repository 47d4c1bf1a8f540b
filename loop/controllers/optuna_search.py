"""θ as an Optuna search space, driven through ask/tell.

Every θ entry is a ``FloatDistribution`` over its hard bounds, named as in
``space.theta_names()``. ``sampler`` picks TPE (multivariate), CMA-ES (needs the optional
``cmaes`` package) or Optuna's GP sampler (torch and scipy); the first trial is the space's
default θ (``start_from_default``), so the search starts from the hand-tuned distribution.

Determinism: a sampler's RNG advances with every ``ask``, and that state cannot be written to
JSON. So each ``propose`` builds a fresh sampler seeded from the controller's own numpy RNG;
the samplers keep no other state between calls (TPE and GP refit from the trials, CMA-ES keeps
its state in the trials' system attributes), so a controller that restores the RNG and the
trials proposes exactly what the original would.

State: with ``storage = None`` (in-memory), ``state_dict`` lists every finished or queued
trial (params, value, state) and ``load_state_dict`` rebuilds the study with ``add_trial`` /
``enqueue_trial``. Asked-but-untold trials are not kept: the runner checkpoints after
``update``; an ``update`` for a θ this controller does not know adds it as a finished trial.
With ``storage = "path/to/journal.log"`` the study lives in an Optuna
``JournalStorage(JournalFileBackend(path))`` that several processes (or controllers) share
under one ``study_name``; the journal *is* the trial history, so ``state_dict`` holds only the
RNG and the trials this instance has in flight.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any, ClassVar, Literal, Optional

import numpy as np
from pydantic import Field

from generator.space import ParameterSpace

from ._common import match_pending
from .base import Controller, Feedback, Options, number

SAMPLERS = ("tpe", "cmaes", "gp")
_SAMPLER_NEEDS = {"tpe": (), "cmaes": ("cmaes",), "gp": ("torch", "scipy")}


class OptunaOptions(Options):
    sampler: Literal["tpe", "cmaes", "gp"] = "tpe"
    """"tpe", "cmaes" or "gp"."""
    storage: Optional[str] = Field(None, min_length=1)
    """None: an in-memory study; a file path: a JournalStorage file shared across processes."""
    study_name: str = Field("dropt", min_length=1)
    """The study's name inside a shared storage."""
    n_startup_trials: int = Field(8, ge=0)
    """Random trials before the model-based sampler takes over."""
    start_from_default: bool = True
    """Enqueue the space's default θ as the first trial of a new study."""
    sigma0: Optional[float] = number(None, gt=0, le=1)
    """CMA-ES only: the initial step, as a fraction of each θ entry's box (None: Optuna's 1/6).
    A small step searches around the config's θ and widens only as the scores carry it."""

    def check(self, name: str) -> None:
        if self.sigma0 is not None and self.sampler != "cmaes":
            raise ValueError(f"{name}.sigma0: expected only with sampler 'cmaes', got sampler {self.sampler!r}")
        missing = [m for m in _SAMPLER_NEEDS[self.sampler] if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(f"{name}.sampler: {self.sampler!r} needs the optional package(s) {missing}, "
                             f"which are not installed (pip install {' '.join(missing)})")


class OptunaController(Controller):
    """Ask/tell over θ with an Optuna sampler; several processes may share one journal study."""

    name: ClassVar[str] = "optuna"
    signals: ClassVar[frozenset[str]] = frozenset({"score"})
    Options: ClassVar[type] = OptunaOptions

    def __init__(self, space: ParameterSpace, *, seed: int, **options):
        super().__init__(space, seed=seed, **options)
        import optuna  # the backend is imported only when this controller is used
        from optuna.distributions import FloatDistribution

        self._optuna = optuna
        self.names = space.theta_names()
        self.dists = {n: FloatDistribution(float(a), float(b)) for n, a, b in zip(self.names, self.lo, self.hi)}
        self.default = space.clip(space.to_vector())
        self.study = self._new_study()
        if self.options.start_from_default and not self.study.trials:
            self.study.enqueue_trial(self._params(self.default))
        self.pending: list[tuple[np.ndarray, int]] = []     # (θ, trial number) asked, not told

    def _params(self, theta: np.ndarray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, theta)}

    def _new_study(self):
        storage = None
        if self.options.storage is not None:
            journal = self._optuna.storages.journal
            storage = journal.JournalStorage(journal.JournalFileBackend(self.options.storage))
        return self._optuna.create_study(storage=storage, study_name=self.options.study_name,
                                         direction="maximize", load_if_exists=True)

    def _sampler(self, seed: int):
        s, o = self._optuna.samplers, self.options
        if o.sampler == "tpe":
            return s.TPESampler(seed=seed, n_startup_trials=o.n_startup_trials, multivariate=True)
        if o.sampler == "cmaes":
            import warnings

            with warnings.catch_warnings():   # x0 and sigma0 are deprecated (Optuna 4.9) but still the way in
                warnings.simplefilter("ignore", FutureWarning)
                return s.CmaEsSampler(seed=seed, n_startup_trials=o.n_startup_trials, x0=self._params(self.default),
                                      sigma0=o.sigma0)
        return s.GPSampler(seed=seed, n_startup_trials=o.n_startup_trials)

    # ---- propose: ask k trials from a freshly seeded sampler ---------------------------------
    def _propose(self, k: int) -> list[np.ndarray]:
        self.study.sampler = self._sampler(int(self.rng.integers(2**31 - 1)))
        out = []
        for _ in range(k):
            trial = self.study.ask(self.dists)
            theta = np.array([trial.params[n] for n in self.names], dtype=np.float64)
            self.pending.append((theta, trial.number))
            out.append(theta)
        return out

    # ---- update: tell each trial its score (NaN → a failed trial) ----------------------------
    def _update(self, thetas: list[np.ndarray], feedback: list[Feedback]) -> None:
        TrialState = self._optuna.trial.TrialState
        for theta, fb in zip(thetas, feedback):
            ok = math.isfinite(float(fb.score))
            number = match_pending(self.pending, theta)
            if number is None:      # a θ from elsewhere (e.g. a warm start): record it as a finished trial
                self.study.add_trial(self._optuna.trial.create_trial(
                    params=self._params(theta), distributions=self.dists,
                    value=float(fb.score) if ok else None, state=TrialState.COMPLETE if ok else TrialState.FAIL))
            elif ok:
                self.study.tell(number, float(fb.score))
            else:
                self.study.tell(number, state=TrialState.FAIL)

    def _current(self) -> np.ndarray:
        done = [t for t in self.study.trials if t.value is not None]
        if not done:
            return self.default
        best = max(done, key=lambda t: t.value)
        return np.array([best.params[n] for n in self.names], dtype=np.float64)

    def _state(self) -> dict[str, Any]:
        pending = [[t.tolist(), n] for t, n in self.pending]
        if self.options.storage is not None:
            return {"trials": None, "pending": pending}
        keep = {"COMPLETE", "FAIL", "WAITING"}
        # system attrs carry sampler state (CMA-ES keeps its pickled optimizer there): JSON strings
        trials = [{"params": t.params, "value": t.value, "state": t.state.name,
                   "system_attrs": {k: v for k, v in t.system_attrs.items() if _json_safe(v)}}
                  for t in self.study.trials if t.state.name in keep]
        return {"trials": trials, "pending": []}

    def _load_state(self, d: dict[str, Any]) -> None:
        self.pending = [(np.asarray(t, dtype=np.float64), int(n)) for t, n in d["pending"]]
        if d["trials"] is None:                 # the journal holds the history
            self.study = self._new_study()
            return
        TrialState = self._optuna.trial.TrialState
        self.study = self._new_study()
        for t in d["trials"]:
            check_sampler_pickle(t.get("system_attrs", {}))
            if t["state"] == "WAITING":
                self.study.enqueue_trial(t["params"])
            else:
                self.study.add_trial(self._optuna.trial.create_trial(
                    params=t["params"], distributions=self.dists, value=t["value"], state=TrialState[t["state"]],
                    system_attrs=t.get("system_attrs", {})))


#: what Optuna's CmaEsSampler pickles (a cmaes optimizer of numpy arrays) may name, and no more
_PICKLE_ALLOWED = {"numpy": {"ndarray", "dtype"}, "numpy._core.multiarray": {"_reconstruct", "scalar"},
                   "numpy.core.multiarray": {"_reconstruct", "scalar"}, "numpy.random._pickle": None,
                   "numpy.random.mtrand": {"RandomState"}, "numpy.random._mt19937": {"MT19937"},
                   "cmaes._cma": None, "cmaes._sepcma": None, "cmaes._cmawm": None, "cmaes": None}


def check_sampler_pickle(system_attrs: dict[str, Any]) -> None:
    """Optuna's CmaEsSampler keeps its optimizer as a hex pickle in a trial's system attrs and
    unpickles it on the next ask. A checkpoint is a file on disk: before Optuna sees it, load it
    once with an unpickler that can only build cmaes and numpy objects, so a tampered checkpoint
    cannot run code. Raises ValueError naming what it refused."""
    import io
    import pickle

    parts = {k: v for k, v in system_attrs.items() if ":optimizer:" in k}
    if not parts:
        return
    try:
        text = "".join(parts[k] for k in sorted(parts, key=lambda k: int(k.rsplit(":", 1)[1])))
        blob = bytes.fromhex(text)
    except (ValueError, TypeError):
        raise ValueError("system_attrs: expected the CMA-ES optimizer as hex, got something else") from None

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            allowed = _PICKLE_ALLOWED.get(module, set())
            if allowed is not None and name not in allowed:
                raise ValueError(f"system_attrs: expected a cmaes optimizer, got a pickle naming {module}.{name}")
            return super().find_class(module, name)

    try:
        Restricted(io.BytesIO(blob)).load()
    except ValueError:
        raise
    except Exception as e:     # a damaged pickle, whatever it raises
        raise ValueError(f"system_attrs: expected a readable CMA-ES optimizer, got {type(e).__name__}") from None


def _json_safe(v: Any) -> bool:
    import json

    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False
