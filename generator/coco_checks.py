"""Validation of a COCO annotations dict before anything trains on it.

Collects every problem it can find and raises one :class:`DatasetError` naming the first few,
so a user fixes their set in one pass instead of meeting a traceback deep inside training.
"""

from __future__ import annotations

import math
import reprlib
from pathlib import Path
from typing import Any

from .dataset import DatasetError

MAX_LISTED = 5
#: pixel value of white in the 8-bit images dropt loads: the largest ``info.value_max``
WHITE = 255

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 40, 40, 6, 4, 3


def _show(v: Any) -> str:
    """``repr`` cut short: a value of a million entries or nested 1,000 deep gives one short line."""
    return _SHORT.repr(v)


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
            problems.append(f"{what}[{k}]: expected an object, got {_show(item)}")
            continue
        i = item.get("id")
        if not _is_id(i):
            problems.append(f"{what}[{k}].id: expected an integer >= 1, got {_show(i)}")
        elif i in seen:
            problems.append(f"{what}[{k}].id: expected unique ids, got duplicate {i}")
        else:
            seen.add(i)
            ids.add(i)
    return ids


def check_coco(coco: Any, root: Path, source: Path) -> None:
    """Every problem of the annotations ``coco`` read from ``source`` (images under ``root``), as
    one :class:`DatasetError` naming the first few: each field a reader or the scoring uses."""
    if not isinstance(coco, dict):
        raise DatasetError(f"{source}: expected a JSON object, got {type(coco).__name__}")
    top = [f"{key}: expected a list, got {'missing key' if key not in coco else type(coco[key]).__name__}"
           for key in ("images", "annotations", "categories") if not isinstance(coco.get(key), list)]
    if top:
        raise DatasetError(f"{source}: " + "; ".join(top))
    problems: list[str] = []
    _check_info(coco, problems)
    cat_ids = _check_categories(coco["categories"], problems)
    image_ids, sizes = _check_images(coco["images"], root, problems)
    _check_ids(coco["annotations"], "annotations", problems)
    for k, a in enumerate(coco["annotations"]):
        if isinstance(a, dict):
            _check_annotation(f"annotations[{k}]", a, image_ids, cat_ids, sizes, problems)
    if problems:
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise DatasetError(f"{source}: {len(problems)} problem(s): " + "; ".join(problems[:MAX_LISTED]) + more)


def _check_info(coco: dict, problems: list[str]) -> None:
    """``info`` is free-form but an object; its ``value_max`` (the pixel value of white, which
    the evaluators divide by) a number in (0, 255]."""
    if "info" not in coco:
        return
    info = coco["info"]
    if not isinstance(info, dict):
        problems.append(f"info: expected an object, got {_show(info)}")
    elif "value_max" in info and not (_is_number(info["value_max"]) and 0 < info["value_max"] <= WHITE):
        problems.append(f"info.value_max: expected a number in (0, {WHITE}] (the pixel value of white), "
                        f"got {_show(info['value_max'])}")


def check_value_max(info: dict, images: list, source: Path) -> None:
    """No pixel of a set brighter than its ``info.value_max`` (white)."""
    value_max = info.get("value_max")
    brightest = max((int(im.max()) for im in images if im.size), default=0)
    if value_max is not None and brightest > value_max:
        raise DatasetError(f"{source}: info.value_max: expected at least the set's largest pixel value "
                           f"{brightest}, got {_show(value_max)}")


def _check_categories(categories: list, problems: list[str]) -> set:
    """The valid category ids; names must be strings, each once (categories match by name)."""
    ids, names = _check_ids(categories, "categories", problems), set()
    for k, c in enumerate(categories):
        if not isinstance(c, dict):
            continue
        name = c.get("name")
        if not isinstance(name, str):
            problems.append(f"categories[{k}].name: expected a string, got {_show(name)}")
        elif name in names:
            problems.append(f"categories[{k}].name: expected unique names, got duplicate {_show(name)}")
        names.add(name)
    return ids


