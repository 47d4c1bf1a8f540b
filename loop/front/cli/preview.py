"""`dropt preview`: an image grid with boxes and class names."""

from __future__ import annotations


from pathlib import Path

from .options import add_config, non_negative_int, positive_int


def add(sub) -> None:
    p = sub.add_parser("preview", help="write an image grid with boxes and class names")
    add_config(p)
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--n", type=positive_int, default=16, help="number of images (default 16)")
    p.add_argument("--seed", type=non_negative_int, default=None)
    p.add_argument("--styles", action="store_true",
                   help="a row per digit style instead (generators with style templates, e.g. strokes)")


def cmd_preview(args) -> int:
    from generator.base import render_dataset

    from ...config import ConfigError, load_config
    from generator.preview import save_grid, save_style_grid

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


COMMANDS = {"preview": cmd_preview}
