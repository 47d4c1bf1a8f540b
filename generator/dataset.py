"""The one dataset type of dropt: uint8 images plus COCO-style annotations, with COCO I/O.

This is the only thing ``evaluator/`` imports from ``generator/`` and the only COCO reader and
writer in the project; real sets are read with it too.

On disk (``write_coco``): ``images/000001.png`` … and ``annotations.json`` with ``info``,
``images``, ``annotations`` (ids from 1, scalar ``area``, ``bbox`` as [x, y, w, h], RLE
``segmentation`` encoded by pycocotools, plus dropt's ``visible_fraction``) and ``categories``.
The same dataset always gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image


class DatasetError(ValueError):
    """A malformed dataset on disk or in memory; the message names the first problems found."""


@dataclass
class ObjectAnnotation:
    category_id: int                                  # COCO category id (1-based)
    bbox: tuple[float, float, float, float]           # x, y, w, h in pixels
    area: float                                       # visible pixels (mask area) or box area
    segmentation: dict[str, Any] | None = None        # COCO RLE {"size": [h, w], "counts": str}
    visible_fraction: float = 1.0
    iscrowd: int = 0

    def mask(self) -> np.ndarray:
        """The instance mask as a bool H×W array (needs an RLE segmentation)."""
        if self.segmentation is None:
            raise DatasetError("annotation has no segmentation to decode")
        from pycocotools import mask as mask_utils

        rle = dict(self.segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
        return mask_utils.decode(rle).astype(bool)

    @classmethod
    def from_mask(cls, category_id: int, mask: np.ndarray, visible_fraction: float = 1.0) -> "ObjectAnnotation":
        from pycocotools import mask as mask_utils

        if not mask.any():
            raise DatasetError(f"category {category_id}: expected a mask with at least one pixel, got an empty mask")
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return cls(category_id=int(category_id), bbox=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                   area=float(mask.sum()), segmentation={"size": [int(v) for v in rle["size"]],
                                                         "counts": rle["counts"].decode("ascii")},
                   visible_fraction=float(visible_fraction))

    def to_coco(self, ann_id: int, image_id: int) -> dict[str, Any]:
        d = {"id": ann_id, "image_id": image_id, "category_id": self.category_id,
             "bbox": [round(float(v), 3) for v in self.bbox], "area": float(self.area), "iscrowd": self.iscrowd}
        if self.segmentation is not None:
            d["segmentation"] = self.segmentation
        d["visible_fraction"] = round(float(self.visible_fraction), 4)
        return d


@dataclass
class Dataset:
    images: list[np.ndarray]                          # uint8, H×W (grey) or H×W×3
    annotations: list[list[ObjectAnnotation]]         # one list per image
    categories: list[str]                             # category id i+1 ↔ categories[i]
    info: dict[str, Any] = field(default_factory=dict)
    depths: list[np.ndarray] | None = None            # optional float32 H×W per image
    file_names: list[str] | None = None

    def __post_init__(self):
        if len(self.images) != len(self.annotations):
            raise DatasetError(f"expected one annotation list per image, got {len(self.images)} images "
                               f"and {len(self.annotations)} annotation lists")
        for i, im in enumerate(self.images):
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim not in (2, 3):
                raise DatasetError(f"image {i}: expected a uint8 H×W or H×W×C array, got "
                                   f"{getattr(im, 'dtype', type(im).__name__)} {getattr(im, 'shape', '')}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> "Dataset":
        idx = [int(i) for i in indices]
        return Dataset([self.images[i] for i in idx], [self.annotations[i] for i in idx], list(self.categories),
                       dict(self.info), [self.depths[i] for i in idx] if self.depths is not None else None,
                       [self.file_names[i] for i in idx] if self.file_names is not None else None)

    def with_categories(self, names: Sequence[str]) -> "Dataset":
        """The same images with categories in the order ``names`` (the same names, matched by
        name): a COCO set whose ids are permuted relative to a generator's is still that set."""
        if sorted(names) != sorted(self.categories):
            raise DatasetError(f"expected the categories {sorted(self.categories)}, got {sorted(names)}")
        new_id = {i + 1: list(names).index(n) + 1 for i, n in enumerate(self.categories)}
        anns = [[dataclasses.replace(o, category_id=new_id[o.category_id]) for o in objs] for objs in self.annotations]
        return Dataset(list(self.images), anns, list(names), dict(self.info), self.depths, self.file_names)

    def stacked_images(self) -> np.ndarray:
        shapes = {im.shape for im in self.images}
        if len(shapes) > 1:
            raise DatasetError(f"expected images of one size to stack, got {sorted(shapes)[:3]}")
        return np.stack(self.images) if self.images else np.zeros((0, 0, 0), np.uint8)

    # --- COCO ---------------------------------------------------------------------------------
    def _file_name(self, i: int) -> str:
        return self.file_names[i] if self.file_names is not None else f"images/{i + 1:06d}.png"

    def to_coco(self) -> dict[str, Any]:
        images, anns = [], []
        for i, (im, objs) in enumerate(zip(self.images, self.annotations)):
            images.append({"id": i + 1, "file_name": self._file_name(i), "height": int(im.shape[0]),
                           "width": int(im.shape[1])})
            for obj in objs:
                anns.append(obj.to_coco(len(anns) + 1, i + 1))
        cats = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(self.categories)]
        info = {"description": "dropt dataset", "version": "1.0", **self.info}
        return {"info": info, "licenses": [], "images": images, "annotations": anns, "categories": cats}

    def write_coco(self, out_dir: str | os.PathLike) -> Path:
        """Write ``images/*.png`` and ``annotations.json``; returns the annotations path."""
        out = Path(out_dir)
        (out / "images").mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(self.images):
            path = out / self._file_name(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(path, format="PNG", optimize=False)
        if self.depths is not None:
            (out / "depth").mkdir(exist_ok=True)
            np.savez_compressed(out / "depth" / "depth.npz",
                                **{f"{i + 1:06d}": d.astype(np.float16) for i, d in enumerate(self.depths)})
        ann_path = out / "annotations.json"
        tmp = ann_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_coco(), indent=1, sort_keys=True))
        os.replace(tmp, ann_path)
        return ann_path

    def write_coco_set(self, out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write a whole COCO set to a folder that is new or empty (or, with ``overwrite``, that
        holds a set dropt wrote), all at once (see :mod:`generator.out_dir`); returns the
        annotations path."""
        from .out_dir import write_folder

        return write_folder(Path(out_dir), self.write_coco, overwrite=overwrite) / "annotations.json"

    @classmethod
    def read_coco(cls, root: str | os.PathLike, annotations: str | os.PathLike | None = None) -> "Dataset":
        """Read a COCO set: ``root/annotations.json`` and image paths relative to ``root``.

        Categories are re-indexed in id order; annotations keep their category by name."""
        root = Path(root)
        ann_path = Path(annotations) if annotations is not None else root / "annotations.json"
        if not ann_path.is_file():
            raise DatasetError(f"{ann_path}: expected a COCO annotations file, not found")
        try:
            coco = json.loads(ann_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{ann_path}: expected JSON, got a parse error: {e}") from None
        except RecursionError:
            raise DatasetError(f"{ann_path}: expected COCO JSON, got arrays or objects nested too deep to "
                               f"parse") from None
        from .coco_checks import check_coco, check_value_max

        check_coco(coco, root, ann_path)
        cats = sorted(coco["categories"], key=lambda c: c["id"])
        cat_index = {c["id"]: i + 1 for i, c in enumerate(cats)}
        by_image: dict[int, list[ObjectAnnotation]] = {im["id"]: [] for im in coco["images"]}
        for a in sorted(coco["annotations"], key=lambda a: a["id"]):
            seg = a.get("segmentation")
            by_image[a["image_id"]].append(ObjectAnnotation(
                category_id=cat_index[a["category_id"]], bbox=tuple(float(v) for v in a["bbox"]),
                area=float(a.get("area", a["bbox"][2] * a["bbox"][3])),
                segmentation=seg if isinstance(seg, dict) else None,
                visible_fraction=float(a.get("visible_fraction", 1.0)), iscrowd=int(a.get("iscrowd", 0))))
        images, anns, names = [], [], []
        for k, im in enumerate(coco["images"]):
            pixels = _load_image(root / im["file_name"])
            if pixels.shape[:2] != (im["height"], im["width"]):
                raise DatasetError(f"{ann_path}: images[{k}]: expected the {im['width']}×{im['height']} image "
                                   f"the annotations declare, got {pixels.shape[1]}×{pixels.shape[0]} in {im['file_name']}")
            images.append(pixels)
            anns.append(by_image[im["id"]])
            names.append(im["file_name"])
        depths = None
        depth_file = root / "depth" / "depth.npz"
        if depth_file.is_file():
            try:
                with np.load(depth_file, allow_pickle=False) as z:
                    depths = [z[k].astype(np.float32) for k in sorted(z.files)]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise DatasetError(f"{depth_file}: expected the set's depth maps (an .npz archive), got an "
                                   f"unreadable file ({type(e).__name__})") from None
            if len(depths) != len(images):
                raise DatasetError(f"{depth_file}: expected one depth map per image ({len(images)}), got {len(depths)}")
        info = dict(coco.get("info", {}))
        check_value_max(info, images, ann_path)
        return cls(images, anns, [c["name"] for c in cats], info, depths, names)


def concat_datasets(datasets: list[Dataset]) -> Dataset:
    """One dataset from several of the same categories (the first one's info is kept)."""
    first = datasets[0]
    return Dataset([im for d in datasets for im in d.images], [a for d in datasets for a in d.annotations],
                   list(first.categories), dict(first.info))


def _load_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return _to_uint8(im, path)
    except DatasetError:
        raise
    except Image.DecompressionBombError:
        raise DatasetError(f"{path}: expected an image of at most {2 * Image.MAX_IMAGE_PIXELS:,} pixels (PIL's "
                           f"decompression-bomb limit), got a larger one") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: expected a readable image, got {type(e).__name__}: {e}") from None


#: PIL modes of grey pixels wider than 8 bits (16-bit PNGs open as "I;16"), read as 16-bit values
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
WIDE_MAX = 65535


def _to_uint8(im: Image.Image, path: Path) -> np.ndarray:
    """The image's 8-bit pixels: grey (any depth, alpha dropped) as H×W, everything else as H×W×3
    RGB (alpha dropped, palettes expanded). 16-bit grey is scaled (65535 → 255, rounded); PIL
    itself keeps the high byte of 16-bit colour channels."""
    if im.mode == "F":
        raise DatasetError(f"{path}: expected 8- or 16-bit integer pixels, got 32-bit floats (PIL mode F)")
    if im.mode not in WIDE_GREY_MODES:
        grey = im.mode in ("1", "L", "LA", "La")
        return np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8).copy()
    wide = np.asarray(im).astype(np.int64)
    if wide.size and (wide.min() < 0 or wide.max() > WIDE_MAX):
        raise DatasetError(f"{path}: expected 8- or 16-bit pixel values, got values from {wide.min()} to "
                           f"{wide.max()} (PIL mode {im.mode})")
    return ((wide * 255 + WIDE_MAX // 2) // WIDE_MAX).astype(np.uint8)
