"""The config's schema: one pydantic model per table, each default and bound written once.

Every field has a description (the reference page ``dropt config`` prints is generated from
these models), a strict type (TOML's ``true`` is not an integer, ``"3"`` is not a number) and
its bounds; an unknown key is refused. A validation error becomes one line naming the key:
``evaluator.images: expected an integer >= 1, got 0``.
"""

from __future__ import annotations

import math
import typing
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from generator.space import short_repr

from .errors import ConfigError


class _Table(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", validate_default=False, frozen=False)


def _number(default: float, ge: float, doc: str) -> Any:
    return Field(default, ge=ge, allow_inf_nan=False, description=doc)


def refused(expect: str, got: Any, at: str = "") -> PydanticCustomError:
    """A validator's own refusal, printed by :func:`error_line` as "KEY[.at]: expected EXPECT, got GOT"."""
    return PydanticCustomError("dropt", "expected {expect}, got {got}",
                               {"expect": expect, "got": got if isinstance(got, str) else short_repr(got), "at": at})


#: Ray counts resources in units of 1/10,000 (a non-zero request below one unit is refused) as
#: fixed-point integers (1e308 overflows them); no task needs more than 10,000 CPUs or GPUs
RAY_UNIT, RAY_MOST = 1e-4, 1e4
RAY_AMOUNT = f"0 or a number in [{RAY_UNIT:g}, {RAY_MOST:g}] (Ray's resource granularity is {RAY_UNIT:g})"


def ray_amount(amount: float, at: str = "") -> float:
    """An amount of a Ray resource Ray accepts, or a :func:`refused` error (``at``: the resource)."""
    if amount != 0 and not RAY_UNIT <= amount <= RAY_MOST:
        raise refused(RAY_AMOUNT, amount, at)
    return amount


class RenderSettings(_Table):
    """How datasets are rendered in parallel."""

    workers: int = Field(2, ge=0, description="Ray render actors; 0 renders in the calling process")
    num_cpus: float = _number(1.0, 0.0, "CPUs reserved per render actor")
    num_gpus: float = _number(0.0, 0.0, "GPUs per render actor (EGL on the GPU when > 0)")
    chunk: int = Field(0, ge=0, description="images per actor call; 0 sizes calls from the dataset")
    resources: dict[str, float] = Field(default_factory=dict, json_schema_extra={"expect": "a table of custom resource "
                                        "names (not CPU or GPU) to amounts >= 0"},
                                        description="custom Ray resources per render actor, e.g. {render_node = 1}")
    label_selector: dict[str, str] = Field(default_factory=dict, json_schema_extra={"expect": "a table of node "
                                           "label names to values"},
                                           description="Ray node labels a render actor must land on")
    strategy: Literal["default", "spread"] = Field("default", description="Ray's placement of the render actors: "
                                                                          "packed ('default') or one per node first")

    @field_validator("resources")
    @classmethod
    def _amounts(cls, resources: dict[str, float]) -> dict[str, float]:
        return checked_resources(resources)

    @field_validator("num_cpus", "num_gpus")
    @classmethod
    def _ray_amount(cls, amount: float) -> float:
        return ray_amount(amount)


class CameraSettings(_Table):
    """The hidden target's fixed camera model (see ``generator.sensor.apply_camera_model``)."""

    noise: float = _number(0.0, 0.0, "sensor noise standard deviation (in [0, 1] pixel units)")
    blur: float = _number(0.0, 0.0, "Gaussian blur sigma in pixels")
    gamma: float = _number(1.0, 0.05, "gamma applied to the image")
    color_gain: list[float] = Field([1.0, 1.0, 1.0], min_length=3, max_length=3,
                                    json_schema_extra={"expect": "three finite numbers >= 0 (R, G, B)"},
                                    description="white-balance cast: a gain per channel (R, G, B)")
    jpeg_quality: Optional[int] = Field(None, ge=1, le=95, description="JPEG re-encoding quality; unset: none")

    @field_validator("color_gain")
    @classmethod
    def _finite_gains(cls, gains: list[float]) -> list[float]:
        if not all(math.isfinite(g) and g >= 0 for g in gains):
            raise ValueError("expected finite gains >= 0")
        return [float(g) for g in gains]


class TargetSettings(_Table):
    """A hidden target domain for controlled experiments (``dropt make-target``)."""

    val: int = Field(300, ge=2, description="images in the real-stand-in validation split (the search's reward)")
    test: int = Field(500, ge=2, description="images in the test split (reported only)")
    train: int = Field(2000, ge=1, description="images the oracle of `dropt bench evaluator` trains on")
    camera: CameraSettings = Field(default_factory=CameraSettings, description="the target's camera model")


class EvaluatorSettings(_Table):
    """How each candidate distribution is scored."""

    task: str = Field("detection", description="a registered evaluator (detection, classification) or "
                                               "'package.module:Class'")
    real: str = Field("out/target", description="the real set: a COCO dir (val/ + test/, or one set) or 'digits'")
    target_config: Optional[str] = Field(None, description="made with `make-target` first when `real` does not "
                                                           "exist yet")
    score: Literal["ap50", "map"] = Field("ap50", description="detection: the score the search maximises")
    images: int = Field(400, ge=1, description="synthetic images per candidate")
    steps: int = Field(300, ge=1, description="training steps per candidate")
    batch_size: int = Field(32, ge=1, description="images per training step")
    warm_steps: int = Field(0, ge=0, description="0: every candidate trains `steps` steps from scratch; K: it "
                                                 "fine-tunes K steps from a checkpoint shared by the round")
    warm_anchor: Literal["config", "round"] = Field("config", description="the θ the warm checkpoint trains on: the "
                                                                          "config's (one per run) or each round's mean")
    threads: int = Field(1, ge=1, description="torch threads per evaluation task")
    num_cpus: float = _number(1.0, 0.0, "Ray CPUs per evaluation task")
    num_gpus: float = _number(0.0, 0.0, "Ray GPUs per evaluation task (device 'auto' then uses CUDA)")
    device: str = Field("auto", description="'auto' (on Ray: the GPU Ray assigned the task, else the CPU), "
                                            "'cpu' or 'cuda[:i]' (on Ray: needs num_gpus > 0)")
    resources: dict[str, float] = Field(default_factory=dict, json_schema_extra={"expect": "a table of custom resource "
                                        "names (not CPU or GPU) to amounts >= 0"},
                                        description="custom Ray resources per evaluation task")
    label_selector: dict[str, str] = Field(default_factory=dict, json_schema_extra={"expect": "a table of node "
                                           "label names to values"},
                                           description="Ray node labels an evaluation task must land on")
    strategy: Literal["default", "spread"] = Field("default", description="Ray's placement of the evaluation tasks: "
                                                                          "packed ('default') or spread over nodes")
    width: Optional[int] = Field(None, ge=4, description="model width (unset: the evaluator's default)")
    gap_images: int = Field(200, ge=2, description="real val images the gap metrics compare against (metasim)")
    final_seeds: int = Field(3, ge=1, description="the selected distribution is retrained with this many seeds")
    final_steps: Optional[int] = Field(None, ge=1, description="steps of the final retrainings (unset: 2 × steps)")
    final_images: Optional[int] = Field(None, ge=1, description="images of the final retrainings (unset: 2 × images)")
    options: dict[str, Any] = Field(default_factory=dict, description="more keyword options of the evaluator class, "
                                                                      "checked by it")
    ray: Optional[bool] = Field(None, description="evaluation tasks on Ray (in parallel); unset: when the render "
                                                  "actors use Ray")

    @field_validator("resources")
    @classmethod
    def _amounts(cls, resources: dict[str, float]) -> dict[str, float]:
        return checked_resources(resources)

    @field_validator("num_cpus", "num_gpus")
    @classmethod
    def _ray_amount(cls, amount: float) -> float:
        return ray_amount(amount)

    @field_validator("options")
    @classmethod
    def _not_a_setting(cls, options: dict[str, Any]) -> dict[str, Any]:
        """An option named like a key of [evaluator] itself would silently win over it, or lose."""
        for key in options:
            if key in cls.model_fields:
                raise refused(f"evaluator.{key} (a key of [evaluator] itself)",
                              f"evaluator.options.{key} = {short_repr(options[key])}", at=key)
        return options


def checked_resources(resources: dict[str, float]) -> dict[str, float]:
    """Custom resources only: CPUs and GPUs have their own keys (Ray refuses them here too)."""
    for name, amount in resources.items():
        if name in ("CPU", "GPU", "memory", "object_store_memory"):
            raise ValueError(f"expected a custom resource name, got {name!r} (use num_cpus / num_gpus)")
        if not (math.isfinite(amount) and amount >= 0):
            raise ValueError(f"expected a finite amount >= 0 for {name!r}, got {amount}")
        ray_amount(amount, at=name)
    return {k: float(v) for k, v in resources.items()}


class RaySettings(_Table):
    """How the run uses a Ray cluster; none of it changes a score, so a resumed run may change it."""

    working_dir: Optional[str] = Field(None, description="a local folder shipped to every Ray worker (runtime_env "
                                                         "working_dir): the user's plug-ins when they are not "
                                                         "installed on the workers")
    py_modules: list[str] = Field(default_factory=list, description="local packages (folders) shipped to every Ray "
                                                                    "worker (runtime_env py_modules)")
    wait_report_s: float = Field(60.0, gt=0, allow_inf_nan=False,
                                 description="seconds between the lines a run prints while it waits for Ray work")
    wait_timeout_s: float = Field(3600.0, gt=0, allow_inf_nan=False,
                                  description="seconds with no Ray work done before the run gives up in one line")


class LoopSettings(_Table):
    """The closed loop: which controller, how many rounds, how many candidates per round."""

    optimizer: str = Field("reinforce", description="a registered controller or 'package.module:Class'")
    budget: int = Field(20, ge=1, description="rounds")
    candidates: int = Field(4, ge=1, description="θs proposed, rendered and scored per round")
    options: dict[str, Any] = Field(default_factory=dict, description="controller options; a table named after a "
                                                                      "controller reaches only that one")
    keep_start: bool = Field(True, description="a learning controller's final retraining also scores the config's "
                                               "own θ and keeps it when its real val is higher")


class GeneratorTable(BaseModel):
    """``[generator]``: ``name`` picks the generator; every other key is its own option."""

    model_config = ConfigDict(strict=True, extra="allow")
    name: str = Field("shapes", description="a registered generator (shapes, digits, strokes) or "
                                            "'package.module:Class'; other keys are its options")


class ConfigFile(_Table):
    """An experiment config file."""

    seed: int = Field(0, ge=0, description="the run seed (every image, training and controller seed derives from it)")
    generator: GeneratorTable = Field(default_factory=GeneratorTable, description="the generator and its options")
    space: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"expect": "a table of parameters"},
                                  description="overrides of the generator's parameter space, "
                                              "by parameter name (or a pattern with *)")
    render: RenderSettings = Field(default_factory=RenderSettings, description="rendering")
    target: Optional[TargetSettings] = Field(None, description="only in a hidden target's config")
    evaluator: EvaluatorSettings = Field(default_factory=EvaluatorSettings, description="scoring")
    loop: LoopSettings = Field(default_factory=LoopSettings, description="the closed loop")
    ray: RaySettings = Field(default_factory=RaySettings, description="the Ray cluster")


