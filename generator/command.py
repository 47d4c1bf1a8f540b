"""Any renderer as a generator, through a command contract: draws as JSON in, a COCO set out.

The config declares the parameter space (its ``[space."NAME"]`` tables, as for any generator)
and the command to run, as an argv list without a shell::

    [generator]
    name = "command"
    argv = ["{python}", "my_scene.py", "{draws}", "{out}"]
    categories = ["cube", "sphere"]
    timeout_s = 120

Per batch of images dropt writes ``draws.json`` (see :func:`draws_document`), runs the command
with ``{draws}`` and ``{out}`` replaced by that file and an empty output folder (and
``{python}`` by the Python interpreter running dropt), and reads back
the COCO set the command wrote there: ``out/annotations.json`` with one image per draw, ids
1 … n in the order of the draws, categories named as the config's. The set is checked as a real
set is. A command that fails, runs past ``timeout_s``, or writes a wrong or malformed set raises
:class:`RenderFailed` with one line naming it and the tail of its stderr: that candidate fails,
the run goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .base import Generator, RenderFailed, Sample
from .dataset import Dataset, DatasetError
from .space import ParameterSpace

#: characters of the command's stderr quoted in a failure's one line
STDERR_TAIL = 300


class CommandGenerator(Generator):
    """Renders batches of images by running ``argv`` (see the module's docstring)."""

    space_from_config = True     # the config's [space] tables are the whole space, not overrides

    def __init__(self, *, argv: Sequence[str], categories: Sequence[str], space: Mapping[str, Any],
                 timeout_s: float = 600.0, env: Mapping[str, str] | None = None):
        if (not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) and a for a in argv)
                or "{out}" not in " ".join(argv)):
            raise ValueError(f"generator.argv: expected a list of strings naming the command and '{{out}}' (the "
                             f"folder it writes), e.g. ['python', 'scene.py', '{{draws}}', '{{out}}'], got {argv!r}")
        if (not isinstance(categories, (list, tuple)) or not categories
                or not all(isinstance(c, str) and c for c in categories) or len(set(categories)) != len(categories)):
            raise ValueError(f"generator.categories: expected a list of distinct category names, got {categories!r}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 86400:
            raise ValueError(f"generator.timeout_s: expected seconds in (0, 86400], got {timeout_s!r}")
        if not space:
            raise ValueError("space: expected the command's parameters as [space.\"NAME\"] tables, got none")
        self.argv, self.categories, self.timeout_s = list(argv), tuple(categories), float(timeout_s)
        self.env = dict(env or {})
        try:
            self.space = ParameterSpace.from_dict(space)
        except ValueError as e:
            raise ValueError(f"space.{e}") from None

    def config(self) -> dict[str, Any]:
        return {"generator": "command", "argv": self.argv, "timeout_s": self.timeout_s}

    def render(self, params: dict[str, np.ndarray], seed: int) -> Sample:
        return self.render_batch([params], [seed])[0]

    def render_batch(self, rows: list[dict[str, np.ndarray]], seeds: list[int]) -> list[Sample]:
        with tempfile.TemporaryDirectory(prefix="dropt-command-") as work:
            draws, out = Path(work) / "draws.json", Path(work) / "out"
            out.mkdir()
            draws.write_text(json.dumps(draws_document(self.space, rows, seeds, self.categories)))
            self._run(draws, out)
            ds = self._read(out, len(rows))
        return [Sample(im, anns) for im, anns in zip(ds.images, ds.annotations)]

    # --- one run of the command ------------------------------------------------------------------
    def _run(self, draws: Path, out: Path) -> None:
        argv = [a.replace("{draws}", str(draws)).replace("{out}", str(out)).replace("{python}", sys.executable)
                for a in self.argv]
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    errors="replace", start_new_session=True, env={**os.environ, **self.env})
        except OSError as e:
            raise RenderFailed(f"{self._name()}: could not start ({e.strerror or e})") from None
        try:
            _, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _, err = proc.communicate()
            raise RenderFailed(f"{self._name()}: expected it to finish within generator.timeout_s = "
                               f"{self.timeout_s:g} s, killed it{_tail(err)}") from None
        if proc.returncode != 0:
            raise RenderFailed(f"{self._name()}: exited with status {proc.returncode}{_tail(err)}")

    def _read(self, out: Path, n: int) -> Dataset:
        try:
            ds = Dataset.read_coco(out)
        except DatasetError as e:
            raise RenderFailed(f"{self._name()}: expected a COCO set in its output folder, got: {e}") from None
        if len(ds) != n:
            raise RenderFailed(f"{self._name()}: expected {n} images (one per draw), got {len(ds)}")
        if sorted(ds.categories) != sorted(self.categories):
            raise RenderFailed(f"{self._name()}: expected the categories {list(self.categories)}, got {ds.categories}")
        return ds.with_categories(self.categories)

    def _name(self) -> str:
        """The command as a message names it: its program, and its script when it has one."""
        script = [Path(a).name for a in self.argv[1:2] if not a.startswith("{")]
        return " ".join(["generator.argv", Path(self.argv[0]).name, *script])


def draws_document(space: ParameterSpace, rows: list[dict[str, np.ndarray]], seeds: list[int],
                   categories: Sequence[str]) -> dict[str, Any]:
    """What the command reads: every image's seed and named values (a categorical's by its
    choice's name; a per-object parameter as a list), in the order its images must come back."""
    def value(name: str, v: np.ndarray) -> Any:
        family = space[name].family
        flat = np.atleast_1d(v)
        out = [family.choices[int(x)] for x in flat] if hasattr(family, "choices") else [float(x) for x in flat]
        return out if space[name].size > 1 else out[0]

    images = [{"id": k + 1, "seed": int(s), "params": {name: value(name, v) for name, v in row.items()}}
              for k, (row, s) in enumerate(zip(rows, seeds))]
    return {"version": 1, "categories": list(categories), "images": images}


def _kill_group(proc: subprocess.Popen) -> None:
    """The command and anything it started (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(err: str | None) -> str:
    text = " ".join((err or "").split())
    return f" (stderr: …{text[-STDERR_TAIL:]})" if text else ""


__all__ = ["CommandGenerator", "draws_document"]
