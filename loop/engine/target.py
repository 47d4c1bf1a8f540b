"""Hidden target domains for controlled experiments (Learning to Simulate, Meta-Sim).

A target config is an ordinary experiment config whose ``[space]`` sets the distribution the
optimizer must discover, plus a ``[target]`` table: split sizes and a fixed camera model
(white-balance cast, gamma, blur, noise, JPEG) that no search space fully covers. ``make_target``
renders ``val`` and ``test`` COCO sets from it, which then play the part of real data; the hidden
parameters go to ``target.json`` for reports, never to the optimizer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from generator.base import derive_seed
from generator.dataset import Dataset
from generator.sensor import apply_camera_model

from ..config import ExperimentConfig, TargetSettings
from .render_pool import RenderPool

#: per-split seed keys: the splits never share an image seed
SPLIT_KEYS = {"val": 0x0A1, "test": 0x7E57, "train": 0x7A1}


def target_settings(cfg: ExperimentConfig) -> TargetSettings:
    return cfg.target if cfg.target is not None else TargetSettings()


def split_seed(cfg: ExperimentConfig, split: str) -> int:
    return derive_seed(cfg.seed, SPLIT_KEYS[split])


def render_target_split(pool: RenderPool, cfg: ExperimentConfig, split: str, n: int) -> Dataset:
    """``n`` images of the target domain for ``split``, through the target's camera model."""
    camera = target_settings(cfg).camera.model_dump()
    seed = split_seed(cfg, split)
    ds = pool.render(pool.generator.space.to_vector(), n, seed, info={"split": split})
    ds.images = [apply_camera_model(im, np.random.default_rng(derive_seed(seed, 2, i)), **camera)
                 for i, im in enumerate(ds.images)]
    ds.depths = None    # real data has no free depth
    ds.info.update({"camera": camera, "target_config": cfg.source})
    return ds


def hidden_parameters(cfg: ExperimentConfig, generator) -> dict[str, Any]:
    """What the optimizer is not told: the target's θ as named values, and its camera."""
    space = generator.space
    return {"seed": cfg.seed, "config": cfg.source, "generator": generator.config(),
            "theta": {k: round(float(v), 6) for k, v in space.named(space.to_vector()).items()},
            "space": space.to_dict(), "camera": target_settings(cfg).camera.model_dump()}


def make_target(cfg: ExperimentConfig, out: str | Path, *, workers: int | None = None,
                address: str | None = None, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Write ``out/val``, ``out/test`` (COCO), ``out/target.json`` and ``out/preview.png``, all at
    once: into a new or empty folder, or with ``overwrite`` in place of an older target."""
    from generator.out_dir import TARGET, check_out_dir, write_folder

    out = Path(out)
    check_out_dir(out, overwrite=overwrite, layout=TARGET)      # before rendering, not after
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"out": str(out)}
    with RenderPool(cfg, workers=workers, address=address, progress=progress) as pool:
        splits = {split: render_target_split(pool, cfg, split, n)
                  for split, n in (("val", target_settings(cfg).val), ("test", target_settings(cfg).test))}
        hidden = hidden_parameters(cfg, pool.generator)
    write_folder(out, lambda folder: _write_target(folder, cfg, splits, hidden), overwrite=overwrite, layout=TARGET)
    for split, ds in splits.items():
        summary[split] = {"images": len(ds), "objects": sum(len(a) for a in ds.annotations)}
    summary["seconds"] = time.perf_counter() - t0
    return summary


def _write_target(folder: Path, cfg: ExperimentConfig, splits: dict[str, Dataset], hidden: dict[str, Any]) -> None:
    from generator.preview import save_grid

    for split, ds in splits.items():
        ds.write_coco(folder / split)
    val = splits["val"]
    save_grid(val, folder / "preview.png", n=min(16, len(val)), title=f"target domain {Path(cfg.source).name}")
    (folder / "target.json").write_text(json.dumps(hidden, indent=1, sort_keys=True))