# --------------------------------------------------------------------------------------------
# One line per error
# --------------------------------------------------------------------------------------------

def _is_model(x: Any) -> bool:
    return isinstance(x, type) and issubclass(x, BaseModel)


def _field_at(loc: tuple) -> tuple[type[BaseModel] | None, str | None]:
    """The model and field an error's location falls in: the field itself, or the field holding
    the entry (``render.resources.fast_disk`` falls in ``render.resources``)."""
    model: Any = ConfigFile
    for i, part in enumerate(loc):
        if not _is_model(model) or part not in model.model_fields:
            return (model if _is_model(model) else None), None
        inner = model_of(model.model_fields[part].annotation)
        if i == len(loc) - 1 or not _is_model(inner):
            return model, part
        model = inner
    return None, None


def model_of(annotation: Any) -> Any:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def expected(model: type[BaseModel], name: str) -> str:
    """What field ``name`` of ``model`` takes, in words: "an integer >= 1", "true or false"."""
    info = model.model_fields[name]
    extra = info.json_schema_extra or {}
    if isinstance(extra, dict) and "expect" in extra:
        return str(extra["expect"])
    ann = info.annotation
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    base = args[0] if typing.get_origin(ann) is typing.Union and len(args) == 1 else ann
    bounds = {type(m).__name__: m for m in info.metadata}
    if typing.get_origin(base) is Literal:
        return f"one of {list(typing.get_args(base))}"
    if base is bool:
        return "true or false"
    if base in (int, float):
        kind = "an integer" if base is int else "a finite number"
        if "Ge" in bounds and "Le" in bounds:
            return f"{kind} in [{bounds['Ge'].ge:g}, {bounds['Le'].le:g}]"
        if "Gt" in bounds and "Le" in bounds:
            return f"{kind} in ({bounds['Gt'].gt:g}, {bounds['Le'].le:g}]"
        if "Le" in bounds:
            return f"{kind} <= {bounds['Le'].le:g}"
        if "Ge" in bounds:
            return f"{kind} >= {bounds['Ge'].ge:g}"
        if "Gt" in bounds:
            return f"{kind} > {bounds['Gt'].gt:g}"
        return kind
    if base is str:
        return "a string"
    if typing.get_origin(base) is dict:
        return "a table of keyword options"
    if isinstance(base, type) and issubclass(base, BaseModel):
        return "a table"
    return str(base)


def error_line(e: ValidationError) -> str:
    """The first error of ``e`` as "key: expected X, got Y"."""
    err = e.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc)
    model, name = _field_at(loc)
    if err["type"] == "extra_forbidden":
        known = sorted(model.model_fields) if model is not None else []
        return f"{key}: unknown key; expected one of {known}"
    if err["type"] == "dropt":          # a validator's own words (see refused)
        at = err["ctx"]["at"]
        return f"{key}.{at}: {err['msg']}" if at else f"{key}: {err['msg']}"
    got = short_repr(err.get("input"))
    if model is not None and name is not None:
        return f"{key}: expected {expected(model, name)}, got {got}"
    return f"{key}: {err['msg']}, got {got}"


def validate(raw: dict[str, Any]) -> ConfigFile:
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(error_line(e)) from None


__all__ = ["CameraSettings", "ConfigFile", "EvaluatorSettings", "GeneratorTable", "LoopSettings", "RaySettings", "RenderSettings",
           "TargetSettings", "error_line", "expected", "model_of", "validate"]
