"""`dropt render`: a COCO dataset from a config's distribution."""

from __future__ import annotations

import time
from pathlib import Path

from .options import add_address, add_config, add_overwrite, add_workers, non_negative_int, path, positive_int


def add(sub) -> None:
    p = sub.add_parser("render", help="render a COCO dataset from a config's distribution")
    add_config(p)
    p.add_argument("--n", type=positive_int, default=100, help="number of images (default 100)")
    p.add_argument("--seed", type=non_negative_int, default=None, help="seed (default: the config's)")
    p.add_argument("--out", type=path, required=True, help="output directory (new or empty)")
    add_overwrite(p), add_workers(p), add_address(p)


def cmd_render(args) -> int:
    from ...config import load_config
    from ...engine.cluster import render_workers
    from ...engine.render_pool import RenderPool
    from ...memory import check_config_images

    from generator.out_dir import check_out_dir

    cfg = load_config(args.config, args.overrides)
    seed = cfg.seed if args.seed is None else args.seed
    workers = render_workers(cfg, args.workers, args.address)
    check_config_images(cfg, args.n)
    check_out_dir(Path(args.out), overwrite=args.overwrite)
    t0 = time.perf_counter()
    with RenderPool(cfg, workers=workers, address=args.address, progress=True) as pool:
        theta = pool.generator.space.to_vector()
        ds = pool.render(theta, args.n, seed, info={"config": cfg.source})
    path = ds.write_coco_set(args.out, overwrite=args.overwrite)
    n_ann = sum(len(a) for a in ds.annotations)
    print(f"wrote {len(ds)} images, {n_ann} annotations to {path.parent} "
          f"({len(ds) / (time.perf_counter() - t0):.0f} img/s including start-up)")
    return 0


COMMANDS = {"render": cmd_render}
