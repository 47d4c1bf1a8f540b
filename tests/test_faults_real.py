"""Bad real sets (COCO input): every wrong field, file or split stops `dropt eval` and `dropt run`
in one line with exit status 2, naming the field, file or image; legitimate inputs (16-bit, grey,
RGBA or palette images, some crowd annotations) load to the right pixels and are scored.

The tables follow gymnasium's tests: (case, the damage, the whole message). ``<ann>``, ``<root>``
and ``<img>`` stand for the damaged split's annotations file, its folder and its second image."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluator.real import check_real_splits, load_coco_real
from generator.dataset import Dataset

from smoke import SMOKE, one_line_exit, tiny


# --------------------------------------------------------------------------------------------
# damage: an edit of a copy of the smoke real set (6 val + 6 test images, 32×32 RGB)
# --------------------------------------------------------------------------------------------

def put(*path_and_value):
    """Set ``coco[k1][k2]... = value`` in the annotations."""
    *path, value = path_and_value

    def edit(coco: dict, root: Path):
        node = coco
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def drop(*path):
    def edit(coco: dict, root: Path):
        node = coco
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


def whole(text: str | bytes):
    """The annotations file's whole text."""
    def edit(coco: dict, root: Path):
        return text
    return edit


def image_file(write):
    """``write(path)`` replaces the split's second image file (images/000002.png)."""
    def edit(coco: dict, root: Path):
        write(root / "images" / "000002.png")
    return edit


def copy_set(real: Path, dst: Path, edit=None, split: str = "val") -> Path:
    shutil.copytree(real, dst)
    if edit is not None:
        path = dst / split / "annotations.json"
        text = edit(coco := json.loads(path.read_text()), dst / split)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(json.dumps(coco) if text is None else text)
    return dst


