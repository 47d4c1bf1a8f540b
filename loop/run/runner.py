"""The closed loop: propose θs → render → evaluate on real val → update, round after round.

:func:`run_loop` reads top to bottom: open (or restore) the run (:mod:`loop.run.state`), then per
round propose → evaluate (:class:`loop.engine.Engine`) → update → record and checkpoint, then the
final selection (:mod:`loop.run.final`). Candidates of a round share their image and training seeds
(common random numbers, :func:`loop.engine.round_seeds`); after every round the controller's
state is checkpointed atomically, so ``--resume`` continues a killed run on exactly the θ
trajectory an uninterrupted run would take.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable

import numpy as np

from ..config import ExperimentConfig
from ..controllers import Feedback
from ..engine import CandidateResult, round_seeds
from ..errors import RunFailure
from .final import finish, num
from .state import RunState, lock_run_dir, open_run


def run_loop(cfg: ExperimentConfig, out: str | os.PathLike, *, resume: bool = False, address: str | None = None,
             stop_after_round: int | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the loop of ``cfg`` in run directory ``out``; returns ``best.json``'s content.

    ``stop_after_round`` ends the process's work after that round's checkpoint (tests use it to
    simulate a killed run)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    rd = lock_run_dir(out, resume=resume)       # before anything else: no second run writes this folder
    try:
        with open_run(cfg, rd, resume=resume, address=address, log=log) as run:
            for r in range(run.start_round, cfg.loop.budget):
                play_round(run, r)
                if stop_after_round is not None and r + 1 >= stop_after_round and r + 1 < cfg.loop.budget:
                    return {"stopped_after_round": r + 1}
            return finish(run)
    finally:
        rd.unlock()


def play_round(run: RunState, r: int) -> None:
    """Propose → evaluate → update → record: one round, then its checkpoint."""
    cfg, c, space, t0 = run.cfg, run.controller, run.controller.space, time.perf_counter()
    seconds = dict(run.engine.seconds)
    signals = c.round_signals()
    thetas = [space.check_theta(t) for t in c.propose(cfg.loop.candidates)]
    seeds = round_seeds(cfg.seed, r, thetas)
    per_image = any(run.engine.signals[n].per_image for n in signals)
    results = run.engine.evaluate(thetas, seeds, signals, round_index=r, keep_draws=per_image)
    _check_failures(run, r, results)
    if any(run.engine.signals[n].real_val_score for n in signals):
        keep_best(run, r, thetas, [res.score for res in results])
    c.update(thetas, [_feedback(res) for res in results])
    _record(run, r, thetas, seeds, results, seconds, time.perf_counter() - t0)


def _feedback(res: CandidateResult) -> Feedback:
    if res.failed:
        return Feedback(score=math.nan, draws=None)
    return Feedback(score=res.score, extras=res.extras, draws=res.draws, per_image=res.per_image)


def _check_failures(run: RunState, r: int, results: list[CandidateResult]) -> None:
    failed = [res.failed for res in results if res.failed]
    if len(failed) == len(results):
        raise RunFailure(f"round {r + 1}: expected at least one candidate evaluated, every one failed "
                         f"({failed[0]}); the run stopped at the checkpoint of round {r}")
    for i, res in enumerate(results):
        if res.failed:
            run.log(f"warning: round {r + 1} candidate {i} failed ({res.failed}); the controller skips it")


def best_of_round(thetas: list[np.ndarray], scores: list[float]) -> tuple[int, float, int] | None:
    """The round's best θ by real-val score, as (its first candidate index, the mean score of
    its copies, how many copies scored); copies of one θ count by their mean. None: no score."""
    best = None
    for i, theta in enumerate(thetas):
        copies = [s for t, s in zip(thetas, scores) if np.array_equal(t, theta) and math.isfinite(s)]
        if any(np.array_equal(theta, t) for t in thetas[:i]) or not copies:
            continue
        score = float(np.mean(copies))
        if best is None or score > best[1]:
            best = (i, score, len(copies))
    return best


def keep_best(run: RunState, r: int, thetas: list[np.ndarray], scores: list[float]) -> None:
    """The best θ so far by real-val score (:func:`best_of_round`); an earlier round's wins ties."""
    found = best_of_round(thetas, scores)
    if found is not None and (run.best is None or found[1] > run.best["score"]):
        i, score, copies = found
        run.best = {"score": score, "round": r, "candidate": i, "theta": thetas[i].tolist(), "copies": copies}


def _record(run: RunState, r: int, thetas, seeds, results, seconds: dict[str, float], dt: float) -> None:
    """The round's lines in ``rounds.jsonl``, the checkpoint, and one progress line."""
    space, now = run.controller.space, run.engine.seconds
    run.timing = {"render": run.timing["render"] + now["render"] - seconds["render"],
                  "evaluate": run.timing["evaluate"] + now["evaluate"] - seconds["evaluate"],
                  "total": run.timing["total"] + dt}
    run.rd.append_round([{"round": r, "candidate": i, "seed": s, "score": num(res.score),
                          "metrics": {k: num(v) for k, v in sorted({**res.extras, **res.timings}.items())},
                          "theta": {k: round(float(v), 6) for k, v in space.named(theta).items()},
                          **({"device": res.device} if res.device else {}),
                          **({"ray_gpus": res.gpu_ids} if res.gpu_ids else {}),
                          **({"failed": res.failed} if res.failed else {})}
                         for i, (theta, s, res) in enumerate(zip(thetas, seeds, results))])
    run.checkpoint(r)
    budget = run.cfg.loop.budget
    per_round = run.timing["total"] / (r + 1)     # the timing totals cover rounds 0..r, resumed or not
    best = run.best["score"] if run.best else float("nan")
    run.log(f"round {r + 1}/{budget}  best val {best:.4f}  {dt:.1f} s/round  "
            f"ETA {_fmt_s(per_round * (budget - r - 1))}")


def _fmt_s(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"
