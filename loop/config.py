"""Experiment configuration: a TOML file validated into typed settings, with --set overrides."""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.base import Generator
from generator.space import SpaceError, short_repr


from .errors import ConfigError
from .memory import check_images_fit, image_size_of
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
        """The generator, its space overridden by ``[space]``. An override keeps what the generator
        reads (``ParameterSpace.override(same_kinds=True)``) but may narrow a categorical's choices,
        also against the hidden target's: a draw names its choice and an annotation its category
        by the generator's own names, so a run whose choices differ from its target's still scores
        against the same categories (the real set's are checked against the generator's)."""
        try:
            from .registry import lookup

            cls = lookup("generator", self.generator_name)
            options = dict(self.generator_options)
            if getattr(cls, "space_from_config", False):
                options["space"] = dict(self.space)
            gen = cls(**options)
        except TypeError as e:  # an unknown option passed to the generator's constructor
            raise ConfigError(f"generator: expected options accepted by {self.generator_name!r}, got {e}") from None
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.space and not getattr(gen, "space_from_config", False):
            try:
                gen.space = gen.space.override(self.space, same_kinds=True)
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
        raise ConfigError(f"--set: expected a dotted key like generator.image_size, got {short_repr(key)}")
    return parts


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep:
        raise ConfigError(f"--set: expected key=value, got {short_repr(assignment)}")
    if "\n" in value or "\r" in value:     # "3\nseed=5" would parse as a second key
        raise ConfigError(f"--set {key.strip()}: expected one TOML value on one line, got {short_repr(value)}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word is a string
    except RecursionError:
        raise ConfigError(f"--set {key.strip()}: expected a value nested at most {MAX_DEPTH} deep, "
                          f"got {short_repr(value)}") from None
    parts = _parse_key(key.strip())
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: expected {p} to be a table, got a value")
    node[parts[-1]] = parsed


#: deeper values are no config's (and would exhaust Python's recursion limit further on)
MAX_DEPTH = 32


def check_values(raw: dict[str, Any]) -> None:
    """Every key and string free of NUL bytes (no path, name or label holds one; the OS refuses
    them in paths) and nested at most ``MAX_DEPTH`` deep; walked without recursion."""
    stack: list[tuple[str, Any, int]] = [("", raw, 0)]
    while stack:
        key, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(f"{key.split('[')[0]}: expected a value nested at most {MAX_DEPTH} deep, got deeper")
        if isinstance(value, str) and "\0" in value:
            raise ConfigError(f"{key}: expected a string without NUL bytes, got {short_repr(value)}")
        if isinstance(value, dict):
            for k, v in value.items():
                if "\0" in k:
                    raise ConfigError(f"{key or 'config'}: expected keys without NUL bytes, got {short_repr(k)}")
                stack.append((f"{key}.{k}" if key else k, v, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{key}[{i}]", v, depth + 1) for i, v in enumerate(value))


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """``raw`` (a parsed TOML file, overrides applied) validated by :mod:`loop.schema`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a table, got {type(raw).__name__}")
    check_values(raw)
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
    except RecursionError:
        raise ConfigError(f"config: expected values nested at most {MAX_DEPTH} deep in {p}, got deeper "
                          f"(too deep for Python's TOML parser)") from None
    for o in overrides or []:
        apply_override(raw, o)
    cfg = config_from_dict(raw, str(p))
    gen = cfg.build_generator()  # validates generator options and space overrides now
    gen.close()
    check_sizes_fit(cfg, image_size_of(gen))
    return cfg


def check_sizes_fit(cfg: ExperimentConfig, image_size: int | None) -> None:
    """Every dataset size the config asks for fits in memory (when the generator says its size)."""
    if image_size is None:
        return
    ev = cfg.evaluator
    sizes = {"evaluator.images": ev.images, "evaluator.final_images": ev.final_images}
    if cfg.target is not None:
        sizes |= {f"target.{split}": getattr(cfg.target, split) for split in ("val", "test", "train")}
    for key, n in sizes.items():
        if n is not None:
            check_images_fit(key, n, image_size)
