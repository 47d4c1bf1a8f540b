"""Experiment configuration: a TOML file validated into typed settings, with --set overrides."""

from __future__ import annotations

import copy
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.base import Generator
from generator.space import SpaceError


from .errors import ConfigError


TOP_LEVEL = {"seed", "generator", "space", "render", "target", "evaluator", "loop"}


@dataclass
class RenderSettings:
    """How datasets are rendered in parallel."""

    workers: int = 2          # Ray render actors; 0 renders in the calling process
    num_cpus: float = 1.0     # CPUs reserved per render actor
    num_gpus: float = 0.0     # GPUs per render actor (EGL on the GPU when > 0)
    chunk: int = 0            # images per actor call; 0 sizes calls from the dataset (see RenderPool)


CAMERA_DEFAULTS: dict[str, Any] = {"noise": 0.0, "blur": 0.0, "gamma": 1.0, "color_gain": [1.0, 1.0, 1.0],
                                   "jpeg_quality": None}


@dataclass
class TargetSettings:
    """A hidden target domain for controlled experiments (``dropt make-target``)."""

    val: int = 300            # images in the real-stand-in validation split (the search's reward)
    test: int = 500           # images in the test split (reported only)
    train: int = 2000         # images the oracle detector of ``dropt bench evaluator`` trains on
    camera: dict[str, Any] = field(default_factory=lambda: dict(CAMERA_DEFAULTS))  # see apply_camera_model


@dataclass
class EvaluatorSettings:
    """How each candidate distribution is scored."""

    task: str = "detection"          # "detection" (COCO AP), "classification" (accuracy) or "pkg.module:Class"
    real: str = "out/target"         # real set: a COCO dir (val/ + test/, or one set) or "digits"
    target_config: str | None = None  # made with `make-target` first when `real` does not exist yet
    score: str = "ap50"              # detection: "ap50" or "map"
    images: int = 400                # synthetic images per candidate
    steps: int = 300                 # training steps per candidate
    batch_size: int = 32
    threads: int = 1                 # torch threads per evaluation task
    num_cpus: float = 1.0            # Ray CPUs per evaluation task
    num_gpus: float = 0.0            # Ray GPUs per evaluation task (device "auto" then uses CUDA)
    device: str = "auto"
    width: int | None = None         # model width (None: the evaluator's default)
    gap_images: int = 200            # real val images the gap metrics compare against (metasim)
    final_seeds: int = 3             # retrain the best distribution with this many seeds for val/test
    final_steps: int | None = None   # steps of those final runs (None: 2 × steps)
    final_images: int | None = None  # images of those final runs (None: 2 × images)
    options: dict[str, Any] = field(default_factory=dict)   # more keyword options of the evaluator class
    ray: bool | None = None          # evaluation tasks on Ray (in parallel); None: when the render actors use Ray


@dataclass
class LoopSettings:
    """The closed loop: which controller, how many rounds, how many candidates per round."""

    optimizer: str = "reinforce"
    budget: int = 20                 # rounds
    candidates: int = 4              # θs proposed, rendered and scored per round
    options: dict[str, Any] = field(default_factory=dict)   # controller options
    keep_start: bool = True
    """A learning controller's final retraining also scores the config's own θ (where the search
    started) on the same final seeds and keeps it when its real val is higher: a search may fail
    to improve the data, but it never reports a worse distribution than the one it was given."""


@dataclass
class ExperimentConfig:
    seed: int
    generator_name: str
    generator_options: dict[str, Any]
    space: dict[str, Any]
    render: RenderSettings
    target: TargetSettings | None = None
    evaluator: EvaluatorSettings = field(default_factory=EvaluatorSettings)
    loop: LoopSettings = field(default_factory=LoopSettings)
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    source: str = ""

    def build_generator(self) -> Generator:
        try:
            from .registry import lookup

            gen = lookup("generator", self.generator_name)(**dict(self.generator_options))
        except TypeError as e:  # an unknown option passed to the generator's constructor
            raise ConfigError(f"generator: expected options accepted by {self.generator_name!r}, got {e}") from None
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.space:
            try:
                gen.space = gen.space.override(self.space)
            except SpaceError as e:
                raise ConfigError(f"space.{e}") from None
        return gen


