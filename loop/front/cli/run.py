"""`dropt run`: the closed loop, new or resumed."""

from __future__ import annotations

import json
from pathlib import Path

from .options import add_address, non_negative_int, path, positive_int, text


def add(sub) -> None:
    p = sub.add_parser("run", help="run the closed loop: learn the generator's distribution from real-val scores")
    p.add_argument("config", nargs="?", type=path, help="experiment TOML (not needed with --resume)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--optimizer", type=text("a controller name"), default=None,
                   help="controller (default: the config's loop.optimizer)")
    p.add_argument("--budget", type=positive_int, default=None, help="rounds (default: the config's loop.budget)")
    p.add_argument("--seed", type=non_negative_int, default=None, help="run seed (default: the config's)")
    p.add_argument("--out", type=path, default=None,
                   help="run directory (default: out/runs/<config>-<optimizer>-s<seed>)")
    p.add_argument("--resume", type=path, default=None, metavar="RUN_DIR", help="continue an interrupted run")
    add_address(p)


def cmd_run(args) -> int:
    from ...config import PLACEMENT_KEYS, ConfigError, is_placement_key, load_config
    from ...registry import lookup
    from ...run.runner import run_loop

    if args.resume:
        if args.out is not None:
            raise ConfigError(f"--resume: expected no --out (a run resumes in its own directory, "
                              f"{args.resume}), got --out {args.out!r}")
        if args.config or args.optimizer is not None or args.budget or args.seed is not None:
            raise ConfigError("--resume: expected no CONFIG, --optimizer, --budget or --seed "
                              "(a resumed run keeps its own config.toml)")
        for o in args.overrides:
            if not is_placement_key(o.partition("=")[0].strip()):
                raise ConfigError(f"--resume --set: expected a key of where the work runs ({', '.join(PLACEMENT_KEYS)}"
                                  f"; the scores do not depend on them), got {o!r}")
        if not (Path(args.resume) / "config.toml").is_file():
            raise ConfigError(f"--resume: expected a run directory with a checkpoint and config.toml, "
                              f"{Path(args.resume) / 'config.toml'} not found")
        cfg = load_config(Path(args.resume) / "config.toml", args.overrides)
        out = args.resume
    else:
        if not args.config:
            raise ConfigError("config: expected an experiment TOML (or --resume RUN_DIR)")
        overrides = list(args.overrides)
        if args.optimizer is not None:
            overrides.append(f"loop.optimizer={json.dumps(args.optimizer)}")
        if args.budget:
            overrides.append(f"loop.budget={args.budget}")
        if args.seed is not None:
            overrides.append(f"seed={args.seed}")
        cfg = load_config(args.config, overrides)
        # the controller exists before its name makes a path (a name like /../../x would escape)
        lookup("controller", cfg.loop.optimizer, key="--optimizer" if args.optimizer is not None else None)
        out = args.out or str(Path("out") / "runs" / f"{Path(args.config).stem}-{cfg.loop.optimizer}-s{cfg.seed}")
    best = run_loop(cfg, out, resume=bool(args.resume), address=args.address)
    print(f"{best['optimizer']}: val {best['metric']} {best['val']:.4f}, test {best['metric']} {best['test']:.4f} "
          f"({best['rounds']} rounds); run directory {out} (best.json, rounds.jsonl); "
          f"`dropt report {out}` draws its plots")
    return 0


COMMANDS = {"run": cmd_run}
