"""`dropt bench render|evaluator|loop|signal`: benchmarks that print their figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ...errors import EXIT_USAGE

from .options import (Parser, add_json, add_workers, int_list, name_list, non_negative_int, path, positive_int,
                      threads, training_seed)


def _bench_render_parser(bsub) -> None:
    b = bsub.add_parser("render", help="images/s: reuse renderer vs naive loop, one process vs all cores")
    b.add_argument("--n", type=positive_int, default=800,
                   help="images per core in each gl figure; pyrender and naive render a quarter (default 800)")
    b.add_argument("--sizes", type=int_list(1), default="64,128", help="comma-separated image sizes (default 64,128)")
    b.add_argument("--modes", type=name_list, default=None,
                   help="comma-separated renderers to time: gl (dropt's path), pyrender (scene reused), "
                        "naive (scene rebuilt per image), blender (Cycles, the optional extra); default every "
                        "one installed")
    b.add_argument("--workers", type=positive_int, default=None, help="workers for the all-cores figure")
    b.add_argument("--repeats", type=positive_int, default=3, help="interleaved rounds per figure; the best is kept (default 3)")
    b.add_argument("--depth", action="store_true",
                   help="also read back and ship depth maps (off by default, as in the loop's configs)")
    add_json(b, "a table")


def _bench_evaluator_parser(bsub) -> None:
    b = bsub.add_parser("evaluator", help="oracle detector AP50 on the target domain; digits accuracy real vs synthetic")
    b.add_argument("--oracle-steps", type=positive_int, default=1200, help="oracle training steps (default 1200)")
    b.add_argument("--digits-steps", type=positive_int, default=1500, help="digits classifier steps (default 1500)")
    b.add_argument("--seed", type=training_seed, default=0)
    b.add_argument("--threads", type=threads, default=2, help="torch CPU threads, 1 to 1024 (default 2)")
    add_workers(b, "the config's")
    add_json(b)


def _bench_loop_parser(bsub) -> None:
    b = bsub.add_parser("loop", help="controllers × search seeds on the real digits and the hidden shapes target: "
                                     "real val/TEST with 95 %% intervals, beside the prior, wide DR and the oracle")
    size = b.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="a first look: 4 controllers, 2 seeds, small fidelities (docs/benchmarks.md: its time)")
    size.add_argument("--full", action="store_true",
                      help="the fidelities and budgets of the benchmark tables (shapes: 20 rounds at 300 images / "
                           "150 steps); docs/benchmarks.md gives each scale's measured time")
    b.add_argument("--tasks", type=name_list, default="digits,shapes", help="comma-separated (default digits,shapes)")
    b.add_argument("--controllers", type=name_list, default=None,
                   help="comma-separated (default prior,random,reinforce,credit,tpe,cmaes; --full adds descent; "
                        "--quick prior,random,reinforce,tpe)")
    b.add_argument("--seeds", type=int_list(0), default=None,
                   help="search seeds, comma-separated (default 0,1,2; --quick 0,1)")
    b.add_argument("--out", type=path, default=None,
                   help="run directories (default out/bench-loop, --quick out/bench-loop-quick, --full out/bench-loop-full)")
    b.add_argument("--report-only", action="store_true",
                   help="aggregate the finished runs only (a controller with a missing run is left out)")
    add_json(b, "a table")


def _bench_signal_parser(bsub) -> None:
    b = bsub.add_parser("signal", help="evidence per CPU-second on the shapes target: the paired SNR of an ideal step "
                                       "and gradient cosines with the true direction, from scratch and warm-started")
    b.add_argument("config", nargs="?", type=path, default="experiments/shapes/default.toml",
                   help="a config with evaluator.target_config, or any with --toward (default "
                        "experiments/shapes/default.toml)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    b.add_argument("--images", type=positive_int, default=None, help="images per candidate (default: the config's)")
    b.add_argument("--steps", type=positive_int, default=None, help="training steps from scratch (default: the config's)")
    b.add_argument("--toward", type=path, default=None, metavar="BEST_JSON",
                   help="the known-better θ: a finished run's best.json (default: the config's evaluator.target_config)")
    b.add_argument("--seeds", type=positive_int, default=6, help="training seeds (default 6)")
    b.add_argument("--warm-steps", type=int_list(1, empty=True), default="25,50,100",
                   help="comma-separated fine-tune budgets of the warm-started modes ('' for none; default 25,50,100)")
    b.add_argument("--pairs", type=positive_int, default=4, help="antithetic pairs per seed (default 4)")
    b.add_argument("--drops", type=non_negative_int, default=6,
                   help="subsets dropped per seed to check each credit's prediction (default 6; 0: none)")
    b.add_argument("--workers", type=positive_int, default=2, help="evaluation processes (default 2)")
    b.add_argument("--out", type=path, default="out/bench-signal",
                   help="raw measurements, reused by seed (default out/bench-signal)")
    add_json(b, "a table")


def _bench_signal(args) -> int:
    from ...bench.signal import SignalPlan, bench_signal, format_table

    plan = SignalPlan(config=args.config, sets=tuple(args.overrides), images=args.images, steps=args.steps,
                      toward=args.toward, seeds=args.seeds, warm_steps=args.warm_steps, pairs=args.pairs,
                      drops=args.drops, workers=args.workers, out=Path(args.out))
    res = bench_signal(plan, log=lambda m: print(m, file=sys.stderr, flush=True))   # errors: one line (cli main)
    (plan.out / "result.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res) if args.json else format_table(res))
    return 0


def _bench_loop(args) -> int:
    from ...bench.loop import (DEFAULT_CONTROLLERS, FULL_CONTROLLERS, QUICK_CONTROLLERS, SUFFIX, Plan, bench_loop,
                             format_table)

    seeds = args.seeds or ((0, 1) if args.quick else (0, 1, 2))
    scale = "quick" if args.quick else "full" if args.full else "default"
    controllers = args.controllers or {"quick": QUICK_CONTROLLERS, "default": DEFAULT_CONTROLLERS,
                                       "full": FULL_CONTROLLERS}[scale]
    plan = Plan(tasks=args.tasks, controllers=controllers, seeds=seeds, scale=scale,
                out=Path(args.out or f"out/bench-loop{SUFFIX[scale]}"), report_only=args.report_only)
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        res = bench_loop(plan, log=log)
    except RuntimeError as e:
        print(f"dropt bench loop: error: {e}", file=sys.stderr)
        return 1
    name = "result" + plan.suffix + ("" if plan.tasks == ("digits", "shapes") else f"-{'-'.join(plan.tasks)}")
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / f"{name}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res) if args.json else format_table(res))
    return 0


def cmd_bench(args) -> int:
    if args.bench == "loop":
        return _bench_loop(args)
    if args.bench == "signal":
        return _bench_signal(args)
    if args.bench == "evaluator":
        from ...bench.evaluator import bench_evaluator

        log = (lambda *a, **k: None) if args.json else (lambda *a, **k: print(*a, **k, flush=True))
        res = bench_evaluator(oracle_steps=args.oracle_steps, digits_steps=args.digits_steps, seed=args.seed,
                              threads=args.threads, workers=args.workers, log=log)
        if args.json:
            print(json.dumps(res))
        else:
            print(f"oracle AP50 {res['oracle_ap50']:.3f} (target >= 0.8) in {res['oracle_train_seconds']:.1f} s of "
                  f"training (target <= 60); digits: real {res['digits_real_acc']:.3f} (target >= 0.95), "
                  f"synthetic default {res['digits_synthetic_acc']:.3f}")
        return 0
    if args.bench == "render":
        import os

        from ...bench.render import bench_render, check_figures, per_core_images, summary_lines

        from ...bench.render import default_modes

        workers = args.workers or os.cpu_count() or 1
        args.modes = args.modes or default_modes()
        check_figures(args.sizes, args.n, workers, args.modes)
        log = (lambda *a, **k: None) if args.json else print
        if not args.json:
            print(f"dropt bench render: {args.n} images per core per figure (pyrender, naive: "
                  f"{per_core_images(args.n, 'naive')}), RGB + masks + boxes"
                  + (" + depth" if args.depth else ""))
        res = bench_render(sizes=args.sizes, n=args.n, workers=workers, modes=args.modes, repeats=args.repeats,
                           depth=args.depth, log=log)
        if args.json:
            print(json.dumps(res))
        else:
            print("\n".join(summary_lines(res)))
        return 0
    return EXIT_USAGE


def add(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print their figures")
    bsub = bench.add_subparsers(dest="bench", required=True, parser_class=Parser)
    for add_one in (_bench_render_parser, _bench_evaluator_parser, _bench_loop_parser, _bench_signal_parser):
        add_one(bsub)


COMMANDS = {"bench": cmd_bench}
