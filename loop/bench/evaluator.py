"""``dropt bench evaluator``: sanity figures of the downstream models.

- the oracle: the detector trained on images of the hidden target domain itself, scored on that
  domain's test split (the ceiling later benchmarks compare with);
- digits: the classifier trained on the real val split (the real-data ceiling) and on synthetic
  digits from the default distribution (the starting point the loop must improve), both scored on
  the real test split.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from evaluator.base import Fidelity
from evaluator.classification import ClassificationEvaluator
from evaluator.detection import DetectionEvaluator
from evaluator.real import RealSplits, load_digits_real
from generator.base import render_dataset

from ..config import load_config
from ..engine.render_pool import RenderPool
from ..engine.target import render_target_split, target_settings

TARGET_CONFIG = "experiments/shapes/target.toml"
DIGITS_CONFIG = "experiments/digits/default.toml"


def _progress(log: Callable[..., None], label: str):
    def show(step: int, total: int, loss: float) -> None:
        if step == total or step % max(total // 5, 1) == 0:
            log(f"  {label}: step {step}/{total}  loss {loss:.3f}")
    return show


def bench_oracle(*, config: str = TARGET_CONFIG, steps: int = 1200, batch_size: int = 32, seed: int = 0,
                 threads: int | None = 2, workers: int | None = None, log: Callable[..., None] = print) -> dict[str, Any]:
    cfg = load_config(config)
    settings = target_settings(cfg)
    t0 = time.perf_counter()
    with RenderPool(cfg, workers=workers) as pool:
        train = render_target_split(pool, cfg, "train", settings.train)
        val = render_target_split(pool, cfg, "val", settings.val)
        test = render_target_split(pool, cfg, "test", settings.test)
    render_s = time.perf_counter() - t0
    log(f"oracle: rendered {len(train)} train / {len(val)} val / {len(test)} test images of {config} "
        f"in {render_s:.1f} s")
    ev = DetectionEvaluator(RealSplits(val, test, config), threads=threads)
    m = ev.evaluate(train, Fidelity(steps=steps, batch_size=batch_size), seed, splits=("val", "test"),
                    progress=_progress(log, "oracle detector"))
    res = {"oracle_ap50": m.extras["test_ap50"], "oracle_map": m.extras["test_map"],
           "oracle_val_ap50": m.extras["val_ap50"], "oracle_train_seconds": m.timings["train"],
           "oracle_train_images": len(train), "oracle_steps": steps, "oracle_batch_size": batch_size,
           "oracle_images_per_second": steps * batch_size / m.timings["train"], "oracle_render_seconds": render_s}
    log(f"oracle: test AP50 {res['oracle_ap50']:.3f}  mAP {res['oracle_map']:.3f}  "
        f"(val AP50 {res['oracle_val_ap50']:.3f}); trained {steps} steps × {batch_size} in "
        f"{res['oracle_train_seconds']:.1f} s ({res['oracle_images_per_second']:.0f} img/s)")
    return res


def bench_digits(*, config: str = DIGITS_CONFIG, synthetic: int = 5000, steps: int = 1500, batch_size: int = 64,
                 seed: int = 0, threads: int | None = 2, log: Callable[..., None] = print) -> dict[str, Any]:
    real = load_digits_real(seed=0)
    ev = ClassificationEvaluator(real, threads=threads)
    fid = Fidelity(steps=steps, batch_size=batch_size)
    m_real = ev.evaluate(real.val, fid, seed, splits=("val", "test"))
    log(f"digits: trained on the real val split ({len(real.val)} images): real test accuracy "
        f"{m_real.extras['test_accuracy']:.3f} ({m_real.timings['train']:.1f} s)")
    cfg = load_config(config)
    gen = cfg.build_generator()
    t0 = time.perf_counter()
    syn = render_dataset(gen, gen.space.to_vector(), synthetic, cfg.seed)
    render_s = time.perf_counter() - t0
    gen.close()
    m_syn = ev.evaluate(syn, fid, seed, splits=("val", "test"))
    log(f"digits: trained on {synthetic} synthetic digits of the default distribution (rendered in "
        f"{render_s:.1f} s): real test accuracy {m_syn.extras['test_accuracy']:.3f} ({m_syn.timings['train']:.1f} s)")
    return {"digits_real_acc": m_real.extras["test_accuracy"], "digits_synthetic_acc": m_syn.extras["test_accuracy"],
            "digits_synthetic_val_acc": m_syn.extras["val_accuracy"], "digits_synthetic_images": synthetic,
            "digits_steps": steps, "digits_real_train_seconds": m_real.timings["train"],
            "digits_synthetic_train_seconds": m_syn.timings["train"], "digits_render_seconds": render_s}


def bench_evaluator(*, oracle_steps: int = 1200, digits_steps: int = 1500, seed: int = 0, threads: int | None = 2,
                    workers: int | None = None, log: Callable[..., None] = print) -> dict[str, Any]:
    res = bench_oracle(steps=oracle_steps, seed=seed, threads=threads, workers=workers, log=log)
    res.update(bench_digits(steps=digits_steps, seed=seed, threads=threads, log=log))
    return res
