"""`dropt tune`: multi-fidelity search with Ray Tune (ASHA, PBT)."""

from __future__ import annotations


from pathlib import Path

from .options import add_address, add_config, path, positive_int, text


def add(sub) -> None:
    p = sub.add_parser("tune", help="multi-fidelity search with Ray Tune: ASHA stops, PBT clones distributions")
    add_config(p)
    p.add_argument("--scheduler", choices=("asha", "pbt"), default="asha")
    p.add_argument("--budget", type=positive_int, default=16, help="trials (default 16)")
    p.add_argument("--rungs", type=positive_int, default=4,
                   help="training rungs of evaluator.steps steps each, reported after each (default 4)")
    p.add_argument("--out", type=path, default=None,
                   help="Tune's experiment directory (default out/tune/<config>-<scheduler>)")
    p.add_argument("--storage", type=text("a path or a URI"), default=None,
                   help="where Tune keeps trial checkpoints (PBT): a URI (s3://…) or a "
                        "path every node shares (default: beside --out)")
    add_address(p)


def cmd_tune(args) -> int:
    from ...config import load_config
    from ..tune import run_tune

    cfg = load_config(args.config, args.overrides)
    out = args.out or str(Path("out") / "tune" / f"{Path(args.config).stem}-{args.scheduler}")
    res = run_tune(cfg, scheduler=args.scheduler, budget=args.budget, out=out, address=args.address, rungs=args.rungs,
                   storage=args.storage)
    print(f"tune ({args.scheduler}): {res['trials']} trials, best real val {res['best_val']:.4f} after "
          f"{res['best_steps']} steps; best θ in {Path(out) / 'best.json'}")
    return 0


COMMANDS = {"tune": cmd_tune}
