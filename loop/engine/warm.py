"""Warm-started evaluations: a round's candidates fine-tune from one shared checkpoint.

With ``[evaluator] warm_steps = K`` every candidate trains K steps from a checkpoint instead of
``steps`` steps from a fresh model (Neural-Sim fine-tunes from the previous iteration's model;
Population Based Augmentation shares training across its population). The checkpoint is a
model trained from scratch at the search fidelity on images of an anchor θ rendered with seeds
of its own:

- ``warm_anchor = "config"``: the config's own θ, one checkpoint for the whole run;
- ``warm_anchor = "round"``: the mean of each round's θs, one
  checkpoint per round (for a Gaussian policy, its mean; it follows the search).

Identical start weights are common random numbers for the models as well: two candidates of a
round then differ only by the images of their θ. The checkpoint is a pure function of the anchor
θ and the run seed, so a resumed run recomputes the same bytes. The final retraining always
starts from scratch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from evaluator.base import Fidelity
from generator.base import derive_seed

if TYPE_CHECKING:
    from .core import Engine

WARM_KEY = 0x3A7


class WarmStart:
    """The checkpoint a round's candidates fine-tune from (the last one is kept in memory)."""

    def __init__(self, engine: "Engine", *, anchor: str, steps: int, seed: int):
        self.anchor, self.seed = anchor, int(seed)
        fid = engine.fidelity
        self.fidelity = Fidelity(steps=int(steps), images=fid.images, batch_size=fid.batch_size)
        self._cached: tuple[bytes, dict] | None = None

    def anchor_theta(self, engine: "Engine", thetas: list[np.ndarray]) -> np.ndarray:
        space = engine.renderer.generator.space
        if self.anchor == "config":
            return space.clip(space.to_vector())
        return space.clip(np.mean(thetas, axis=0))   # the unit box is affine in θ: the same mean

    def weights(self, engine: "Engine", thetas: list[np.ndarray], round_index: int) -> dict:
        theta = np.asarray(self.anchor_theta(engine, thetas), dtype=np.float64)
        seed = derive_seed(self.seed, WARM_KEY, 0 if self.anchor == "config" else round_index)
        key = theta.tobytes() + seed.to_bytes(8, "little")
        if self._cached is None or self._cached[0] != key:
            _, (ds,) = engine.draw_and_render([theta], [seed])
            res = engine.train([ds], [seed], keep_weights=True)[0]
            if res.failed:
                raise RuntimeError(f"the warm-start checkpoint's training failed: {res.failed}")
            self._cached = (key, res.weights)
        return self._cached[1]
