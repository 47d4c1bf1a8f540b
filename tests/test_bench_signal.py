"""``dropt bench signal``: the estimators against known answers, and the instrument at tiny size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loop.bench.signal import SignalPlan, antithetic, bench_signal, cosine, ideal_step, snr, surrogate
from loop.front.cli import main
from smoke import SMOKE


def _rows(g: np.ndarray, plan: SignalPlan, n_seeds: int, noise: float = 0.0, seed: int = 0) -> list[dict]:
    """Measurements of a linear score s(u) = offset + g·(u − u0) (+ noise), as measure_seed lays them out."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_seeds):
        eps = rng.standard_normal((plan.pairs, len(g)))
        offset = rng.normal()                  # each seed's common-random-numbers luck
        us = [np.zeros(len(g)), np.full(len(g), plan.step)]
        for e in eps:
            us += [plan.sigma * e, -plan.sigma * e]
        scores = [offset + float(g @ u) + noise * rng.normal() for u in us]
        rows.append({"seed": i, "eps": eps.tolist(), "modes": {"scratch": {"scores": scores}}})
    return rows


def test_antithetic_pairs_and_the_surrogate_recover_a_linear_score():
    plan = SignalPlan(pairs=40, sigma=0.05)
    g = np.random.default_rng(1).standard_normal(10)
    rows = _rows(g, plan, 3)
    est = antithetic(rows[0]["modes"]["scratch"]["scores"], np.asarray(rows[0]["eps"]), plan.sigma, plan.pairs)
    assert cosine(est, g) > 0.9                         # (1/N) Σ εεᵀ g → g
    assert cosine(surrogate(rows, "scratch", plan), g) > 0.95    # seed offsets removed: ≈ g, pooled over seeds
    noisy = _rows(g, SignalPlan(pairs=2, sigma=0.05), 3, noise=10.0)
    assert abs(cosine(surrogate(noisy, "scratch", SignalPlan(pairs=2, sigma=0.05)), g)) < 0.9


def test_ideal_step_and_snr():
    u0, ut = np.array([0.5, 0.5, 0.5]), np.array([0.9, 0.5, 0.51])
    assert np.allclose(ideal_step(u0, ut, 0.02), [0.52, 0.5, 0.51])    # onto the target when closer
    assert snr(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)
    assert cosine(np.zeros(3), ut) == 0.0


def test_bench_signal_at_tiny_size_is_deterministic_and_reuses_finished_seeds(smoke_real, tmp_path, capsys):
    sets = (f'evaluator.real="{smoke_real}"', "evaluator.width=8", "evaluator.batch_size=4")
    plan = dict(config=str(SMOKE), sets=sets, images=8, steps=4, warm_steps=(2,), pairs=1)
    a = bench_signal(SignalPlan(seeds=2, out=tmp_path / "a", **plan), log=lambda m: None)
    b = bench_signal(SignalPlan(seeds=2, out=tmp_path / "b", **plan), log=lambda m: None)
    raw = lambda d: json.loads((d / "raw.json").read_text())["rows"]  # noqa: E731
    strip = lambda rows: [{**r, "render_cpu": 0, "checkpoint_cpu": 0,  # noqa: E731
                           "modes": {m: {k: v for k, v in x.items() if k not in ("cpu", "metagrad_cpu")}
                                     for m, x in r["modes"].items()}}
                          for r in rows]
    assert strip(raw(tmp_path / "a")) == strip(raw(tmp_path / "b"))
    assert set(a["modes"]) == {"scratch", "warm 2"} and a["dim"] > 0
    for m in a["modes"].values():
        assert m["cpu_seconds"] > 0
        assert all(-1 <= mean <= 1 for mean, _ in m["cosines"].values())
        assert "metagrad (exact), one evaluation" in m["cosines"]
    for mode in ("scratch", "warm 2"):     # the drop check, from scratch and at the largest warm budget
        assert set(a["modes"][mode]["drop_correlation"]) == {"credit (TracIn)", "metagrad (exact)"}
        assert all(len(r["drops"][mode]["actual"]) == 6 for r in raw(tmp_path / "a"))
    # a rerun with more seeds measures only the new one; the CLI prints the table
    out = tmp_path / "a"
    argv = ["bench", "signal", str(SMOKE), "--seeds", "3", "--images", "8", "--steps", "4", "--warm-steps", "2",
            "--pairs", "1", "--out", str(out), *[x for s in sets for x in ("--set", s)]]
    first = raw(out)
    assert main(argv) == 0
    assert "SNR" in capsys.readouterr().out
    assert raw(out)[:2] == first and len(raw(out)) == 3


def test_bench_signal_refuses_a_config_without_a_known_theta(tmp_path, capsys):
    assert main(["bench", "signal", "experiments/digits/default.toml", "--out", str(tmp_path)]) == 2
    assert "--toward" in capsys.readouterr().err
