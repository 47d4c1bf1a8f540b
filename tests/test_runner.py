"""The closed-loop runner: run directory, kill + resume, final test scoring, report and export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loop.front.cli import main
from loop.config import ConfigError, load_config
from loop.run.runner import run_loop

from smoke import SMOKE, tiny  # noqa: E402


@pytest.fixture
def real_dir(smoke_real):
    return smoke_real


def test_run_writes_the_run_directory(real_dir, tmp_path):
    cfg = load_config(SMOKE, tiny(real_dir, 'loop.optimizer="reinforce"'))
    best = run_loop(cfg, tmp_path / "run", log=lambda m: None)
    rd = tmp_path / "run"
    rounds = [json.loads(line) for line in (rd / "rounds.jsonl").read_text().splitlines()]
    assert [(r["round"], r["candidate"]) for r in rounds] == [(r, c) for r in range(3) for c in range(2)]
    assert set(rounds[0]["theta"]) == set(cfg.build_generator().space.theta_names())
    assert "val_ap50" in rounds[0]["metrics"]
    saved = json.loads((rd / "best.json").read_text())
    assert saved == json.loads(json.dumps(best))
    assert 0 <= saved["val"] <= 1 and 0 <= saved["test"] <= 1 and len(saved["test_per_seed"]) == 2
    assert (rd / "config.toml").is_file() and (rd / "checkpoint" / "state.json").is_file()
    meta = json.loads((rd / "metadata.json").read_text())
    assert meta["seed"] == cfg.seed and "torch" in meta["versions"]
    assert load_config(rd / "config.toml").loop.budget == 3     # the resolved config round-trips
    with pytest.raises(ConfigError, match="already holds a run"):
        run_loop(cfg, rd, log=lambda m: None)


@pytest.mark.parametrize("optimizer, extra", [
    ("reinforce", ()), ("metasim", ()), ("vadra", ()), ("credit", ()),
    ("reinforce", ("evaluator.warm_steps=2", 'evaluator.warm_anchor="round"')),
    ("credit", ("evaluator.warm_steps=2", 'evaluator.warm_anchor="config"')),
    ("surrogate", ("evaluator.warm_steps=2", 'evaluator.warm_anchor="round"')),
    ("surrogate-metagrad", ("loop.options.every=2",))])      # metagradient rounds before and after the cut
def test_killed_and_resumed_run_matches_an_uninterrupted_one(real_dir, tmp_path, optimizer, extra):
    cfg = load_config(SMOKE, tiny(real_dir, f'loop.optimizer="{optimizer}"', *extra))
    whole = run_loop(cfg, tmp_path / "whole", log=lambda m: None)
    assert run_loop(cfg, tmp_path / "cut", stop_after_round=2, log=lambda m: None) == {"stopped_after_round": 2}
    # a round half-written when the process died is dropped on resume
    with open(tmp_path / "cut" / "rounds.jsonl", "a") as f:
        f.write(json.dumps({"round": 2, "candidate": 0, "theta": {}, "score": 0.0}) + "\n")
    resumed = run_loop(load_config(tmp_path / "cut" / "config.toml"), tmp_path / "cut", resume=True,
                       log=lambda m: None)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "metrics"} | {"val": r["metrics"].get("val_ap50")}  # noqa: E731
                          for r in rows]
    a = [json.loads(x) for x in (tmp_path / "whole" / "rounds.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "cut" / "rounds.jsonl").read_text().splitlines()]
    assert strip(a) == strip(b)
    for key in ("theta", "val", "test", "val_per_seed", "test_per_seed", "selected"):
        assert whole[key] == resumed[key], key


def test_candidates_of_a_round_share_seeds_and_copies_get_their_own(real_dir, tmp_path):
    from loop.engine import round_seeds

    a, b = np.zeros(3), np.ones(3)
    s = round_seeds(0, 5, [a, b, a, b, a])
    assert s[0] == s[1] and s[2] == s[3] and len({s[0], s[2], s[4]}) == 3     # copy k of each θ alike
    assert round_seeds(0, 5, [a, b]) == s[:2] and round_seeds(0, 6, [a])[0] != s[0]
    cfg = load_config(SMOKE, tiny(real_dir, 'loop.optimizer="reinforce"'))
    run_loop(cfg, tmp_path / "run", log=lambda m: None)
    rounds = [json.loads(x) for x in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    for r in range(3):
        row = [x for x in rounds if x["round"] == r]
        assert row[0]["theta"] != row[1]["theta"] and row[0]["seed"] == row[1]["seed"]


def test_the_final_retraining_keeps_the_higher_val_of_the_best_candidate_and_the_policy_mean(real_dir, tmp_path):
    runs = {}
    for final in ("better", "best", "current"):
        cfg = load_config(SMOKE, tiny(real_dir, 'loop.optimizer="reinforce"', f'loop.options.final="{final}"',
                                      "loop.keep_start=false"))
        runs[final] = run_loop(cfg, tmp_path / final, log=lambda m: None)
    assert {k: set(r["final_choices"]) for k, r in runs.items()} == {
        "better": {"best", "current"}, "best": {"best"}, "current": {"current"}}
    both = runs["better"]["final_choices"]
    # each θ was retrained on the same final seeds as the single-choice runs
    assert both["best"]["val"] == runs["best"]["val"] and both["current"]["val"] == runs["current"]["val"]
    chosen = "current" if both["current"]["val"] > both["best"]["val"] else "best"
    for key in ("theta", "val", "test", "test_per_seed"):
        assert runs["better"][key] == runs[chosen][key], key
    assert (runs["better"]["selected"] == "controller mean") == (chosen == "current")
    rounds = [json.loads(x) for x in (tmp_path / "best" / "rounds.jsonl").read_text().splitlines()]
    top = max(rounds, key=lambda r: r["score"])
    assert runs["best"]["theta"] == pytest.approx(top["theta"], abs=1e-6)
    with pytest.raises(ConfigError, match="reinforce.final: expected one of"):
        run_loop(load_config(SMOKE, tiny(real_dir, 'loop.optimizer="reinforce"', 'loop.options.final="mean"')),
                 tmp_path / "bad", log=lambda m: None)


def test_a_learner_also_retrains_the_config_theta_and_keeps_it_when_its_val_is_higher(real_dir, tmp_path):
    cfg = load_config(SMOKE, tiny(real_dir, 'loop.optimizer="reinforce"'))
    run = run_loop(cfg, tmp_path / "run", log=lambda m: None)
    assert set(run["final_choices"]) == {"best", "current", "start"}
    # the start is the config's θ retrained on the run's final seeds: what a search-free run reports
    prior = run_loop(load_config(SMOKE, tiny(real_dir, 'loop.optimizer="random"', "loop.options.widen=false",
                                             "loop.budget=1", "loop.candidates=1")), tmp_path / "prior",
                     log=lambda m: None)
    assert run["final_choices"]["start"]["val"] == prior["val"]
    chosen = max(run["final_choices"], key=lambda n: run["final_choices"][n]["val"])
    assert run["val"] == run["final_choices"][chosen]["val"]
    assert (run["selected"] == "the config's θ (the search's start)") == (chosen == "start")
    if chosen == "start":
        assert run["theta"] == prior["theta"] and run["test"] == prior["test"]
    # the random baseline learns nothing, so it has no start to keep
    assert set(prior["final_choices"]) == {"best"}


@pytest.mark.parametrize("winner, selected", [("start", "the config's θ (the search's start)"),
                                              ("current", "controller mean")])
def test_the_final_choice_with_the_higher_val_is_kept(real_dir, tmp_path, monkeypatch, winner, selected):
    from types import SimpleNamespace

    import loop.run.final as final

    def scripted(run, name, theta):   # real val 0.9 for the winner, 0.5 else
        v, metric = 0.9 if name == winner else 0.5, run.engine.metric
        return [SimpleNamespace(extras={f"val_{metric}": v, f"test_{metric}": v - 0.1})] * run.cfg.evaluator.final_seeds

    monkeypatch.setattr(final, "final_scores", scripted)
    cfg = load_config(SMOKE, tiny(real_dir, 'loop.optimizer="reinforce"'))
    run = run_loop(cfg, tmp_path / "run", log=lambda m: None)
    assert run["selected"] == selected and run["val"] == 0.9 and run["test"] == pytest.approx(0.8)
    space = cfg.build_generator().space
    if winner == "start":
        assert run["theta"] == pytest.approx(space.named(space.clip(space.to_vector())), abs=1e-6)
    off = run_loop(load_config(SMOKE, tiny(real_dir, 'loop.optimizer="reinforce"', "loop.keep_start=false")),
                   tmp_path / "off", log=lambda m: None)
    assert set(off["final_choices"]) == {"best", "current"}


def test_credit_run_records_per_image_credit_and_selects_by_mean_of_copies(real_dir, tmp_path):
    cfg = load_config(SMOKE, tiny(real_dir, 'loop.optimizer="credit"'))
    best = run_loop(cfg, tmp_path / "run", log=lambda m: None)
    rounds = [json.loads(x) for x in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert rounds[0]["seed"] != rounds[1]["seed"]               # two copies of one θ: two batches
    assert rounds[0]["theta"] == rounds[1]["theta"]
    assert "copies" in best["selected"]
    assert rounds[0]["theta"] != rounds[-1]["theta"]          # the credit moved θ


def test_a_plug_in_evaluator_by_dotted_path_and_bad_ones_in_one_line(real_dir, tmp_path):
    cfg = load_config(SMOKE, tiny(real_dir, 'evaluator.task="evaluator.detection:DetectionEvaluator"',
                                  'loop.optimizer="random"', "loop.budget=1"))
    best = run_loop(cfg, tmp_path / "run", log=lambda m: None)
    assert best["metric"] == "ap50"
    for task, msg in (("nope", "expected one of"), ("json:dumps", "subclass of evaluator.base.Evaluator"),
                      ("no_such_module:X", "importable evaluator")):
        cfg = load_config(SMOKE, tiny(real_dir, f'evaluator.task="{task}"'))
        with pytest.raises(ConfigError, match=msg):
            run_loop(cfg, tmp_path / task.replace(":", "_"), log=lambda m: None)


def test_resume_needs_a_checkpoint(tmp_path):
    cfg = load_config(SMOKE)
    with pytest.raises(ConfigError, match="expected a run directory with a checkpoint"):
        run_loop(cfg, tmp_path / "nothing", resume=True, log=lambda m: None)


def test_report_and_export(real_dir, tmp_path, capsys):
    cfg = load_config(SMOKE, tiny(real_dir, 'loop.optimizer="random"'))
    run_loop(cfg, tmp_path / "run", log=lambda m: None)
    assert main(["report", str(tmp_path / "run"), "--n", "4"]) == 0
    rep = tmp_path / "run" / "report"
    for name in ("scores.png", "parameters.png", "samples_first.png", "samples_learned.png", "summary.md"):
        assert (rep / name).is_file() and (rep / name).stat().st_size > 0, name
    summary = (rep / "summary.md").read_text()
    assert "random" in summary and "test" in summary and "hidden target" in summary
    assert main(["export", str(tmp_path / "run"), "--n", "5", "--out", str(tmp_path / "exp"), "--workers", "0"]) == 0
    coco = json.loads((tmp_path / "exp" / "annotations.json").read_text())
    assert len(coco["images"]) == 5


@pytest.mark.parametrize("argv,fragment", [
    (["run", str(SMOKE), "--optimizer", "gradient-magic", "--out", "OUT"], "optimizer"),
    (["run", "--resume", "OUT", "--budget", "3"], "--resume"),
    (["run"], "config: expected an experiment TOML"),
    (["run", str(SMOKE), "--set", "loop.budget=0", "--out", "OUT"], "loop.budget"),
    (["run", str(SMOKE), "--set", "evaluator.task=segmentation", "--out", "OUT"], "evaluator.task"),
    (["report", "OUT"], "config.toml"),
])
def test_bad_run_input_exits_2(real_dir, tmp_path, capsys, argv, fragment):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    if argv[0] == "run" and "--resume" not in argv and len(argv) > 1:
        argv += ["--set", f'evaluator.real="{real_dir}"', "--set", "render.workers=0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err
