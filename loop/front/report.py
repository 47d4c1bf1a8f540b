"""``dropt report RUN_DIR``: PNG plots and a short summary.md of a run; ``dropt export``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ..config import ConfigError, ExperimentConfig, load_config
from ..run.run_dir import RunDir, RunDirError

MAX_PARAMETER_PANELS = 24


class _Timing(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    run_wall: float


class BestJson(BaseModel):
    """The keys of best.json that the report and the export read, with their types: a damaged or
    hand-edited file is refused in one line naming the key, not a traceback half-way through the
    plots. The wall time and memory keys are optional (runs before them lack them)."""
    model_config = ConfigDict(strict=True, extra="allow")
    metric: str
    optimizer: str
    selected: str
    val: float
    test: float
    search_val: float | None
    test_per_seed: list[float]
    theta: dict[str, float]
    timing: _Timing | None = None
    outside_render_and_training_share: float | None = None
    driver_peak_rss_mb: float | None = None


def check_best(best: dict[str, Any], path: Path) -> None:
    """"best.json: KEY: expected X, got Y" for the first key of ``best`` that :class:`BestJson` refuses."""
    from generator.space import short_repr

    try:
        BestJson.model_validate(best)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            raise RunDirError(f"{path}: {key}: expected a value, missing") from None
        what = err["msg"].removeprefix("Input should be ")
        raise RunDirError(f"{path}: {key}: expected {what}, got {short_repr(err['input'])}") from None


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _load(run: str | Path) -> tuple[RunDir, ExperimentConfig, list[dict[str, Any]], dict[str, Any] | None]:
    rd = RunDir(run)
    if not rd.config.is_file():
        raise ConfigError(f"RUN_DIR: expected a run directory with config.toml, {rd.config} not found")
    rounds = rd.read_rounds(warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    if not rounds:
        raise ConfigError(f"RUN_DIR: expected at least one finished round in {rd.rounds}, found none")
    best = rd.load_best()
    if best is not None:
        check_best(best, rd.best)
    return rd, load_config(rd.config), rounds, best


def _target_theta(cfg: ExperimentConfig) -> dict[str, float]:
    """The hidden target's θ when the real set was made by make-target (it leaves target.json)."""
    path = Path(cfg.evaluator.real) / "target.json"
    if path.is_file():
        return json.loads(path.read_text()).get("theta", {})
    return {}


