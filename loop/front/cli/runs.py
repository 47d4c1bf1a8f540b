"""`dropt report` and `dropt export`: what a finished run directory gives."""

from __future__ import annotations


from .options import add_address, add_overwrite, add_workers, grid_images, path, positive_int


def add(sub) -> None:
    p = sub.add_parser("report", help="plots (score per round, θ trajectories, sample grids) and summary.md of a run")
    p.add_argument("run_dir", type=path, metavar="RUN_DIR")
    p.add_argument("--n", type=grid_images, default=16, help="images per sample grid, 1 to 1024 (default 16)")
    p = sub.add_parser("export", help="write a COCO dataset from a run's learned distribution")
    p.add_argument("run_dir", type=path, metavar="RUN_DIR")
    p.add_argument("--n", type=positive_int, required=True, help="number of images")
    p.add_argument("--out", type=path, required=True, help="output directory")
    add_workers(p, "the run's"), add_overwrite(p), add_address(p)


def cmd_report(args) -> int:
    from ..report import write_report

    out = write_report(args.run_dir, n_samples=args.n)
    print(f"wrote {out / 'summary.md'} and its plots (scores.png, parameters.png, samples_first.png, "
          f"samples_learned.png)")
    return 0


def cmd_export(args) -> int:
    from ..report import export

    out = export(args.run_dir, args.n, args.out, workers=args.workers, address=args.address, overwrite=args.overwrite)
    print(f"wrote {args.n} images from the learned distribution of {args.run_dir} to {out}")
    return 0


COMMANDS = {"report": cmd_report, "export": cmd_export}
