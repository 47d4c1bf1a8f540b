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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dropt", description="Closed-loop learned domain randomization.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("render", help="render a COCO dataset from a config's distribution")
    _add_config(p)
    p.add_argument("--n", type=_positive_int, default=100, help="number of images (default 100)")
    p.add_argument("--seed", type=_non_negative_int, default=None, help="seed (default: the config's)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--workers", type=_non_negative_int, default=None,
                   help="Ray render actors (default: the config's render.workers; 0 = in-process)")
    p.add_argument("--address", default=None, help="join this Ray cluster instead of starting a local Ray")

    p = sub.add_parser("preview", help="write an image grid with boxes and class names")
    _add_config(p)
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--n", type=_positive_int, default=16, help="number of images (default 16)")
    p.add_argument("--seed", type=_non_negative_int, default=None)

    p = sub.add_parser("bench", help="benchmarks that print their figures")
    bsub = p.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    b = bsub.add_parser("render", help="images/s: reuse renderer vs naive loop, one process vs all cores")
    b.add_argument("--n", type=_positive_int, default=400, help="images per measurement (default 400)")
    b.add_argument("--sizes", default="64,128", help="comma-separated image sizes (default 64,128)")
    b.add_argument("--workers", type=_positive_int, default=None, help="workers for the all-cores figure")
    b.add_argument("--repeats", type=_positive_int, default=2, help="runs per figure; the best is kept (default 2)")
    b.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------

def cmd_render(args) -> int:
    from .config import load_config
    from .render_pool import RenderPool

    cfg = load_config(args.config, args.overrides)
    seed = cfg.seed if args.seed is None else args.seed
    t0 = time.perf_counter()
    with RenderPool(cfg, workers=args.workers, address=args.address, progress=True) as pool:
        theta = pool.generator.space.to_vector()
        ds = pool.render(theta, args.n, seed, info={"config": cfg.source})
    path = ds.write_coco(args.out)
    n_ann = sum(len(a) for a in ds.annotations)
    print(f"wrote {len(ds)} images, {n_ann} annotations to {path.parent} "
          f"({len(ds) / (time.perf_counter() - t0):.0f} img/s including start-up)")
    return 0


def cmd_preview(args) -> int:
    from generator.base import render_dataset

    from .config import load_config
    from .preview import save_grid

    cfg = load_config(args.config, args.overrides)
    seed = cfg.seed if args.seed is None else args.seed
    gen = cfg.build_generator()
    ds = render_dataset(gen, gen.space.to_vector(), args.n, seed)
    gen.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_grid(ds, args.out, n=args.n, title=f"{Path(args.config).name}  seed {seed}")
    print(f"wrote {args.out}")
    return 0


def cmd_bench(args) -> int:
    if args.bench == "render":
        from .bench_render import bench_render

        try:
            sizes = tuple(int(s) for s in args.sizes.split(","))
        except ValueError:
            print(f"dropt bench render: error: --sizes: expected comma-separated integers, got {args.sizes!r}",
                  file=sys.stderr)
            return EXIT_USAGE
        log = (lambda *a, **k: None) if args.json else print
        if not args.json:
            print(f"dropt bench render: {args.n} images per figure, RGB + depth + masks + boxes")
        res = bench_render(sizes=sizes, n=args.n, workers=args.workers, repeats=args.repeats, log=log)
        if args.json:
            print(json.dumps(res))
        else:
            for size in sizes:
                f = res[str(size)]
                print(f"{size}²: reuse/naive {f['speedup_vs_naive_one_process']:.2f}× (one process), "
                      f"{f['speedup_vs_naive_all_cores']:.2f}× (all cores); "
                      f"one process → {res['workers']} workers {f['scaling_all_cores']:.2f}×"
                      + (f", pool 1 → {res['workers']} workers {f['scaling_pool_workers']:.2f}×"
                         if "scaling_pool_workers" in f else ""))
        return 0
    return EXIT_USAGE


COMMANDS = {"render": cmd_render, "preview": cmd_preview, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from generator.dataset import DatasetError
    from generator.space import SpaceError

    from .config import ConfigError

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, SpaceError, DatasetError) as e:
        print(f"dropt {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"dropt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
