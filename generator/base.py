"""The Generator abstraction, per-image samples and seed derivation."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dataset import Dataset, ObjectAnnotation
from .space import ParameterSpace


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from a tuple of non-negative ints, e.g. (run seed, round, candidate, index).

    Per-image seeds derive from the image's own key, so a dataset's bytes do not depend on how
    many workers rendered it."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@dataclass
class Sample:
    image: np.ndarray                       # uint8 H×W×3 (or H×W)
    annotations: list[ObjectAnnotation]
    depth: np.ndarray | None = None         # float32 H×W, 0 where nothing was hit
    extras: dict[str, Any] = field(default_factory=dict)


class RenderError(RuntimeError):
    """A renderer that cannot run here (no GL context, out of memory): a runtime failure the
    command line reports in one line with exit status 1."""


class RenderFailed(RenderError):
    """One candidate's images could not be rendered (a renderer command failed, timed out or wrote
    a bad set): the message is one line; that candidate fails, the run goes on."""


class Generator(abc.ABC):
    """Renders images from per-image parameter values drawn from its ``space``."""

    #: category names; category id i+1 ↔ categories[i]
    categories: tuple[str, ...] = ()
    #: the default parameter space (controllers learn its θ)
    space: ParameterSpace
    #: True: the config's ``[space]`` tables are the whole space, passed to the constructor as
    #: ``space`` (a generator with no space of its own, such as ``command``); False: they
    #: override the generator's own
    space_from_config: bool = False

    def scene_draws(self, theta: Any, n: int, seed: int) -> dict[str, np.ndarray]:
        """Parameter values of n images, column-wise (vectorised, seeded)."""
        return self.space.sample(theta, n, np.random.default_rng(derive_seed(seed, 0x5CE7E)))

    def scene_params(self, theta: Any, n: int, seed: int) -> list[dict[str, np.ndarray]]:
        """The same values as :meth:`scene_draws`, one dict per image."""
        return rows_of(self.scene_draws(theta, n, seed))

    @abc.abstractmethod
    def render(self, params: dict[str, np.ndarray], seed: int) -> Sample:
        """One image and its annotations from one parameter row."""

    def render_batch(self, rows: list[dict[str, np.ndarray]], seeds: list[int]) -> list[Sample]:
        """Several images at once (a renderer with a per-call cost overrides it); the default
        renders them one by one."""
        return [self.render(row, s) for row, s in zip(rows, seeds)]

    def config(self) -> dict[str, Any]:
        """The settings that, with θ and the seed, reproduce this generator's output."""
        return {}

    def close(self) -> None:
        pass


def rows_of(draws: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    n = len(next(iter(draws.values()))) if draws else 0
    return [{k: v[i] for k, v in draws.items()} for i in range(n)]


def image_seeds(seed: int, n: int, start: int = 0) -> list[int]:
    return [derive_seed(seed, 1, i) for i in range(start, start + n)]


def samples_to_dataset(samples: list[Sample], categories: tuple[str, ...] | list[str],
                       info: dict[str, Any] | None = None) -> Dataset:
    depths = [s.depth for s in samples] if samples and all(s.depth is not None for s in samples) else None
    return Dataset([s.image for s in samples], [s.annotations for s in samples], list(categories),
                   dict(info or {}), depths)


def render_dataset(generator: Generator, theta: Any, n: int, seed: int) -> Dataset:
    """Render n images in this process (``loop.engine.render_pool`` does the same over Ray actors)."""
    return render_draws(generator, generator.scene_draws(theta, n, seed), seed)


def render_samples(generator: Generator, draws: dict[str, np.ndarray], seed: int, start: int = 0) -> list[Sample]:
    """Images ``start``, ``start + 1``, … of a dataset rendered with ``seed``, from their drawn
    parameter columns; each image's seed comes from its index, so any split gives the same bytes."""
    rows = rows_of(draws)
    return generator.render_batch(rows, image_seeds(seed, len(rows), start))


def render_draws(generator: Generator, draws: dict[str, np.ndarray], seed: int) -> Dataset:
    """Render the images of already drawn parameter values (see :meth:`Generator.scene_draws`)."""
    return samples_to_dataset(render_samples(generator, draws, seed), generator.categories,
                              {"seed": int(seed), **generator.config()})
