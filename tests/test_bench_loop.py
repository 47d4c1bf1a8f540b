"""dropt bench loop: its figures (intervals, best-val curves, sample efficiency) and its checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pathlib import Path

from loop.bench.loop import (SUFFIX, TASKS, Plan, check_plan, curve, interval, run_one, run_overrides,
                             sample_efficiency, summarise)
from loop.front.cli import main
from loop.config import ConfigError, load_config


def test_interval_is_a_95_percent_t_interval():
    m, h = interval([0.6, 0.7, 0.8])
    assert m == pytest.approx(0.7) and h == pytest.approx(4.302653 * 0.1 / math.sqrt(3))   # t(0.975, 2 df)
    assert interval([0.5]) == (0.5, 0.0)


def test_report_only_with_every_run_missing_reports_none(tmp_path):
    from loop.bench.loop import bench_loop

    plan = Plan(tasks=("digits",), controllers=("prior", "reinforce"), seeds=(0,), scale="quick", out=tmp_path,
                report_only=True)
    result = bench_loop(plan, log=lambda m: None)
    entry = result["tasks"]["digits"]
    assert entry["metric"] is None and entry["controllers"] == {} and entry["not_run"] == ["prior", "reinforce"]


def write_rounds(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_curve_counts_evaluations_and_takes_copies_by_their_mean(tmp_path):
    a, b = {"x": 0.0}, {"x": 1.0}
    write_rounds(tmp_path, [
        {"round": 0, "candidate": 0, "score": 0.5, "theta": a}, {"round": 0, "candidate": 1, "score": 0.9, "theta": b},
        {"round": 0, "candidate": 2, "score": 0.1, "theta": b},            # b's copies: mean 0.5
        {"round": 1, "candidate": 0, "score": None, "theta": a}, {"round": 1, "candidate": 1, "score": 0.6, "theta": b},
        {"round": 1, "candidate": 2, "score": 0.4, "theta": a}])
    xs, ys = curve(tmp_path)
    assert xs.tolist() == [3, 6] and ys.tolist() == [0.5, 0.6]


def test_sample_efficiency_finds_where_a_learner_reaches_tpes_final_best():
    def row(ys):
        return {"evaluations": 4 * len(ys), "curve": {"evaluations": [4 * (i + 1) for i in range(len(ys))], "mean": ys}}
    rows = {"tpe": row([0.5, 0.6, 0.7, 0.8]), "reinforce": row([0.7, 0.8, 0.9, 0.9]), "credit": row([0.1] * 4)}
    eff = sample_efficiency(rows)
    assert eff["tpe_final_best_val"] == 0.8 and eff["tpe_evaluations"] == 16
    assert eff["reinforce"] == {"evaluations": 8, "share_of_tpe": 0.5}
    assert eff["credit"] == {"evaluations": None, "share_of_tpe": None}


def test_summarise_averages_curves_over_seeds(tmp_path):
    runs = [{"val": v, "test": v - 0.05, "timing": {"run_wall": 10.0}, "selected": "x"} for v in (0.6, 0.8)]
    curves = [(np.array([4, 8]), np.array([0.5, 0.6])), (np.array([4, 8]), np.array([0.7, 0.8]))]
    s = summarise(runs, curves)
    assert s["val"][0] == pytest.approx(0.7) and s["test"][0] == pytest.approx(0.65)
    assert s["curve"]["mean"] == pytest.approx([0.6, 0.7]) and s["evaluations"] == 8


def test_bad_names_are_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--tasks: expected names among"):
        check_plan(Plan(("nope",), ("prior",), (0,), "quick", tmp_path))
    with pytest.raises(ConfigError, match="--controllers: expected names among"):
        check_plan(Plan(("digits",), ("magic",), (0,), "quick", tmp_path))
    with pytest.raises(ConfigError, match="scale: expected one of"):
        check_plan(Plan(("digits",), ("prior",), (0,), "huge", tmp_path))
    assert main(["bench", "loop", "--quick", "--controllers", "magic", "--out", str(tmp_path)]) == 2
    assert "--controllers: expected names among" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, controllers, seeds, scale, out", [
    (["--quick"], ("prior", "random", "reinforce", "tpe"), (0, 1), "quick", "bench-loop-quick"),
    ([], ("prior", "random", "reinforce", "credit", "tpe", "cmaes"), (0, 1, 2), "default", "bench-loop"),
    (["--full"], ("prior", "random", "reinforce", "reinforce-warm", "surrogate-warm", "surrogate",
                  "surrogate-metagrad", "credit", "descent", "tpe", "cmaes"), (0, 1, 2), "full",
     "bench-loop-full"),
    (["--quick", "--controllers", "cmaes", "--seeds", "4"], ("cmaes",), (4,), "quick", "bench-loop-quick"),
])
def test_each_scale_runs_its_controllers_and_seeds_into_its_own_folder(tmp_path, monkeypatch, argv, controllers,
                                                                      seeds, scale, out):
    import loop.bench.loop as bl
    seen = []

    def fake_bench(plan, log):
        seen.append(plan)
        return {"scale": plan.scale, "seeds": list(plan.seeds), "tasks": {}, "wall_seconds": 0.0, "plot": None}

    monkeypatch.setattr(bl, "bench_loop", fake_bench)
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "loop", *argv]) == 0
    plan = seen[0]
    assert (plan.controllers, plan.seeds, plan.scale, plan.out) == (controllers, seeds, scale, Path("out") / out)
    assert (plan.out / f"result{SUFFIX[scale]}.json").is_file()


def test_quick_and_full_are_refused_together(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "loop", "--quick", "--full", "--out", str(tmp_path)])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("scale, images, rounds, final_seeds", [("quick", 200, 3, 2), ("default", 200, 8, 3),
                                                               ("full", 300, 20, 3)])
def test_the_shapes_scales_fidelities(tmp_path, scale, images, rounds, final_seeds):
    plan = Plan(("shapes",), ("reinforce",), (0,), scale, tmp_path)
    cfg = load_config(TASKS["shapes"].config, run_overrides(plan, "shapes", "reinforce", 7))
    assert (cfg.evaluator.images, cfg.loop.budget, cfg.evaluator.final_seeds, cfg.loop.optimizer, cfg.seed) == \
        (images, rounds, final_seeds, "reinforce", 7)


def write_run(plan, task, controller, seed, config_sets):
    """A finished run folder as `dropt run` leaves it (config.toml and best.json only)."""
    import tomli_w

    out = plan.run_dir(task, controller, seed)
    out.mkdir(parents=True)
    (out / "config.toml").write_text(tomli_w.dumps(load_config(TASKS[task].config, config_sets).raw))
    (out / "best.json").write_text(json.dumps({"val": 0.5, "test": 0.4}))


def test_a_finished_run_is_reused_only_when_it_is_the_same_run(tmp_path):
    plan = Plan(("digits",), ("prior",), (0,), "default", tmp_path)
    write_run(plan, "digits", "prior", 0, run_overrides(plan, "digits", "prior", 0))
    assert run_one(plan, "digits", "prior", 0, log=print) == {"val": 0.5, "test": 0.4}

    quick = Plan(("digits",), ("prior",), (1,), "quick", tmp_path)      # a default-scale run under a quick plan
    write_run(quick, "digits", "prior", 1, run_overrides(plan, "digits", "prior", 1))
    with pytest.raises(ConfigError, match="expected a run of this benchmark's quick scale"):
        run_one(quick, "digits", "prior", 1, log=print)


def test_warm_rows_run_the_rounds_their_wall_time_buys():
    from loop.bench.loop import TASKS, WARM_ROWS, Plan

    plan = Plan(tasks=("shapes",), controllers=("reinforce",), seeds=(0,), scale="full", out=Path("x"))
    for task in ("shapes", "digits"):
        rounds, factor = TASKS[task].rounds("full"), TASKS[task].warm_rounds
        for row in WARM_ROWS:
            budgets = [s for s in plan.overrides(task, row) if s.startswith("loop.budget=")]
            assert budgets[-1] == f"loop.budget={math.ceil(rounds * factor)}"      # the last --set wins
        assert [s for s in plan.overrides(task, "reinforce") if s.startswith("loop.budget=")] == [f"loop.budget={rounds}"]
