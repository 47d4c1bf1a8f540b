"""Warm-started evaluations (``evaluator.warm_steps``): every candidate of a round fine-tunes from
one checkpoint, and the checkpoint is the anchor θ's model trained from scratch."""

from __future__ import annotations

import numpy as np

from evaluator.base import Fidelity
from generator.base import derive_seed
from loop.config import load_config
from loop.engine import Engine, load_real
from loop.engine.render_pool import RenderPool
from loop.engine.warm import WARM_KEY
from smoke import SMOKE, tiny


def _engine(smoke_real, *extra):
    cfg = load_config(SMOKE, tiny(smoke_real, "evaluator.warm_steps=2", *extra))
    pool = RenderPool(cfg, workers=0)
    return cfg, pool, Engine(cfg, pool, load_real(cfg, categories=pool.generator.categories), {"score"},
                             use_ray=False)


def test_warm_candidates_fine_tune_from_the_config_thetas_checkpoint(smoke_real):
    cfg, pool, engine = _engine(smoke_real)
    with pool:
        space = pool.generator.space
        start = space.clip(space.to_vector())
        other = space.clip(start + 0.1 * (space.bounds()[1] - space.bounds()[0]))
        got = engine.evaluate([start, other], [7, 7], {"score"})
        # the same by hand: the config θ's model from scratch on its own seed, then K steps each
        seed = derive_seed(cfg.seed, WARM_KEY, 0)
        ckpt = engine.train([pool.render(start, cfg.evaluator.images, seed)], [seed], keep_weights=True)[0]
        _, datasets = engine.draw_and_render([start, other], [7, 7])
        fid = Fidelity(steps=2, images=cfg.evaluator.images, batch_size=cfg.evaluator.batch_size)
        want = engine.train(datasets, [7, 7], fidelity=fid, warm_start=ckpt.weights)
        scratch = engine.train(datasets, [7, 7])
    assert [r.score for r in got] == [r.score for r in want]
    assert [r.extras for r in got] == [r.extras for r in want]
    assert [r.extras["final_loss"] for r in got] != [r.extras["final_loss"] for r in scratch]
    assert all(r.timings["cpu_seconds"] > 0 for r in got)


def test_the_round_anchor_follows_the_mean_theta_and_is_reused_within_it(smoke_real):
    cfg, pool, engine = _engine(smoke_real, 'evaluator.warm_anchor="round"')
    with pool:
        space = pool.generator.space
        start = space.clip(space.to_vector())
        lo, hi = space.bounds()
        a, b = space.clip(start - 0.05 * (hi - lo)), space.clip(start + 0.05 * (hi - lo))
        anchor = engine.warm.anchor_theta(engine, [a, b])
        first = engine.warm.weights(engine, [a, b], 0)
        assert engine.warm.weights(engine, [b, a], 0) is first                    # same mean, same round
        moved = engine.warm.weights(engine, [b, space.clip(start + 0.2 * (hi - lo))], 1)
    assert np.allclose(anchor, (a + b) / 2, atol=1e-9)        # the box is affine: the mean of u is the mean of θ
    assert any(not np.array_equal(first[k].numpy(), moved[k].numpy()) for k in first)
