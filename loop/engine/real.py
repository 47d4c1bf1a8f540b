"""The real splits a run scores against: loaded (or made from a hidden target), then checked."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from evaluator.real import RealSplits, check_real_splits, load_coco_real, load_digits_real
from generator.dataset import DatasetError

from ..config import ConfigError, ExperimentConfig


#: fewer real val images than this get a warning (a score on a handful of images is mostly noise)
FEW_VAL_IMAGES = 20


def load_real(cfg: ExperimentConfig, *, make_missing: bool = True, log=print,
              categories: Sequence[str] | None = None) -> RealSplits:
    """The real splits of ``[evaluator] real``: "digits", or a COCO dir (made from
    ``target_config`` with make-target first when it does not exist yet). With the generator's
    ``categories`` the set is checked against them once, here (see :func:`check_real`)."""
    real = _read_real(cfg, make_missing=make_missing, log=log)
    return real if categories is None else check_real(real, categories, log=log)


def check_real(real: RealSplits, categories: Sequence[str], log=print) -> RealSplits:
    """A real set the loop can score against (:func:`evaluator.real.check_real_splits`: what
    `dropt eval` checks too) with the generator's categories by name (a set whose category ids
    are permuted is put in the generator's order)."""
    try:
        check_real_splits(real, "evaluator.real")
    except DatasetError as e:
        raise ConfigError(str(e)) from None
    names = list(real.val.categories)
    if sorted(names) != sorted(categories):
        missing = [c for c in categories if c not in names]
        extra = [c for c in names if c not in categories]
        raise ConfigError(f"evaluator.real: expected the generator's categories {list(categories)} (matched by "
                          f"name), got {names}" + (f"; missing {missing}" if missing else "")
                          + (f"; not drawn by the generator {extra}" if extra else ""))
    if len(real.val) < FEW_VAL_IMAGES:
        log(f"warning: evaluator.real has only {len(real.val)} val images; its score is mostly noise")
    if names != list(categories):
        real = RealSplits(real.val.with_categories(categories), real.test.with_categories(categories), real.source)
    return real


def _read_real(cfg: ExperimentConfig, *, make_missing: bool, log) -> RealSplits:
    ev = cfg.evaluator
    if ev.real == "digits":
        return load_digits_real(seed=0)
    root = Path(ev.real)
    if not root.exists() and ev.target_config and make_missing:
        from ..config import load_config
        from .target import make_target

        log(f"real set {root} not found: making it from the hidden target domain {ev.target_config}")
        make_target(load_config(ev.target_config), root, progress=False)
    if not root.exists():
        raise ConfigError(f"evaluator.real: expected an existing real set (a COCO dir or 'digits'), {root} not found"
                          + ("" if ev.target_config else "; set evaluator.target_config to make one"))
    return load_coco_real(root)
