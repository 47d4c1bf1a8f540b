"""`dropt preview`: an image grid with boxes and class names."""

from __future__ import annotations


from pathlib import Path

from .options import add_config, grid_images, non_negative_int, path


def add(sub) -> None:
    p = sub.add_parser("preview", help="write an image grid with boxes and class names")
    add_config(p)
    p.add_argument("--out", type=path, required=True, help="image path: .png (or another format matplotlib writes)")
    p.add_argument("--n", type=grid_images, default=16, help="number of images, 1 to 1024 (default 16)")
    p.add_argument("--seed", type=non_negative_int, default=None)
    p.add_argument("--styles", action="store_true",
                   help="a row per digit style instead (generators with style templates, e.g. strokes)")


def check_image_file(out: str) -> None:
    """``out`` ends in a format matplotlib writes (pgf aside: it needs a TeX installation);
    without this a typo fails after rendering, and no extension silently writes a PNG."""
    from matplotlib.backend_bases import FigureCanvasBase

    from ...config import ConfigError

    formats = sorted(set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"})
    if Path(out).suffix.lower().lstrip(".") not in formats:
        raise ConfigError(f"--out: expected a file name ending in {', '.join('.' + f for f in formats)}, "
                          f"got {out!r}")


def cmd_preview(args) -> int:
    from generator.base import render_dataset

    from ...config import ConfigError, load_config
    from ...memory import check_config_images
    from generator.preview import save_grid, save_style_grid

    check_image_file(args.out)
    cfg = load_config(args.config, args.overrides)
    check_config_images(cfg, args.n)
    seed = cfg.seed if args.seed is None else args.seed
    gen = cfg.build_generator()
    if args.styles and not hasattr(gen, "styles"):
        raise ConfigError(f"--styles: expected a generator with style templates (e.g. strokes), "
                          f"got {cfg.generator_name!r}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.styles:
        save_style_grid(gen, args.out, seed=seed, title=f"{Path(args.config).name}: every digit's styles")
        print(f"wrote {args.out}")
        return 0
    ds = render_dataset(gen, gen.space.to_vector(), args.n, seed)
    gen.close()
    save_grid(ds, args.out, n=args.n, title=f"{Path(args.config).name}  seed {seed}")
    print(f"wrote {args.out}")
    return 0


COMMANDS = {"preview": cmd_preview}
