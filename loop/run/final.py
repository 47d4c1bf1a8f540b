"""The end of a run: the θs worth retraining, retrained on the final seeds, one kept by real val.

The final retraining scores the controller's pick (``final = "better"``: the best candidate and
the policy's mean) and, for a learning controller with ``loop.keep_start``, the config's own θ,
all on the same final seeds; the higher mean real val is kept and TEST is only reported.
"""

from __future__ import annotations

import math
import resource
import time
from typing import Any

import numpy as np

from generator.base import derive_seed

from ..engine import fidelity
from ..errors import RunFailure
from .state import RunState

FINAL_KEY = 0xF17A1
FINAL_TIE_ORDER = ("start", "current", "best")
"""Final choices with equal real val: the later one is kept (the candidate, then the controller's
θ, then the config's θ)."""


def final_choices(run: RunState) -> dict[str, np.ndarray]:
    """The θs the final retraining scores: the best-scored candidate ("best"), the
    controller's own θ ("current"), or both ("better") when they differ; for a learning
    controller with ``loop.keep_start`` also the config's θ it started from ("start")."""
    c, space = run.controller, run.controller.space
    if run.best is None or c.final == "current":
        choices = {"current": space.check_theta(c.current())}
    else:
        choices = {"best": space.check_theta(np.asarray(run.best["theta"]))}
        if c.final == "better":
            current = space.check_theta(c.current())
            if not np.array_equal(choices["best"], current):
                choices["current"] = current
    if c.learning and run.cfg.loop.keep_start:
        start = space.check_theta(space.clip(space.to_vector()))
        if not any(np.array_equal(start, t) for t in choices.values()):
            choices["start"] = start
    return choices


def final_scores(run: RunState, name: str, theta: np.ndarray) -> list:
    """``theta`` rendered and retrained on each final seed, scored on val and TEST; failed
    retrainings are left out (with a warning), all failing is a :class:`RunFailure`."""
    settings, engine = run.cfg.evaluator, run.engine
    fid = fidelity(settings, final=True)
    seeds = [derive_seed(run.cfg.seed, FINAL_KEY, i) for i in range(settings.final_seeds)]
    datasets = [engine.render(theta, fid.images, s) for s in seeds]
    finals = engine.train(datasets, seeds, fidelity=fid, splits=("val", "test"))
    for m in finals:
        if m.failed:
            run.log(f"warning: a final retraining of the {name} θ failed ({m.failed}); it is left out of the mean")
    finals = [m for m in finals if not m.failed]
    if not finals:
        raise RunFailure(f"final retraining of the {name} θ: expected at least one of the retrainings to finish, "
                         "every one failed (see the warnings above)")
    return finals


def _selected(chosen: str, best: dict | None) -> str:
    if chosen == "current":
        return "controller mean"
    if chosen == "start":
        return "the config's θ (the search's start)"
    copies = f" (mean of {best['copies']} copies)" if best.get("copies", 1) > 1 else ""
    return f"round {best['round'] + 1} candidate {best['candidate']}{copies}"


def finish(run: RunState) -> dict[str, Any]:
    """The selected distribution, retrained with several seeds, scored on val and TEST; writes
    and returns ``best.json``'s content."""
    cfg, metric, space = run.cfg, run.engine.metric, run.controller.space
    before = dict(run.engine.seconds)
    choices = final_choices(run)
    retrained = {name: final_scores(run, name, theta) for name, theta in choices.items()}
    mean_val = {n: float(np.mean([m.extras[f"val_{metric}"] for m in ms])) for n, ms in retrained.items()}
    chosen = max(retrained, key=lambda n: (mean_val[n], FINAL_TIE_ORDER.index(n)))
    finals = retrained[chosen]
    val = [float(m.extras[f"val_{metric}"]) for m in finals]
    test = [float(m.extras[f"test_{metric}"]) for m in finals]
    result = {
        "optimizer": cfg.loop.optimizer, "seed": cfg.seed, "rounds": cfg.loop.budget,
        "candidates": cfg.loop.candidates, "metric": metric, "selected": _selected(chosen, run.best),
        "search_val": None if run.best is None else num(run.best["score"]),
        "val": float(np.mean(val)), "test": float(np.mean(test)), "val_per_seed": val, "test_per_seed": test,
        "theta": {k: round(float(v), 6) for k, v in space.named(choices[chosen]).items()},
        "final_choices": {n: {"val": v} for n, v in mean_val.items()},   # the real val of each θ retrained
        **_timing(run, before),
    }
    run.rd.save_best(result)
    run.log(f"best distribution ({result['selected']}): val {metric} {result['val']:.4f}, "
            f"TEST {metric} {result['test']:.4f} (mean of {len(test)} seeds)")
    return result


def _timing(run: RunState, before: dict[str, float]) -> dict[str, Any]:
    """The run's seconds: the rounds' render and evaluation time plus the final retraining's."""
    wall = time.perf_counter() - run.wall0
    after = run.engine.seconds
    timing = {"render": run.timing["render"] + after["render"] - before["render"],
              "evaluate": run.timing["evaluate"] + after["evaluate"] - before["evaluate"],
              "loop_total": run.timing["total"], "run_wall": wall, "startup": run.t_startup}
    inside = timing["render"] + timing["evaluate"]
    return {"timing": {**{k: round(v, 3) for k, v in timing.items()}, "startup_parts": run.startup},
            "outside_render_and_training_share": round(max(wall - inside, 0.0) / wall, 4) if wall > 0 else None,
            "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None