def _parse_key(key: str) -> list[str]:
    """Split a dotted key, honouring double quotes: space."object.scale".range."""
    parts, buf, quoted = [], "", False
    for ch in key:
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    if quoted or any(not p for p in parts):
        raise ConfigError(f"--set: expected a dotted key like generator.image_size, got {key!r}")
    return parts


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep:
        raise ConfigError(f"--set: expected key=value, got {assignment!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word is a string
    parts = _parse_key(key.strip())
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: expected {p} to be a table, got a value")
    node[parts[-1]] = parsed


def _int(raw: dict, key: str, default: int, lo: int, prefix: str = "") -> int:
    v = raw.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ConfigError(f"{prefix}{key}: expected an integer >= {lo}, got {v!r}")
    return v


def _num(raw: dict, key: str, default: float, lo: float, prefix: str = "") -> float:
    v = raw.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < lo:
        raise ConfigError(f"{prefix}{key}: expected a finite number >= {lo}, got {v!r}")
    return float(v)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    unknown = set(raw) - TOP_LEVEL
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown key; expected one of {sorted(TOP_LEVEL)}")
    gen = raw.get("generator", {})
    if not isinstance(gen, dict):
        raise ConfigError(f"generator: expected a table, got {type(gen).__name__}")
    name = gen.get("name", "shapes")
    if not isinstance(name, str):
        raise ConfigError(f"generator.name: expected a string, got {name!r}")
    space = raw.get("space", {})
    if not isinstance(space, dict):
        raise ConfigError(f"space: expected a table of parameters, got {type(space).__name__}")
    rend = _table(raw.get("render", {}), "render", set(vars(RenderSettings())))
    render = RenderSettings(workers=_int(rend, "workers", 2, 0, "render."),
                            num_cpus=_num(rend, "num_cpus", 1.0, 0.0, "render."),
                            num_gpus=_num(rend, "num_gpus", 0.0, 0.0, "render."),
                            chunk=_int(rend, "chunk", 0, 0, "render."))
    return ExperimentConfig(seed=_int(raw, "seed", 0, 0), generator_name=name,
                            generator_options={k: v for k, v in gen.items() if k != "name"},
                            space=space, render=render, target=_target(raw.get("target")),
                            evaluator=_evaluator(raw.get("evaluator", {})), loop=_loop(raw.get("loop", {})),
                            raw=copy.deepcopy(raw), source=source)


def _table(raw: Any, name: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table, got {type(raw).__name__}")
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"{name}.{sorted(unknown)[0]}: unknown key; expected one of {sorted(allowed)}")
    return raw


def _str(raw: dict, key: str, default: str | None, prefix: str, choices: tuple[str, ...] | None = None) -> str | None:
    v = raw.get(key, default)
    if v is None and default is None:
        return None
    if not isinstance(v, str) or (choices is not None and v not in choices):
        want = f"one of {list(choices)}" if choices else "a string"
        raise ConfigError(f"{prefix}{key}: expected {want}, got {v!r}")
    return v


def _opt_int(raw: dict, key: str, lo: int, prefix: str) -> int | None:
    return None if raw.get(key) is None else _int(raw, key, 0, lo, prefix)


def _options(raw: Any, name: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table of keyword options, got {type(raw).__name__}")
    return dict(raw)


def _opt_bool(raw: dict, key: str, prefix: str) -> bool | None:
    v = raw.get(key)
    if v is not None and not isinstance(v, bool):
        raise ConfigError(f"{prefix}{key}: expected true or false, got {v!r}")
    return v


def _evaluator(raw: Any) -> EvaluatorSettings:
    d = EvaluatorSettings()
    raw = _table(raw, "evaluator", set(vars(d)))
    p = "evaluator."
    return EvaluatorSettings(
        task=_str(raw, "task", d.task, p), real=_str(raw, "real", d.real, p),
        target_config=_str(raw, "target_config", None, p), score=_str(raw, "score", d.score, p, ("ap50", "map")),
        images=_int(raw, "images", d.images, 1, p), steps=_int(raw, "steps", d.steps, 1, p),
        batch_size=_int(raw, "batch_size", d.batch_size, 1, p), threads=_int(raw, "threads", d.threads, 1, p),
        num_cpus=_num(raw, "num_cpus", d.num_cpus, 0.0, p), num_gpus=_num(raw, "num_gpus", d.num_gpus, 0.0, p),
        device=_str(raw, "device", d.device, p), width=_opt_int(raw, "width", 4, p),
        gap_images=_int(raw, "gap_images", d.gap_images, 2, p), final_seeds=_int(raw, "final_seeds", d.final_seeds, 1, p),
        final_steps=_opt_int(raw, "final_steps", 1, p), final_images=_opt_int(raw, "final_images", 1, p),
        options=_options(raw.get("options", {}), "evaluator.options"),
        ray=_opt_bool(raw, "ray", p))


def _loop(raw: Any) -> LoopSettings:
    d = LoopSettings()
    raw = _table(raw, "loop", set(vars(d)))
    options = _options(raw.get("options", {}), "loop.options")
    return LoopSettings(optimizer=_str(raw, "optimizer", d.optimizer, "loop."),
                        budget=_int(raw, "budget", d.budget, 1, "loop."),
                        candidates=_int(raw, "candidates", d.candidates, 1, "loop."), options=dict(options),
                        keep_start=_opt_bool(raw, "keep_start", "loop.") is not False)


def _target(raw: Any) -> TargetSettings | None:
    if raw is None:
        return None
    raw = _table(raw, "target", {"val", "test", "train", "camera"})
    cam = _table(raw.get("camera", {}), "target.camera", set(CAMERA_DEFAULTS))
    camera: dict[str, Any] = {}
    camera["noise"] = _num(cam, "noise", 0.0, 0.0, "target.camera.")
    camera["blur"] = _num(cam, "blur", 0.0, 0.0, "target.camera.")
    camera["gamma"] = _num(cam, "gamma", 1.0, 0.05, "target.camera.")
    gain = cam.get("color_gain", [1.0, 1.0, 1.0])
    if (not isinstance(gain, list) or len(gain) != 3
            or not all(isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g) and g >= 0
                       for g in gain)):
        raise ConfigError(f"target.camera.color_gain: expected three finite numbers >= 0 (R, G, B), got {gain!r}")
    camera["color_gain"] = [float(g) for g in gain]
    q = cam.get("jpeg_quality")
    if q is not None and (not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 95):
        raise ConfigError(f"target.camera.jpeg_quality: expected an integer in [1, 95], got {q!r}")
    camera["jpeg_quality"] = q
    return TargetSettings(val=_int(raw, "val", 300, 2, "target."), test=_int(raw, "test", 500, 2, "target."),
                          train=_int(raw, "train", 2000, 1, "target."), camera=camera)


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> ExperimentConfig:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config: expected a TOML file, {p} is a directory")
    if not p.is_file():
        raise ConfigError(f"config: expected a TOML file, {p} not found")
    try:
        raw = tomllib.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config: expected a readable TOML file, {p}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: expected valid TOML in {p}, got: {e}") from None
    for o in overrides or []:
        apply_override(raw, o)
    cfg = config_from_dict(raw, str(p))
    cfg.build_generator().close()  # validates generator options and space overrides now
    return cfg