def plot_scores(rounds: list[dict[str, Any]], path: Path, metric: str) -> None:
    plt = _plt()
    r = np.array([x["round"] + 1 for x in rounds])
    s = np.array([np.nan if x["score"] is None else x["score"] for x in rounds], float)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.scatter(r, s, s=12, alpha=0.5, label="candidates")
    per_round = [np.nanmax(s[r == k]) if np.isfinite(s[r == k]).any() else np.nan for k in np.unique(r)]
    ax.plot(np.unique(r), np.fmax.accumulate(np.nan_to_num(per_round, nan=-np.inf)), color="C3", label="best so far")
    ax.set_xlabel("round")
    ax.set_ylabel(f"real val {metric}")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_parameters(rounds: list[dict[str, Any]], path: Path, target: dict[str, float]) -> list[str]:
    """One panel per θ entry that moved most (normalised by its spread); the hidden target dashed."""
    plt = _plt()
    names = list(rounds[0]["theta"])
    r = np.array([x["round"] + 1 for x in rounds])
    values = np.array([[x["theta"][n] for n in names] for x in rounds], float)
    means = np.array([values[r == k].mean(0) for k in np.unique(r)])
    span = np.ptp(values, axis=0)
    scale = np.maximum(np.abs(values).max(0), 1e-9)
    order = [i for i in np.argsort(-(np.abs(means[-1] - means[0]) + 1e-3 * span) / scale)][:MAX_PARAMETER_PANELS]
    cols = 4
    rows = max(1, int(np.ceil(len(order) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.1 * rows), squeeze=False)
    for ax, i in zip(axes.flat, order):
        ax.scatter(r, values[:, i], s=5, alpha=0.3)
        ax.plot(np.unique(r), means[:, i], color="C0")
        if names[i] in target:
            ax.axhline(target[names[i]], color="C3", ls="--", lw=1)
        ax.set_title(names[i], fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(order):]:
        ax.axis("off")
    fig.suptitle("θ per round (line: mean of candidates; dashed: hidden target)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [names[i] for i in order]


def write_report(run: str | Path, *, n_samples: int = 16) -> Path:
    from generator.base import render_dataset
    from generator.preview import save_grid

    from ..memory import check_config_images

    rd, cfg, rounds, best = _load(run)
    check_config_images(cfg, n_samples)
    out = rd.report
    out.mkdir(parents=True, exist_ok=True)
    metric = best["metric"] if best else "score"
    plot_scores(rounds, out / "scores.png", metric)
    target = _target_theta(cfg)
    moved = plot_parameters(rounds, out / "parameters.png", target)
    gen = cfg.build_generator()
    space = gen.space
    first = space.to_vector()
    learned = space.from_named(best["theta"]) if best else space.from_named(rounds[-1]["theta"])
    for name, theta in (("samples_first", first), ("samples_learned", learned)):
        ds = render_dataset(gen, theta, n_samples, cfg.seed)
        save_grid(ds, out / f"{name}.png", n=n_samples, title=name.replace("_", ": "))
    gen.close()
    lines = [f"# dropt run `{rd.root}`", "",
             f"- optimizer: **{cfg.loop.optimizer}**, {len({x['round'] for x in rounds})} rounds × "
             f"{cfg.loop.candidates} candidates, seed {cfg.seed}",
             f"- real set: `{cfg.evaluator.real}` ({cfg.evaluator.task}, metric {metric})"]
    if best:
        lines += [f"- best distribution ({best['selected']}): **val {best['val']:.4f}, test {best['test']:.4f}** "
                  f"(mean of {len(best['test_per_seed'])} retrainings; best val seen during search "
                  f"{best['search_val']})"]
        if None not in (best.get("timing"), best.get("outside_render_and_training_share"),
                        best.get("driver_peak_rss_mb")):
            lines.append(f"- wall time {best['timing']['run_wall']:.0f} s; share outside rendering and training "
                         f"{100 * best['outside_render_and_training_share']:.1f} %; driver peak memory "
                         f"{best['driver_peak_rss_mb']:.0f} MB")
    else:
        lines.append("- the run has not finished: no best.json yet")
    lines += ["", "![scores](scores.png)", "", "![parameters](parameters.png)", "",
              "| first distribution | learned distribution |", "|---|---|",
              "| ![first](samples_first.png) | ![learned](samples_learned.png) |", "",
              "## Parameters that moved most", "", "| θ entry | first | learned | hidden target |", "|---|---|---|---|"]
    first_named, learned_named = space.named(first), space.named(learned)
    for n in moved[:12]:
        t = f"{target[n]:.4g}" if n in target else "–"
        lines.append(f"| `{n}` | {first_named[n]:.4g} | {learned_named[n]:.4g} | {t} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return out


def export(run: str | Path, n: int, out: str | Path, *, workers: int | None = None, address: str | None = None,
           overwrite: bool = False) -> Path:
    """A COCO dataset of ``n`` images from the run's learned distribution."""
    from generator.out_dir import check_out_dir

    from ..engine.render_pool import RenderPool

    from ..engine.cluster import render_workers
    from ..memory import check_config_images

    rd, cfg, rounds, best = _load(run)
    if best is None:
        raise ConfigError(f"RUN_DIR: expected a finished run with best.json, {rd.best} not found")
    workers = render_workers(cfg, workers, address)
    check_config_images(cfg, n)
    check_out_dir(Path(out), overwrite=overwrite)     # before rendering, not after
    with RenderPool(cfg, workers=workers, address=address, progress=True) as pool:
        theta = pool.generator.space.from_named(best["theta"])
        ds = pool.render(theta, n, cfg.seed, info={"run": str(rd.root), "optimizer": best["optimizer"]})
    return ds.write_coco_set(out, overwrite=overwrite).parent
