"""The Blender scene as a program of the command contract (docs/howto/command.md)::

    python -m generator.blender.contract DRAWS_JSON OUT_DIR [--image-size 64] [--max-objects 4] [--max-lights 2] [--samples 8]

Reads every image's seed and named values, renders them with the Blender scene, and writes the
COCO set (ids 1 … n in the order of the draws): the shape a BlenderProc script has, run by
``[generator] name = "command"`` with the Blender space declared in the config. It renders the
same bytes as ``name = "blender"`` in process, which is how the tests check the contract on a
real renderer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..base import samples_to_dataset
from ..space import ParameterSpace
from . import BlenderGenerator


def params_of(space: ParameterSpace, named: dict) -> dict[str, np.ndarray]:
    """One image's named values as the generator reads them (a categorical's name → its index)."""
    out = {}
    for name, value in named.items():
        family = space[name].family
        values = value if isinstance(value, list) else [value]
        if hasattr(family, "choices"):
            values = [family.choices.index(v) for v in values]
        out[name] = np.asarray(values if isinstance(value, list) else values[0])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Render a draws file with the Blender scene into a COCO set.")
    p.add_argument("draws")
    p.add_argument("out")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--max-objects", type=int, default=4)
    p.add_argument("--max-lights", type=int, default=2)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--min-visible-pixels", type=int, default=10)
    args = p.parse_args(argv)
    gen = BlenderGenerator(image_size=args.image_size, max_objects=args.max_objects,
                           max_lights=args.max_lights, samples=args.samples,
                           min_visible_pixels=args.min_visible_pixels)
    doc = json.loads(Path(args.draws).read_text())
    if doc.get("categories") != list(gen.categories):
        print(f"expected the categories {list(gen.categories)}, got {doc.get('categories')}", file=sys.stderr)
        return 2
    samples = [gen.render(params_of(gen.space, im["params"]), im["seed"]) for im in doc["images"]]
    samples_to_dataset(samples, gen.categories).write_coco(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
