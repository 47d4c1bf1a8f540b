"""A renderer outside dropt, run through the command contract (docs/howto/command.md).

    python boxes.py DRAWS_JSON OUT_DIR [--size 32]

Reads every image's seed and parameter values from DRAWS_JSON, draws one box or disc per image
(numpy and Pillow only), and writes OUT_DIR/images/*.png and OUT_DIR/annotations.json: a COCO
set with ids 1 … n in the order of the draws. Any program that does the same (a Blender or
BlenderProc script, a simulator) plugs into dropt the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image


def draw(params: dict, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One grey image and its object's mask, from the image's own seed only."""
    rng = np.random.default_rng(seed)
    half = float(params["object.size"]) / 2
    cy, cx = rng.uniform(half, size - half, 2)
    yy, xx = np.mgrid[:size, :size] + 0.5
    if params["object.shape"] == "disc":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= half ** 2
    else:
        mask = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
    grey = np.where(mask, float(params["object.brightness"]), float(params["background"]))
    grey = np.clip(grey + rng.normal(0.0, float(params["noise"]), grey.shape), 0.0, 1.0)
    return np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2), mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("draws")
    parser.add_argument("out")
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    doc = json.loads(Path(args.draws).read_text())
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cats = {name: k + 1 for k, name in enumerate(doc["categories"])}
    images, annotations = [], []
    for im in doc["images"]:
        pixels, mask = draw(im["params"], im["seed"], args.size)
        name = f"images/{im['id']:06d}.png"
        Image.fromarray(pixels).save(out / name)
        images.append({"id": im["id"], "file_name": name, "width": args.size, "height": args.size})
        if mask.any():
            ys, xs = np.nonzero(mask)
            box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            annotations.append({"id": len(annotations) + 1, "image_id": im["id"], "bbox": box, "iscrowd": 0,
                                "area": float(mask.sum()), "category_id": cats[im["params"]["object.shape"]]})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n} for n, i in cats.items()]}
    (out / "annotations.json").write_text(json.dumps(coco))


if __name__ == "__main__":
    main()
