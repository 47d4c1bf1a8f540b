"""Experiment configuration: a TOML file validated into typed settings, with --set overrides."""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.base import Generator
from generator.space import SpaceError


from .errors import ConfigError
from .schema import (CameraSettings, ConfigFile, EvaluatorSettings, LoopSettings, RaySettings, RenderSettings,
                     TargetSettings, validate)


TOP_LEVEL = set(ConfigFile.model_fields)

#: where the work runs, not what it computes: a resumed run may change them (``--resume --set``)
PLACEMENT_KEYS = ("render.workers", "render.num_cpus", "render.num_gpus", "render.chunk", "render.resources",
                  "render.label_selector", "render.strategy", "evaluator.ray", "evaluator.num_cpus",
                  "evaluator.num_gpus", "evaluator.resources", "evaluator.label_selector", "evaluator.strategy", "ray")


def is_placement_key(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in PLACEMENT_KEYS)
CAMERA_DEFAULTS: dict[str, Any] = CameraSettings().model_dump()


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
    ray: RaySettings = field(default_factory=RaySettings)
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


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """``raw`` (a parsed TOML file, overrides applied) validated by :mod:`loop.schema`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a table, got {type(raw).__name__}")
    f = validate(raw)
    options = {k: v for k, v in (f.generator.model_extra or {}).items()}
    return ExperimentConfig(seed=f.seed, generator_name=f.generator.name, generator_options=options,
                            space=f.space, render=f.render, target=f.target, evaluator=f.evaluator, loop=f.loop,
                            ray=f.ray, raw=copy.deepcopy(raw), source=source)


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