def _check_images(images: list, root: Path, problems: list[str]) -> tuple[set, dict[int, tuple[int, int]]]:
    """The valid image ids and each valid image's (width, height)."""
    ids = _check_ids(images, "images", problems)
    sizes: dict[int, tuple[int, int]] = {}
    for k, im in enumerate(images):
        if not isinstance(im, dict):
            continue
        for key in ("file_name", "width", "height"):
            if key not in im:
                problems.append(f"images[{k}]: expected key {_show(key)}, missing")
        fn = im.get("file_name")
        if "file_name" in im and not isinstance(fn, str):
            problems.append(f"images[{k}].file_name: expected a string, got {_show(fn)}")
        elif isinstance(fn, str) and not _inside(root, fn):
            problems.append(f"images[{k}].file_name: expected a path inside the set's folder {root}, got {_show(fn)}")
        elif isinstance(fn, str) and not (root / fn).is_file():
            problems.append(f"images[{k}].file_name: expected an existing file, {root / fn} not found")
        w, h = im.get("width"), im.get("height")
        good_size = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h))
        if good_size and _is_id(im.get("id")):
            sizes[im["id"]] = (w, h)
        elif "width" in im and "height" in im and not good_size:
            problems.append(f"images[{k}]: expected positive integer width and height, got {_show(w)}×{_show(h)}")
    return ids, sizes


def _check_annotation(at: str, a: dict, image_ids: set, cat_ids: set, sizes: dict, problems: list[str]) -> None:
    missing = [key for key in ("image_id", "category_id", "bbox") if key not in a]
    if missing:
        problems.append(f"{at}: expected keys {missing}, missing")
        return
    if not _is_id(a["image_id"]) or a["image_id"] not in image_ids:
        problems.append(f"{at}.image_id: expected an id of images, got {_show(a['image_id'])}")
    if not _is_id(a["category_id"]) or a["category_id"] not in cat_ids:
        problems.append(f"{at}.category_id: expected one of {sorted(cat_ids)}, "
                        f"got unknown category {_show(a['category_id'])}")
    if "iscrowd" in a and not (type(a["iscrowd"]) is int and a["iscrowd"] in (0, 1)):
        problems.append(f"{at}.iscrowd: expected 0 or 1, got {_show(a['iscrowd'])}")
    if "area" in a and not (_is_number(a["area"]) and a["area"] >= 0):
        problems.append(f"{at}.area: expected a scalar number (finite, >= 0), got {_show(a['area'])}")
    if "visible_fraction" in a and not (_is_number(a["visible_fraction"]) and 0 <= a["visible_fraction"] <= 1):
        problems.append(f"{at}.visible_fraction: expected a number in [0, 1], got {_show(a['visible_fraction'])}")
    size = sizes.get(a["image_id"]) if _is_id(a["image_id"]) else None
    problems += _segmentation_problems(at + ".segmentation", a.get("segmentation"), size)
    box = a["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        problems.append(f"{at}.bbox: expected [x, y, w, h] finite numbers, got {_show(box)}")
        return
    x, y, w, h = box
    if w <= 0 or h <= 0:
        problems.append(f"{at}.bbox: expected positive width and height, got {box}")
    if size is not None and (x < 0 or y < 0 or x + w > size[0] + 1e-6 or y + h > size[1] + 1e-6):
        problems.append(f"{at}.bbox: expected a box inside the {size[0]}×{size[1]} image, got {box}")


def _segmentation_problems(at: str, seg: Any, size: tuple[int, int] | None) -> list[str]:
    """A COCO segmentation is absent, an RLE ``{size, counts}`` of the image's size, or a list of
    polygons ``[x1, y1, x2, y2, ...]``."""
    if seg is None or (isinstance(seg, list) and all(
            isinstance(p, list) and len(p) % 2 == 0 and all(_is_number(v) for v in p) for p in seg)):
        return []
    if not isinstance(seg, dict):
        return [f"{at}: expected an RLE object {{size, counts}} or a list of polygons [x1, y1, x2, y2, ...], "
                f"got {_show(seg)}"]
    out = []
    if size is not None and seg.get("size") != [size[1], size[0]]:
        out.append(f"{at}.size: expected [{size[1]}, {size[0]}] (the image's height, width), "
                   f"got {_show(seg.get('size'))}")
    counts = seg.get("counts")
    if not (isinstance(counts, str) or isinstance(counts, list) and all(type(c) is int and c >= 0 for c in counts)):
        out.append(f"{at}.counts: expected an RLE string or list of counts, got {_show(counts)}")
    return out
