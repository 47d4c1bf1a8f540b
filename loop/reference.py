"""The reference pages generated from the code: every config key (from :mod:`loop.schema`) and
every built-in controller's options (from its :class:`loop.controllers.base.Options` model).
``dropt config schema`` prints them; ``docs/reference/config.md`` is its output."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

from pydantic import BaseModel

from .schema import ConfigFile, GeneratorTable, expected, model_of


def _default(info) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
        return "(table)" if isinstance(value, BaseModel) else repr(value) if value else "{}"
    return "unset" if info.default is None else json.dumps(info.default, ensure_ascii=False)


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows, nested = [], []
    for name, info in model.model_fields.items():
        sub = model_of(info.annotation)
        if sub is GeneratorTable:          # its one key heads the page; the rest are the generator's own
            continue
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            nested.append((f"{prefix}{name}", sub))
            continue
        rows.append(f"| `{prefix}{name}` | {expected(model, name)} | `{_default(info)}` | {info.description or ''} |")
    for key, sub in nested:
        rows += ["", f"### `[{key}]`", "", (sub.__doc__ or "").strip(), "",
                 "| key | expects | default | meaning |", "|---|---|---|---|", *_rows(sub, f"{key}.")]
    return rows


def reference_markdown() -> str:
    """Every config key with its type, default and meaning (``dropt config schema``)."""
    head = ["# Config reference", "",
            "Generated from the models in `loop/schema.py` by `dropt config schema`; do not edit by hand.", "",
            "A config is a TOML file; `--set key=value` overrides any key (`--set evaluator.images=200`). "
            "`[generator]` takes `name` plus the generator's own options (checked by its constructor), "
            "`[space.\"<parameter>\"]` overrides a parameter of the generator's space, and "
            "`[loop.options]` / `[evaluator.options]` reach the controller and the evaluator, which check them "
            "([the plug-ins' options and space overrides](options.md)).", "",
            "| key | expects | default | meaning |", "|---|---|---|---|",
            f"| `generator.name` | a string | `\"shapes\"` | {GeneratorTable.model_fields['name'].description} |"]
    return "\n".join(head + _rows(ConfigFile, "") + _controller_options()) + "\n"


def _controller_options() -> list[str]:
    """A table per built-in controller (dropt's own entry points, not other installed packages')."""
    from .registry import lookup

    rows = ["", "## Controller options (`[loop.options]`)", "",
            "A plain key reaches whichever controller runs; a table named after a controller "
            "(`[loop.options.reinforce]`) reaches only that one, over the plain keys."]
    shipped = sorted(ep.name for ep in entry_points(group="dropt.controllers") if ep.dist.name == "dropt")
    for name in shipped:
        options = lookup("controller", name).Options
        rows += ["", f"### `{name}`", ""]
        if not options.model_fields:
            rows.append("No options.")
            continue
        rows += ["| option | expects | default | meaning |", "|---|---|---|---|"]
        rows += [f"| `{key}` | {expected(options, key)} | `{_default(info)}` | {_one_line(info.description)} |"
                 for key, info in options.model_fields.items()]
    return rows


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")
