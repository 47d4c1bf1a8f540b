"""`dropt make-target`: a hidden target domain's val and test sets."""

from __future__ import annotations


from pathlib import Path

from .options import add_address, add_config, add_overwrite, add_workers, path


def add(sub) -> None:
    p = sub.add_parser("make-target", help="render a hidden target domain's val and test sets (stand-in real data)")
    add_config(p)
    p.add_argument("--out", type=path, required=True,
                   help="output directory (gets val/, test/, target.json, preview.png)")
    add_overwrite(p), add_workers(p), add_address(p)


def cmd_make_target(args) -> int:
    from ...config import load_config
    from ...engine.cluster import render_workers
    from ...engine.target import make_target

    cfg = load_config(args.config, args.overrides)
    summary = make_target(cfg, args.out, workers=render_workers(cfg, args.workers, args.address), address=args.address,
                          overwrite=args.overwrite)
    print(f"wrote the target domain to {args.out}: val {summary['val']['images']} images "
          f"({summary['val']['objects']} objects), test {summary['test']['images']} images "
          f"({summary['test']['objects']} objects); hidden parameters in {Path(args.out) / 'target.json'}, "
          f"preview in {Path(args.out) / 'preview.png'} ({summary['seconds']:.1f} s)")
    return 0


COMMANDS = {"make-target": cmd_make_target}
