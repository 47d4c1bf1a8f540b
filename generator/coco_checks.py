"""Validation of a COCO annotations dict before anything trains on it.

Collects every problem it can find and raises one :class:`DatasetError` naming the first few,
so a user fixes their set in one pass instead of meeting a traceback deep inside training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .dataset import DatasetError

MAX_LISTED = 5


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _inside(root: Path, file_name: str) -> bool:
    """``file_name`` names a file under ``root`` (no absolute path, no ``..`` out of it)."""
    try:
        return (root / file_name).resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False


def _check_ids(items: list, what: str, problems: list[str]) -> set:
    seen, ids = set(), set()
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append(f"{what}[{k}]: expected an object, got {type(item).__name__}")
            continue
        i = item.get("id")
        if not _is_id(i):
            problems.append(f"{what}[{k}].id: expected an integer >= 1, got {i!r}")
        elif i in seen:
            problems.append(f"{what}[{k}].id: expected unique ids, got duplicate {i}")
        else:
            seen.add(i)
            ids.add(i)
    return ids


def check_coco(coco: Any, root: Path, source: Path) -> None:
    problems: list[str] = []
    if not isinstance(coco, dict):
        raise DatasetError(f"{source}: expected a JSON object, got {type(coco).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            problems.append(f"{key}: expected a list, got {'missing key' if key not in coco else type(coco[key]).__name__}")
    if problems:
        raise DatasetError(f"{source}: " + "; ".join(problems))

    cat_ids = _check_ids(coco["categories"], "categories", problems)
    for k, c in enumerate(coco["categories"]):
        if isinstance(c, dict) and not isinstance(c.get("name"), str):
            problems.append(f"categories[{k}].name: expected a string, got {c.get('name')!r}")
    image_ids = _check_ids(coco["images"], "images", problems)
    sizes: dict[int, tuple[int, int]] = {}
    for k, im in enumerate(coco["images"]):
        if not isinstance(im, dict):
            continue
        for key in ("file_name", "width", "height"):
            if key not in im:
                problems.append(f"images[{k}]: expected key {key!r}, missing")
        fn = im.get("file_name")
        if "file_name" in im and not isinstance(fn, str):
            problems.append(f"images[{k}].file_name: expected a string, got {fn!r}")
        elif isinstance(fn, str) and not _inside(root, fn):
            problems.append(f"images[{k}].file_name: expected a path inside the set's folder {root}, got {fn!r}")
        elif isinstance(fn, str) and not (root / fn).is_file():
            problems.append(f"images[{k}].file_name: expected an existing file, {root / fn} not found")
        w, h = im.get("width"), im.get("height")
        good_size = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h))
        if good_size and _is_id(im.get("id")):
            sizes[im["id"]] = (w, h)
        elif "width" in im and "height" in im and not good_size:
            problems.append(f"images[{k}]: expected positive integer width and height, got {w!r}×{h!r}")
    _check_ids(coco["annotations"], "annotations", problems)
    for k, a in enumerate(coco["annotations"]):
        if not isinstance(a, dict):
            continue
        missing = [key for key in ("image_id", "category_id", "bbox") if key not in a]
        if missing:
            problems.append(f"annotations[{k}]: expected keys {missing}, missing")
            continue
        if not _is_id(a["image_id"]) or a["image_id"] not in image_ids:
            problems.append(f"annotations[{k}].image_id: expected an id of images, got {a['image_id']!r}")
        if not _is_id(a["category_id"]) or a["category_id"] not in cat_ids:
            problems.append(f"annotations[{k}].category_id: expected one of {sorted(cat_ids)}, "
                            f"got unknown category {a['category_id']!r}")
        box = a["bbox"]
        if (not isinstance(box, list) or len(box) != 4
                or not all(_is_number(v) for v in box)):
            problems.append(f"annotations[{k}].bbox: expected [x, y, w, h] finite numbers, got {box!r}")
            continue
        x, y, w, h = box
        if w <= 0 or h <= 0:
            problems.append(f"annotations[{k}].bbox: expected positive width and height, got {box}")
        size = sizes.get(a["image_id"]) if _is_id(a["image_id"]) else None
        if size is not None and (x < 0 or y < 0 or x + w > size[0] + 1e-6 or y + h > size[1] + 1e-6):
            problems.append(f"annotations[{k}].bbox: expected a box inside the {size[0]}×{size[1]} image, got {box}")
        if "area" in a and not (_is_number(a["area"]) and a["area"] >= 0):
            problems.append(f"annotations[{k}].area: expected a scalar number (finite, >= 0), got {a['area']!r}")
        if "visible_fraction" in a and not (_is_number(a["visible_fraction"]) and 0 <= a["visible_fraction"] <= 1):
            problems.append(f"annotations[{k}].visible_fraction: expected a number in [0, 1], got {a['visible_fraction']!r}")
        seg = a.get("segmentation")
        if isinstance(seg, dict):
            if size is not None and seg.get("size") != [size[1], size[0]]:
                problems.append(f"annotations[{k}].segmentation.size: expected [{size[1]}, {size[0]}] "
                                f"(the image's height, width), got {seg.get('size')!r}")
            if not isinstance(seg.get("counts"), (str, list)):
                problems.append(f"annotations[{k}].segmentation.counts: expected an RLE string or list, "
                                f"got {type(seg.get('counts')).__name__}")
    if problems:
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise DatasetError(f"{source}: {len(problems)} problem(s): " + "; ".join(problems[:MAX_LISTED]) + more)
