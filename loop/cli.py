"""The `dropt` command line. Bad input exits with status 2 and one line naming the key."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit status 2."""

    def error(self, message: str):  # noqa: D401
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _int_at_least(lo: int):
    """An argparse type: an integer >= lo, with an "expected X, got Y" message."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
        return v

    return parse


_positive_int, _non_negative_int = _int_at_least(1), _int_at_least(0)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment TOML, e.g. experiments/shapes/default.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help='override a config key, e.g. --set generator.image_size=128 (repeatable)')


def _add_address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None, help="join this Ray cluster instead of starting a local Ray")


def _add_workers(p: argparse.ArgumentParser, default: str = "the config's render.workers; 0 = in-process") -> None:
    p.add_argument("--workers", type=_non_negative_int, default=None, help=f"Ray render actors (default: {default})")


def _add_json(p: argparse.ArgumentParser, instead_of: str = "lines") -> None:
    p.add_argument("--json", action="store_true", help=f"print one JSON object instead of {instead_of}")


def _add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (refused otherwise)")


def _render_parser(sub) -> None:
    p = sub.add_parser("render", help="render a COCO dataset from a config's distribution")
    _add_config(p)
    p.add_argument("--n", type=_positive_int, default=100, help="number of images (default 100)")
    p.add_argument("--seed", type=_non_negative_int, default=None, help="seed (default: the config's)")
    p.add_argument("--out", required=True, help="output directory (new or empty)")
    _add_overwrite(p), _add_workers(p), _add_address(p)


def _preview_parser(sub) -> None:
    p = sub.add_parser("preview", help="write an image grid with boxes and class names")
    _add_config(p)
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--n", type=_positive_int, default=16, help="number of images (default 16)")
    p.add_argument("--seed", type=_non_negative_int, default=None)
    p.add_argument("--styles", action="store_true",
                   help="a row per digit style instead (generators with style templates, e.g. strokes)")


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="run the closed loop: learn the generator's distribution from real-val scores")
    p.add_argument("config", nargs="?", help="experiment TOML (not needed with --resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--optimizer", default=None, help="controller (default: the config's loop.optimizer)")
    p.add_argument("--budget", type=_positive_int, default=None, help="rounds (default: the config's loop.budget)")
    p.add_argument("--seed", type=_non_negative_int, default=None, help="run seed (default: the config's)")
    p.add_argument("--out", default=None, help="run directory (default: out/runs/<config>-<optimizer>-s<seed>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    _add_address(p)


def _tune_parser(sub) -> None:
    p = sub.add_parser("tune", help="multi-fidelity search with Ray Tune: ASHA stops, PBT clones distributions")
    _add_config(p)
    p.add_argument("--scheduler", choices=("asha", "pbt"), default="asha")
    p.add_argument("--budget", type=_positive_int, default=16, help="trials (default 16)")
    p.add_argument("--rungs", type=_positive_int, default=4,
                   help="training rungs of evaluator.steps steps each, reported after each (default 4)")
    p.add_argument("--out", default=None, help="Tune's experiment directory (default out/tune/<config>-<scheduler>)")
    _add_address(p)


def _run_dir_parsers(sub) -> None:
    p = sub.add_parser("report", help="plots (score per round, θ trajectories, sample grids) and summary.md of a run")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--n", type=_positive_int, default=16, help="images per sample grid (default 16)")
    p = sub.add_parser("export", help="write a COCO dataset from a run's learned distribution")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--n", type=_positive_int, required=True, help="number of images")
    p.add_argument("--out", required=True, help="output directory")
    _add_workers(p, "the run's"), _add_overwrite(p), _add_address(p)


def _target_parser(sub) -> None:
    p = sub.add_parser("make-target", help="render a hidden target domain's val and test sets (stand-in real data)")
    _add_config(p)
    p.add_argument("--out", required=True, help="output directory (gets val/, test/, target.json, preview.png)")
    _add_workers(p), _add_address(p)


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="train the detector on a COCO set and score it on a real set's val and test splits")
    p.add_argument("synthetic", metavar="SYNTHETIC_DIR", help="COCO dataset to train on (e.g. what `dropt render` wrote)")
    p.add_argument("--real", required=True, metavar="REAL_DIR",
                   help="real COCO set: val/ and test/ sub-sets, or one set split here with --split-seed")
    p.add_argument("--steps", type=_positive_int, default=1200, help="training steps (default 1200)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="images per step (default 32)")
    p.add_argument("--images", type=_positive_int, default=None, help="train on the first N images only")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="training seed (default 0)")
    p.add_argument("--split-seed", type=_non_negative_int, default=0, help="seed of the real val/test split (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:i]")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch (default: torch's)")
    _add_json(p)


def _bench_render_parser(bsub) -> None:
    b = bsub.add_parser("render", help="images/s: reuse renderer vs naive loop, one process vs all cores")
    b.add_argument("--n", type=_positive_int, default=800,
                   help="images per core in each gl figure; pyrender and naive render a quarter (default 800)")
    b.add_argument("--sizes", default="64,128", help="comma-separated image sizes (default 64,128)")
    b.add_argument("--modes", default="gl,pyrender,naive",
                   help="comma-separated renderers to time: gl (dropt's path), pyrender (scene reused), "
                        "naive (scene rebuilt per image); default all three")
    b.add_argument("--workers", type=_positive_int, default=None, help="workers for the all-cores figure")
    b.add_argument("--repeats", type=_positive_int, default=3, help="interleaved rounds per figure; the best is kept (default 3)")
    b.add_argument("--depth", action="store_true",
                   help="also read back and ship depth maps (off by default, as in the loop's configs)")
    _add_json(b, "a table")


def _bench_evaluator_parser(bsub) -> None:
    b = bsub.add_parser("evaluator", help="oracle detector AP50 on the target domain; digits accuracy real vs synthetic")
    b.add_argument("--oracle-steps", type=_positive_int, default=1200, help="oracle training steps (default 1200)")
    b.add_argument("--digits-steps", type=_positive_int, default=1500, help="digits classifier steps (default 1500)")
    b.add_argument("--seed", type=_non_negative_int, default=0)
    b.add_argument("--threads", type=_positive_int, default=2, help="torch CPU threads (default 2)")
    _add_workers(b, "the config's")
    _add_json(b)


def _bench_loop_parser(bsub) -> None:
    b = bsub.add_parser("loop", help="controllers × search seeds on the real digits and the hidden shapes target: "
                                     "real val/TEST with 95 %% intervals, beside the prior, wide DR and the oracle")
    size = b.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="a first look: 4 controllers, 2 seeds, small fidelities (docs/benchmarks.md: its time)")
    size.add_argument("--full", action="store_true",
                      help="the fidelities and budgets of the benchmark tables (shapes: 20 rounds at 300 images / "
                           "150 steps); docs/benchmarks.md gives each scale's measured time")
    b.add_argument("--tasks", default="digits,shapes", help="comma-separated (default digits,shapes)")
    b.add_argument("--controllers", default=None,
                   help="comma-separated (default prior,random,reinforce,credit,tpe,cmaes; --full adds descent; "
                        "--quick prior,random,reinforce,tpe)")
    b.add_argument("--seeds", default=None, help="search seeds, comma-separated (default 0,1,2; --quick 0,1)")
    b.add_argument("--out", default=None,
                   help="run directories (default out/bench-loop, --quick out/bench-loop-quick, --full out/bench-loop-full)")
    b.add_argument("--report-only", action="store_true",
                   help="aggregate the finished runs only (a controller with a missing run is left out)")
    _add_json(b, "a table")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dropt", description="Closed-loop learned domain randomization.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_render_parser, _preview_parser, _run_parser, _tune_parser, _run_dir_parsers, _target_parser,
                _eval_parser):
        add(sub)
    sub.add_parser("plugins", help="list every registered generator, evaluator, controller and signal")
    p = sub.add_parser("config", help="the config's reference: every key with its type, default and meaning")
    p.add_argument("what", choices=("schema",), help="schema: print the reference page (Markdown)")
    bench = sub.add_parser("bench", help="benchmarks that print their figures")
    bsub = bench.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    for add in (_bench_render_parser, _bench_evaluator_parser, _bench_loop_parser):
        add(bsub)
    return parser


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------

def cmd_render(args) -> int:
    from .config import load_config
    from .render_pool import RenderPool

    from generator.dataset import check_out_dir

    cfg = load_config(args.config, args.overrides)
    seed = cfg.seed if args.seed is None else args.seed
    check_out_dir(Path(args.out), overwrite=args.overwrite)
    t0 = time.perf_counter()
    with RenderPool(cfg, workers=args.workers, address=args.address, progress=True) as pool:
        theta = pool.generator.space.to_vector()
        ds = pool.render(theta, args.n, seed, info={"config": cfg.source})
    path = ds.write_coco_set(args.out, overwrite=args.overwrite)
    n_ann = sum(len(a) for a in ds.annotations)
    print(f"wrote {len(ds)} images, {n_ann} annotations to {path.parent} "
          f"({len(ds) / (time.perf_counter() - t0):.0f} img/s including start-up)")
    return 0


def cmd_preview(args) -> int:
    from generator.base import render_dataset

    from .config import ConfigError, load_config
    from .preview import save_grid, save_style_grid

    cfg = load_config(args.config, args.overrides)
    seed = cfg.seed if args.seed is None else args.seed
    gen = cfg.build_generator()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.styles:
        if not hasattr(gen, "styles"):
            raise ConfigError(f"--styles: expected a generator with style templates (e.g. strokes), "
                              f"got {cfg.generator_name!r}")
        save_style_grid(gen, args.out, seed=seed, title=f"{Path(args.config).name}: every digit's styles")
        print(f"wrote {args.out}")
        return 0
    ds = render_dataset(gen, gen.space.to_vector(), args.n, seed)
    gen.close()
    save_grid(ds, args.out, n=args.n, title=f"{Path(args.config).name}  seed {seed}")
    print(f"wrote {args.out}")
    return 0


def cmd_run(args) -> int:
    from .config import ConfigError, load_config
    from .runner import run_loop

    if args.resume:
        if args.config or args.overrides or args.optimizer or args.budget or args.seed is not None:
            raise ConfigError("--resume: expected no CONFIG, --set, --optimizer, --budget or --seed "
                              "(a resumed run keeps its own config.toml)")
        if not (Path(args.resume) / "config.toml").is_file():
            raise ConfigError(f"--resume: expected a run directory with a checkpoint and config.toml, "
                              f"{Path(args.resume) / 'config.toml'} not found")
        cfg = load_config(Path(args.resume) / "config.toml")
        out = args.resume
    else:
        if not args.config:
            raise ConfigError("config: expected an experiment TOML (or --resume RUN_DIR)")
        overrides = list(args.overrides)
        if args.optimizer:
            overrides.append(f"loop.optimizer={json.dumps(args.optimizer)}")
        if args.budget:
            overrides.append(f"loop.budget={args.budget}")
        if args.seed is not None:
            overrides.append(f"seed={args.seed}")
        cfg = load_config(args.config, overrides)
        out = args.out or str(Path("out") / "runs" / f"{Path(args.config).stem}-{cfg.loop.optimizer}-s{cfg.seed}")
    best = run_loop(cfg, out, resume=bool(args.resume), address=args.address)
    print(f"{best['optimizer']}: val {best['metric']} {best['val']:.4f}, test {best['metric']} {best['test']:.4f} "
          f"({best['rounds']} rounds); run directory {out} (best.json, rounds.jsonl); "
          f"`dropt report {out}` draws its plots")
    return 0


def cmd_tune(args) -> int:
    from .config import load_config
    from .tune import run_tune

    cfg = load_config(args.config, args.overrides)
    out = args.out or str(Path("out") / "tune" / f"{Path(args.config).stem}-{args.scheduler}")
    res = run_tune(cfg, scheduler=args.scheduler, budget=args.budget, out=out, address=args.address, rungs=args.rungs)
    print(f"tune ({args.scheduler}): {res['trials']} trials, best real val {res['best_val']:.4f} after "
          f"{res['best_steps']} steps; best θ in {Path(out) / 'best.json'}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    out = write_report(args.run_dir, n_samples=args.n)
    print(f"wrote {out / 'summary.md'} and its plots (scores.png, parameters.png, samples_first.png, "
          f"samples_learned.png)")
    return 0


def cmd_export(args) -> int:
    from .report import export

    out = export(args.run_dir, args.n, args.out, workers=args.workers, address=args.address, overwrite=args.overwrite)
    print(f"wrote {args.n} images from the learned distribution of {args.run_dir} to {out}")
    return 0


def cmd_make_target(args) -> int:
    from .config import load_config
    from .target import make_target

    cfg = load_config(args.config, args.overrides)
    summary = make_target(cfg, args.out, workers=args.workers, address=args.address)
    print(f"wrote the target domain to {args.out}: val {summary['val']['images']} images "
          f"({summary['val']['objects']} objects), test {summary['test']['images']} images "
          f"({summary['test']['objects']} objects); hidden parameters in {Path(args.out) / 'target.json'}, "
          f"preview in {Path(args.out) / 'preview.png'} ({summary['seconds']:.1f} s)")
    return 0


def cmd_eval(args) -> int:
    from evaluator.base import Fidelity
    from evaluator.detection import DetectionEvaluator
    from evaluator.real import load_coco_real
    from generator.dataset import Dataset

    synthetic = Dataset.read_coco(args.synthetic)
    real = load_coco_real(args.real, seed=args.split_seed)
    ev = DetectionEvaluator(real, device=args.device, threads=args.threads)
    fid = Fidelity(steps=args.steps, batch_size=args.batch_size, images=args.images)

    def progress(step: int, total: int, loss: float) -> None:
        if not args.json and (step == total or step % max(total // 10, 1) < max(total // 20, 1)):
            print(f"training: step {step}/{total}  loss {loss:.3f}", file=sys.stderr, flush=True)

    if not args.json:
        print(f"training the detector on {args.synthetic} ({len(synthetic)} images) on {ev.device}; "
              f"scoring on {real.describe()}", file=sys.stderr)
    m = ev.evaluate(synthetic, fid, args.seed, splits=("val", "test"), progress=progress)
    if args.json:
        print(json.dumps({"synthetic": args.synthetic, "real": args.real, "steps": args.steps, "seed": args.seed,
                          **m.to_dict()}))
        return 0
    for split in ("val", "test"):
        print(f"{split:4s} ({len(getattr(real, split))} images): mAP@[.5:.95] {m.extras[f'{split}_map']:.3f}  "
              f"AP50 {m.extras[f'{split}_ap50']:.3f}")
    print(f"trained {args.steps} steps on {int(m.extras['train_images'])} images in {m.timings['train']:.1f} s")
    return 0


def _bench_loop(args) -> int:
    from .bench_loop import (DEFAULT_CONTROLLERS, FULL_CONTROLLERS, QUICK_CONTROLLERS, SUFFIX, Plan, bench_loop,
                             format_table)

    def names(text: str | None, default) -> tuple[str, ...]:
        return tuple(x.strip() for x in text.split(",") if x.strip()) if text else tuple(default)

    try:
        seeds = tuple(int(x) for x in names(args.seeds, (0, 1) if args.quick else (0, 1, 2)))
    except ValueError:
        print(f"dropt bench loop: error: --seeds: expected comma-separated integers, got {args.seeds!r}",
              file=sys.stderr)
        return EXIT_USAGE
    scale = "quick" if args.quick else "full" if args.full else "default"
    controllers = names(args.controllers, {"quick": QUICK_CONTROLLERS, "default": DEFAULT_CONTROLLERS,
                                           "full": FULL_CONTROLLERS}[scale])
    plan = Plan(tasks=names(args.tasks, ()), controllers=controllers, seeds=seeds, scale=scale,
                out=Path(args.out or f"out/bench-loop{SUFFIX[scale]}"), report_only=args.report_only)
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        res = bench_loop(plan, log=log)
    except RuntimeError as e:
        print(f"dropt bench loop: error: {e}", file=sys.stderr)
        return 1
    name = "result" + plan.suffix + ("" if args.tasks == "digits,shapes" else f"-{'-'.join(plan.tasks)}")
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / f"{name}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res) if args.json else format_table(res))
    return 0


def cmd_bench(args) -> int:
    if args.bench == "loop":
        return _bench_loop(args)
    if args.bench == "evaluator":
        from .bench_evaluator import bench_evaluator

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
        from .bench_render import MODES, bench_render, per_core_images, summary_lines

        try:
            sizes = tuple(int(s) for s in args.sizes.split(","))
        except ValueError:
            print(f"dropt bench render: error: --sizes: expected comma-separated integers, got {args.sizes!r}",
                  file=sys.stderr)
            return EXIT_USAGE
        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
        if not modes or any(m not in MODES for m in modes):
            print(f"dropt bench render: error: --modes: expected a comma-separated subset of "
                  f"{','.join(MODES)}, got {args.modes!r}", file=sys.stderr)
            return EXIT_USAGE
        log = (lambda *a, **k: None) if args.json else print
        if not args.json:
            print(f"dropt bench render: {args.n} images per core per figure (pyrender, naive: "
                  f"{per_core_images(args.n, 'naive')}), RGB + masks + boxes"
                  + (" + depth" if args.depth else ""))
        res = bench_render(sizes=sizes, n=args.n, workers=args.workers, modes=modes, repeats=args.repeats,
                           depth=args.depth, log=log)
        if args.json:
            print(json.dumps(res))
        else:
            print("\n".join(summary_lines(res)))
        return 0
    return EXIT_USAGE


def cmd_plugins(args) -> int:
    """Every registered generator, evaluator, controller and signal, with where it comes from."""
    from .registry import KINDS, lookup, names

    for kind in KINDS:
        print(f"{kind}s:")
        for name in names(kind):
            cls = lookup(kind, name)
            signals = f"  signals {sorted(cls.signals)}" if kind == "controller" else ""
            print(f"  {name:<24} {cls.__module__}:{cls.__qualname__}{signals}")
    return 0


def cmd_config(args) -> int:
    from .schema import reference_markdown

    print(reference_markdown(), end="")
    return 0


COMMANDS = {"config": cmd_config, "plugins": cmd_plugins, "run": cmd_run, "tune": cmd_tune, "report": cmd_report, "export": cmd_export, "render": cmd_render, "preview": cmd_preview, "make-target": cmd_make_target, "eval": cmd_eval,
            "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from evaluator.base import EvaluatorError
    from generator.dataset import DatasetError
    from generator.space import SpaceError

    from .errors import EXIT_FAILURE, DroptError

    try:
        return COMMANDS[args.command](args)
    except DroptError as e:         # usage errors exit 2, runtime failures 1; one line each
        print(f"dropt {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except (SpaceError, DatasetError, EvaluatorError) as e:
        print(f"dropt {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:   # a path the user gave that cannot be read or written
        where = f" {e.filename}" if e.filename else ""
        print(f"dropt {args.command}: error:{where} {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"dropt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