def png(path: Path, width: int, height: int, bit_depth: int, colour_type: int, rows: bytes = b"") -> None:
    """A PNG written by hand: PIL cannot write 16-bit RGB, nor a header whose size is a lie."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def tiff(values: np.ndarray):
    """An image file of 32-bit pixels (PIL mode F or I) in place of a PNG."""
    return lambda path: Image.fromarray(values).save(path, format="TIFF")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one(problem: str) -> str:
    return f"<ann>: 1 problem(s): {problem}"


VALUE_MAX = "info.value_max: expected a number in (0, 255] (the pixel value of white), got "
BAD_BOX = "annotations[0].bbox: expected [x, y, w, h] finite numbers, got "
SEG = "annotations[0].segmentation"
BAD_SEG = f"{SEG}: expected an RLE object {{size, counts}} or a list of polygons [x1, y1, x2, y2, ...], got "
SIZE = "images[0]: expected positive integer width and height, got "

FIELD_CASES = [
    # the annotations file as a whole
    ("nested 100,000 deep", whole("[" * 100_000 + "]" * 100_000),
     "<ann>: expected COCO JSON, got arrays or objects nested too deep to parse"),
    ("objects nested 50,000 deep", whole("{" + '"a":{' * 50_000 + "}" * 50_001),
     "<ann>: expected COCO JSON, got arrays or objects nested too deep to parse"),
    ("not JSON", whole('{"images": ['),
     "<ann>: expected JSON, got a parse error: Expecting value: line 1 column 13 (char 12)"),
    ("empty", whole(""), "<ann>: expected JSON, got a parse error: Expecting value: line 1 column 1 (char 0)"),
    ("not UTF-8", whole(b"\xff\xfe{}"), "<ann>: expected JSON, got a parse error: 'utf-8' codec can't decode byte "
                                         "0xff in position 0: invalid start byte"),
    ("a list at the top", whole("[]"), "<ann>: expected a JSON object, got list"),
    ("images missing", drop("images"), "<ann>: images: expected a list, got missing key"),
    ("annotations a string", put("annotations", "none"), "<ann>: annotations: expected a list, got str"),
    ("categories an object", put("categories", {"1": "cube"}), "<ann>: categories: expected a list, got dict"),
    # info
    ("info a string", put("info", "hello"), one("info: expected an object, got 'hello'")),
    ("info a list", put("info", [1, 2]), one("info: expected an object, got [1, 2]")),
    ("info null", put("info", None), one("info: expected an object, got None")),
    ("info a number", put("info", 3), one("info: expected an object, got 3")),
    ("info.value_max a string", put("info", "value_max", "255"), one(VALUE_MAX + "'255'")),
    ("info.value_max 0", put("info", "value_max", 0), one(VALUE_MAX + "0")),
    ("info.value_max -1", put("info", "value_max", -1), one(VALUE_MAX + "-1")),
    ("info.value_max NaN", put("info", "value_max", float("nan")), one(VALUE_MAX + "nan")),
    ("info.value_max inf", put("info", "value_max", float("inf")), one(VALUE_MAX + "inf")),
    ("info.value_max true", put("info", "value_max", True), one(VALUE_MAX + "True")),
    ("info.value_max 256", put("info", "value_max", 256), one(VALUE_MAX + "256")),
    ("info.value_max a list", put("info", "value_max", [255]), one(VALUE_MAX + "[255]")),
    ("info.value_max null", put("info", "value_max", None), one(VALUE_MAX + "None")),
    ("info.value_max below the pixels", put("info", "value_max", 16),
     "<ann>: info.value_max: expected at least the set's largest pixel value <brightest>, got 16"),
    # images[]
    ("images[0] a string", put("images", 0, "x"), one("images[0]: expected an object, got 'x'")),
    ("images[0].id a string", put("images", 0, "id", "1"), one("images[0].id: expected an integer >= 1, got '1'")),
    ("images[0].id 0", put("images", 0, "id", 0), one("images[0].id: expected an integer >= 1, got 0")),
    ("images[0].id 1.5", put("images", 0, "id", 1.5), one("images[0].id: expected an integer >= 1, got 1.5")),
    ("images[0].id null", put("images", 0, "id", None), one("images[0].id: expected an integer >= 1, got None")),
    ("images[0].id true", put("images", 0, "id", True), one("images[0].id: expected an integer >= 1, got True")),
    ("images[0].id a duplicate", put("images", 0, "id", 2), one("images[1].id: expected unique ids, got duplicate 2")),
    ("images[0].file_name null", put("images", 0, "file_name", None),
     one("images[0].file_name: expected a string, got None")),
    ("images[0].file_name a number", put("images", 0, "file_name", 5),
     one("images[0].file_name: expected a string, got 5")),
    ("images[0].file_name missing", drop("images", 0, "file_name"),
     one("images[0]: expected key 'file_name', missing")),
    ("images[0].file_name outside the set", put("images", 0, "file_name", "../../x.png"),
     one("images[0].file_name: expected a path inside the set's folder <root>, got '../../x.png'")),
    ("images[0].file_name absolute", put("images", 0, "file_name", "/etc/hostname"),
     one("images[0].file_name: expected a path inside the set's folder <root>, got '/etc/hostname'")),
    ("images[0].file_name not there", put("images", 0, "file_name", "images/gone.png"),
     one("images[0].file_name: expected an existing file, <root>/images/gone.png not found")),
    ("images[0].width a string", put("images", 0, "width", "32"), one(SIZE + "'32'×32")),
    ("images[0].width 32.5", put("images", 0, "width", 32.5), one(SIZE + "32.5×32")),
    ("images[0].width 0", put("images", 0, "width", 0), one(SIZE + "0×32")),
    ("images[0].width -1", put("images", 0, "width", -1), one(SIZE + "-1×32")),
    ("images[0].width null", put("images", 0, "width", None), one(SIZE + "None×32")),
    ("images[0].width true", put("images", 0, "width", True), one(SIZE + "True×32")),
    ("images[0].height a string", put("images", 0, "height", "32"), one(SIZE + "32×'32'")),
    ("images[0].width missing", drop("images", 0, "width"), one("images[0]: expected key 'width', missing")),
    ("images[0].width not the file's", put("images", 0, "width", 64),
     "<ann>: images[0]: expected the 64×32 image the annotations declare, got 32×32 in images/000001.png"),
    # annotations[]
    ("annotations[0] a list", put("annotations", 0, [1, 2]), one("annotations[0]: expected an object, got [1, 2]")),
    ("annotations[0] null", put("annotations", 0, None), one("annotations[0]: expected an object, got None")),
    ("annotations[0].id a string", put("annotations", 0, "id", "1"),
     one("annotations[0].id: expected an integer >= 1, got '1'")),
    ("annotations[0].id null", put("annotations", 0, "id", None),
     one("annotations[0].id: expected an integer >= 1, got None")),
    ("annotations[1].id a duplicate", put("annotations", 1, "id", 1),
     one("annotations[1].id: expected unique ids, got duplicate 1")),
    ("annotations[0].bbox missing", drop("annotations", 0, "bbox"),
     one("annotations[0]: expected keys ['bbox'], missing")),
    ("annotations[0].bbox a string", put("annotations", 0, "bbox", "4,14,9,9"), one(BAD_BOX + "'4,14,9,9'")),
    ("annotations[0].bbox 3 numbers", put("annotations", 0, "bbox", [4, 14, 9]), one(BAD_BOX + "[4, 14, 9]")),
    ("annotations[0].bbox with a string", put("annotations", 0, "bbox", [4, 14, 9, "9"]),
     one(BAD_BOX + "[4, 14, 9, '9']")),
    ("annotations[0].bbox with NaN", put("annotations", 0, "bbox", [4, float("nan"), 9, 9]),
     one(BAD_BOX + "[4, nan, 9, 9]")),
    ("annotations[0].bbox null", put("annotations", 0, "bbox", None), one(BAD_BOX + "None")),
    ("annotations[0].bbox 10,000 numbers", put("annotations", 0, "bbox", [1] * 10_000),
     one(BAD_BOX + "[1, 1, 1, 1, 1, 1, ...]")),
    ("annotations[0].bbox zero width", put("annotations", 0, "bbox", [4, 14, 0, 9]),
     one("annotations[0].bbox: expected positive width and height, got [4, 14, 0, 9]")),
    ("annotations[0].bbox outside the image", put("annotations", 0, "bbox", [30, 30, 10, 10]),
     one("annotations[0].bbox: expected a box inside the 32×32 image, got [30, 30, 10, 10]")),
    ("annotations[0].category_id a string", put("annotations", 0, "category_id", "1"),
     one("annotations[0].category_id: expected one of [1, 2, 3, 4, 5], got unknown category '1'")),
    ("annotations[0].category_id 1.0", put("annotations", 0, "category_id", 1.0),
     one("annotations[0].category_id: expected one of [1, 2, 3, 4, 5], got unknown category 1.0")),
    ("annotations[0].category_id 99", put("annotations", 0, "category_id", 99),
     one("annotations[0].category_id: expected one of [1, 2, 3, 4, 5], got unknown category 99")),
    ("annotations[0].category_id true", put("annotations", 0, "category_id", True),
     one("annotations[0].category_id: expected one of [1, 2, 3, 4, 5], got unknown category True")),
    ("annotations[0].image_id a string", put("annotations", 0, "image_id", "2"),
     one("annotations[0].image_id: expected an id of images, got '2'")),
    ("annotations[0].image_id 99", put("annotations", 0, "image_id", 99),
     one("annotations[0].image_id: expected an id of images, got 99")),
    ("annotations[0].image_id null", put("annotations", 0, "image_id", None),
     one("annotations[0].image_id: expected an id of images, got None")),
    ("annotations[0].area a string", put("annotations", 0, "area", "68"),
     one("annotations[0].area: expected a scalar number (finite, >= 0), got '68'")),
    ("annotations[0].area -1", put("annotations", 0, "area", -1),
     one("annotations[0].area: expected a scalar number (finite, >= 0), got -1")),
    ("annotations[0].area NaN", put("annotations", 0, "area", float("nan")),
     one("annotations[0].area: expected a scalar number (finite, >= 0), got nan")),
    ("annotations[0].area a list", put("annotations", 0, "area", [68]),
     one("annotations[0].area: expected a scalar number (finite, >= 0), got [68]")),
    ("annotations[3].iscrowd 'yes'", put("annotations", 3, "iscrowd", "yes"),
     one("annotations[3].iscrowd: expected 0 or 1, got 'yes'")),
    ("annotations[3].iscrowd null", put("annotations", 3, "iscrowd", None),
     one("annotations[3].iscrowd: expected 0 or 1, got None")),
    ("annotations[3].iscrowd '0'", put("annotations", 3, "iscrowd", "0"),
     one("annotations[3].iscrowd: expected 0 or 1, got '0'")),
    ("annotations[3].iscrowd 2", put("annotations", 3, "iscrowd", 2),
     one("annotations[3].iscrowd: expected 0 or 1, got 2")),
    ("annotations[3].iscrowd -1", put("annotations", 3, "iscrowd", -1),
     one("annotations[3].iscrowd: expected 0 or 1, got -1")),
    ("annotations[3].iscrowd 1.0", put("annotations", 3, "iscrowd", 1.0),
     one("annotations[3].iscrowd: expected 0 or 1, got 1.0")),
    ("annotations[3].iscrowd true", put("annotations", 3, "iscrowd", True),
     one("annotations[3].iscrowd: expected 0 or 1, got True")),
    ("annotations[0].segmentation a string", put("annotations", 0, "segmentation", "x"), one(BAD_SEG + "'x'")),
    ("annotations[0].segmentation a number", put("annotations", 0, "segmentation", 5), one(BAD_SEG + "5")),
    ("annotations[0].segmentation a flat list", put("annotations", 0, "segmentation", [4, 14, 13, 14]),
     one(BAD_SEG + "[4, 14, 13, 14]")),
    ("annotations[0].segmentation an odd polygon", put("annotations", 0, "segmentation", [[4, 14, 13]]),
     one(BAD_SEG + "[[4, 14, 13]]")),
    ("annotations[0].segmentation a polygon of strings", put("annotations", 0, "segmentation", [["4", "14"]]),
     one(BAD_SEG + "[['4', '14']]")),
    ("annotations[0].segmentation.size not the image's", put("annotations", 0, "segmentation", "size", [5, 5]),
     one(f"{SEG}.size: expected [32, 32] (the image's height, width), got [5, 5]")),
    ("annotations[0].segmentation.counts missing", drop("annotations", 0, "segmentation", "counts"),
     one(f"{SEG}.counts: expected an RLE string or list of counts, got None")),
    ("annotations[0].segmentation.counts a number", put("annotations", 0, "segmentation", "counts", 5),
     one(f"{SEG}.counts: expected an RLE string or list of counts, got 5")),
    ("annotations[0].segmentation.counts negative", put("annotations", 0, "segmentation", "counts", [1, -2]),
     one(f"{SEG}.counts: expected an RLE string or list of counts, got [1, -2]")),
    ("annotations[0].visible_fraction a string", put("annotations", 0, "visible_fraction", "most"),
     one("annotations[0].visible_fraction: expected a number in [0, 1], got 'most'")),
    ("annotations[0].visible_fraction 2", put("annotations", 0, "visible_fraction", 2),
     one("annotations[0].visible_fraction: expected a number in [0, 1], got 2")),
    # categories[] (torus, id 5: no annotation of the val split uses it)
    ("categories[4] a number", put("categories", 4, 3), one("categories[4]: expected an object, got 3")),
    ("categories[4].id a string", put("categories", 4, "id", "5"),
     one("categories[4].id: expected an integer >= 1, got '5'")),
    ("categories[4].id 0", put("categories", 4, "id", 0), one("categories[4].id: expected an integer >= 1, got 0")),
    ("categories[4].id null", put("categories", 4, "id", None),
     one("categories[4].id: expected an integer >= 1, got None")),
    ("categories[4].id a duplicate", put("categories", 4, "id", 4),
     one("categories[4].id: expected unique ids, got duplicate 4")),
    ("categories[0].name a number", put("categories", 0, "name", 3),
     one("categories[0].name: expected a string, got 3")),
    ("categories[0].name null", put("categories", 0, "name", None),
     one("categories[0].name: expected a string, got None")),
    ("categories[0].name missing", drop("categories", 0, "name"),
     one("categories[0].name: expected a string, got None")),
    ("categories[1].name a duplicate", put("categories", 1, "name", "cube"),
     one("categories[1].name: expected unique names, got duplicate 'cube'")),
    # the image files
    ("an image of 400 megapixels", image_file(lambda p: png(p, 20_000, 20_000, 1, 0)),
     "<img>: expected an image of at most 178,956,970 pixels (PIL's decompression-bomb limit), got a larger one"),
    ("an image of 32-bit floats", image_file(tiff(np.full((32, 32), 0.5, np.float32))),
     "<img>: expected 8- or 16-bit integer pixels, got 32-bit floats (PIL mode F)"),
    ("an image of 32-bit integers", image_file(tiff(np.full((32, 32), 70_000, np.int32))),
     "<img>: expected 8- or 16-bit pixel values, got values from 70000 to 70000 (PIL mode I)"),
    ("an image of random bytes", image_file(lambda p: p.write_bytes(np.random.default_rng(0).bytes(300))),
     "<img>: expected a readable image, got UnidentifiedImageError: cannot identify image file '<img>'"),
]


def brightest(split: Path) -> int:
    return max(int(np.asarray(Image.open(p)).max()) for p in (split / "images").glob("*.png"))


def expected(want: str, real_set: Path, split: str = "val") -> str:
    root = real_set / split
    return (want.replace("<ann>", str(root / "annotations.json")).replace("<root>", str(root))
            .replace("<img>", str(root / "images" / "000002.png"))
            .replace("<brightest>", str(brightest(root)) if "<brightest>" in want else ""))


def eval_argv(smoke_real: Path, real_set: Path) -> list[str]:
    return ["eval", str(smoke_real / "val"), "--real", str(real_set), "--steps", "1", "--batch-size", "2",
            "--threads", "1", "--device", "cpu"]


def run_argv(real_set: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(SMOKE), "--out", str(out), *[a for kv in tiny(real_set, *extra) for a in ("--set", kv)]]


@pytest.mark.parametrize("case,edit,want", FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_a_bad_coco_field_or_file_is_one_line(smoke_real, tmp_path, capsys, case, edit, want):
    real_set = copy_set(smoke_real, tmp_path / "set", edit)
    before = snapshot(real_set)
    line = one_line_exit(capsys, eval_argv(smoke_real, real_set), 2)
    assert line == "dropt eval: error: " + expected(want, real_set)
    assert snapshot(real_set) == before


RUN_CASES = ["nested 100,000 deep", "info a string", "info a list", "info.value_max a string", "info.value_max 0",
             "info.value_max NaN", "annotations[3].iscrowd 'yes'", "annotations[3].iscrowd null",
             "an image of 400 megapixels"]


@pytest.mark.parametrize("case", RUN_CASES)
def test_dropt_run_refuses_the_same_set_with_the_same_line(smoke_real, tmp_path, capsys, case):
    """`info.value_max = 0` reached the metasim controller as a traceback: metasim reads it."""
    _, edit, want = next(c for c in FIELD_CASES if c[0] == case)
    real_set = copy_set(smoke_real, tmp_path / "set", edit)
    before = snapshot(real_set)
    line = one_line_exit(capsys, run_argv(real_set, tmp_path / "run", 'loop.optimizer="metasim"'), 2)
    assert line == "dropt run: error: " + expected(want, real_set)
    assert snapshot(real_set) == before and not (tmp_path / "run" / "rounds.jsonl").exists()


# --------------------------------------------------------------------------------------------
# sets no score can be trusted on: the same check (and message) for `dropt run` and `dropt eval`
# --------------------------------------------------------------------------------------------

def _no_annotations(coco, root):
    coco["annotations"] = []


def _all_crowd(coco, root):
    for a in coco["annotations"]:
        a["iscrowd"] = 1


def _test_links_to_val(real_set: Path):
    shutil.rmtree(real_set / "test")
    (real_set / "test").symlink_to("val")


def _test_copies_val(real_set: Path):
    shutil.rmtree(real_set / "test")
    shutil.copytree(real_set / "val", real_set / "test")


def _test_image_copies_a_val_image(real_set: Path):
    shutil.copy(real_set / "val" / "images" / "000002.png", real_set / "test" / "images" / "000004.png")


def _test_image_has_a_val_image_pixels(real_set: Path):
    """Other bytes (another PNG compression), the same decoded pixels."""
    Image.open(real_set / "val" / "images" / "000002.png").save(real_set / "test" / "images" / "000004.png",
                                                                compress_level=0)


def _grey_val_image(real_set: Path):
    path = real_set / "val" / "images" / "000001.png"
    Image.open(path).convert("L").save(path)


def _in_split(split, edit):
    def damage(real_set: Path):
        path = real_set / split / "annotations.json"
        coco = json.loads(path.read_text())
        edit(coco, real_set / split)
        path.write_text(json.dumps(coco))
    return damage


def _both(edit):
    def damage(real_set: Path):
        _in_split("val", edit)(real_set)
        _in_split("test", edit)(real_set)
    return damage


def _unsplit_three_images(real_set: Path):
    """One set of 3 images (split here: 1 for val)."""
    val = Dataset.read_coco(real_set / "val")
    shutil.rmtree(real_set)
    val.subset([0, 1, 2]).write_coco(real_set)


SHARED = "expected val and test splits with no image in common (TEST must never be seen by the search), got "
SPLIT_CASES = [
    ("no annotations at all", _both(_no_annotations), "expected annotations in the val split, got none"),
    ("no test annotations", _in_split("test", _no_annotations), "expected annotations in the test split, got none"),
    ("every annotation a crowd", _both(_all_crowd), "expected non-crowd annotations (iscrowd 0) in the val split, "
                                                    "got only crowd ones, which COCO scoring ignores"),
    ("every test annotation a crowd", _in_split("test", _all_crowd),
     "expected non-crowd annotations (iscrowd 0) in the test split, got only crowd ones, which COCO scoring ignores"),
    ("test/ a link to val/", _test_links_to_val,
     SHARED + "test image images/000001.png identical to val image images/000001.png"),
    ("test/ a copy of val/", _test_copies_val,
     SHARED + "test image images/000001.png identical to val image images/000001.png"),
    ("a test image a copy of a val image", _test_image_copies_a_val_image,
     SHARED + "test image images/000004.png identical to val image images/000002.png"),
    ("a test image with a val image's pixels", _test_image_has_a_val_image_pixels,
     SHARED + "test image images/000004.png identical to val image images/000002.png"),
    ("a grey image among RGB", _grey_val_image,
     "expected val images of one size and channel count, got 32×32 and 32×32×3"),
    ("3 images, 1 for val", _unsplit_three_images, "expected at least 2 images in the val split, got 1"),
]


@pytest.mark.parametrize("command", ["eval", "run"])
@pytest.mark.parametrize("case,damage,want", SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_a_set_no_score_can_be_trusted_on_is_refused_alike(smoke_real, tmp_path, capsys, command, case, damage,
                                                          want):
    real_set = copy_set(smoke_real, tmp_path / "set")
    damage(real_set)
    before = snapshot(real_set)
    argv = eval_argv(smoke_real, real_set) if command == "eval" else run_argv(real_set, tmp_path / "run")
    key = "--real" if command == "eval" else "evaluator.real"
    source = f"{real_set} (split with seed 0)" if case.startswith("3 images") else f"{real_set} (pre-split)"
    assert one_line_exit(capsys, argv, 2) == f"dropt {command}: error: {key}: {want} ({source})"
    assert snapshot(real_set) == before and not (tmp_path / "run" / "rounds.jsonl").exists()


# --------------------------------------------------------------------------------------------
# legitimate inputs: the right pixels, the right score
# --------------------------------------------------------------------------------------------

def _resave_images(real_set: Path, convert) -> Path:
    for path in real_set.glob("*/images/*.png"):
        convert(Image.open(path).convert("RGB")).save(path)
    return real_set


def _as_16_bit(im: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)


def test_a_16_bit_grey_set_loads_as_its_8_bit_copy(smoke_real, tmp_path):
    grey8 = _resave_images(copy_set(smoke_real, tmp_path / "grey8"), lambda im: im.convert("L"))
    grey16 = _resave_images(copy_set(smoke_real, tmp_path / "grey16"), _as_16_bit)
    assert Image.open(grey16 / "val" / "images" / "000001.png").mode == "I;16"
    for split in ("val", "test"):
        narrow, wide = Dataset.read_coco(grey8 / split), Dataset.read_coco(grey16 / split)
        for a, b in zip(narrow.images, wide.images):
            assert b.dtype == np.uint8 and b.shape == a.shape == (32, 32)
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        assert len({int(v) for im in wide.images for v in np.unique(im)}) > 20     # not all 255 (the old bug)
    check_real_splits(load_coco_real(grey16), "evaluator.real")


def test_16_bit_grey_values_scale_to_8_bits_rounded(smoke_real, tmp_path):
    real_set = copy_set(smoke_real, tmp_path / "set")
    values = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    Image.fromarray(values).save(real_set / "val" / "images" / "000001.png")
    got = Dataset.read_coco(real_set / "val").images[0]
    assert got[0, 0] == 0 and got[-1, -1] == 255
    assert np.array_equal(got, np.round(values / 257).astype(np.uint8))
    assert np.abs(got.astype(int) - (values >> 8)).max() <= 1


def test_a_16_bit_rgb_png_loads_as_its_8_bit_copy(smoke_real, tmp_path):
    real_set = copy_set(smoke_real, tmp_path / "set")
    path = real_set / "val" / "images" / "000002.png"
    rgb8 = np.asarray(Image.open(path).convert("RGB"))
    rows = (rgb8.astype(np.uint16) * 257).astype(">u2").reshape(32, -1)
    png(path, 32, 32, 16, 2, b"".join(b"\x00" + row.tobytes() for row in rows))
    got = Dataset.read_coco(real_set / "val").images[1]
    assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
    assert np.abs(got.astype(int) - rgb8).max() <= 1


MODES = [
    # (PIL mode the file is saved in, what the loaded pixels must equal)
    ("RGBA", lambda rgb: rgb),                                         # alpha dropped
    ("P", lambda rgb: np.asarray(Image.fromarray(rgb).convert("P").convert("RGB"))),
    ("L", lambda rgb: np.asarray(Image.fromarray(rgb).convert("L"))),
    ("LA", lambda rgb: np.asarray(Image.fromarray(rgb).convert("L"))),  # grey, alpha dropped
    ("1", lambda rgb: np.asarray(Image.fromarray(rgb).convert("1").convert("L"))),
]


@pytest.mark.parametrize("mode,want", MODES, ids=[m for m, _ in MODES])
def test_rgba_palette_and_grey_images_load_as_8_bit_pixels(smoke_real, tmp_path, mode, want):
    real_set = copy_set(smoke_real, tmp_path / "set")
    path = real_set / "val" / "images" / "000002.png"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    im = Image.fromarray(rgb).convert(mode)
    if mode == "RGBA":
        im.putalpha(Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32)))
    im.save(path)
    got = Dataset.read_coco(real_set / "val").images[1]
    assert got.dtype == np.uint8 and np.array_equal(got, want(rgb))


def test_an_all_grey_set_is_scored_as_three_equal_channels_for_an_rgb_generator(smoke_real, tmp_path):
    """The smoke generator renders RGB; a grey real set is accepted and the detector sees each grey
    image as R = G = B: its detections on the grey set are those on an RGB copy of equal channels."""
    import torch

    from evaluator.centernet import images_to_tensor
    from evaluator.detection import DetectionEvaluator
    from evaluator.features import RandomConvFeatures
    from loop.config import load_config
    from loop.engine import load_real

    grey_set = _resave_images(copy_set(smoke_real, tmp_path / "grey"), lambda im: im.convert("L"))
    equal_rgb = _resave_images(copy_set(smoke_real, tmp_path / "rgb"), lambda im: im.convert("L").convert("RGB"))
    cfg = load_config(SMOKE, tiny(grey_set))
    generator = cfg.build_generator()
    try:
        grey = load_real(cfg, categories=generator.categories, log=lambda m: None)
    finally:
        generator.close()
    rgb = load_coco_real(equal_rgb)
    assert grey.val.images[0].shape == (32, 32) and rgb.val.images[0].shape == (32, 32, 3)
    model = DetectionEvaluator(grey, width=8, device="cpu").new_model(seed=0).eval()
    for split in ("val", "test"):
        with torch.no_grad():    # heatmap, sizes and offsets: what the detections are decoded from
            got = model(images_to_tensor(getattr(grey, split).stacked_images()))
            want = model(images_to_tensor(getattr(rgb, split).stacked_images()))
        assert not torch.equal(got[0][0], got[0][1])                  # the outputs do depend on the pixels
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    features = RandomConvFeatures(0)
    assert np.allclose(features(np.stack(grey.val.images)), features(np.stack(rgb.val.images)), atol=1e-5)


def test_some_crowd_annotations_are_accepted_and_ignored_by_the_score(smoke_real, tmp_path, capsys):
    from evaluator.coco_metrics import Detections, detection_scores

    real_set = copy_set(smoke_real, tmp_path / "set", put("annotations", 0, "iscrowd", 1))
    real = load_coco_real(real_set)
    check_real_splits(real, "evaluator.real")
    crowd = [[o.iscrowd for o in objs] for objs in real.val.annotations]
    assert sum(map(sum, crowd)) == 1
    # detections of the non-crowd objects only: a perfect score (the crowd region is not a miss)
    found = [Detections(np.array([o.bbox for o in objs if not o.iscrowd], np.float32).reshape(-1, 4),
                        np.ones(sum(not o.iscrowd for o in objs), np.float32),
                        np.array([o.category_id for o in objs if not o.iscrowd], np.int64))
             for objs in real.val.annotations]
    assert detection_scores(real.val, found)["ap50"] == 1.0
    counted = Dataset.read_coco(smoke_real / "val")            # the same objects, none a crowd
    assert detection_scores(counted, found)["ap50"] < 1.0
    from loop.front.cli import main

    capsys.readouterr()
    assert main(eval_argv(smoke_real, real_set) + ["--json"]) == 0       # `dropt eval` scores it
    scores = json.loads(capsys.readouterr().out)
    assert all(np.isfinite(scores[k]) for k in ("val_ap50", "test_ap50")), scores

