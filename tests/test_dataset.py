"""Tests for generator.dataset: Dataset / ObjectAnnotation and COCO I/O (no rendering)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generator.dataset import Dataset, DatasetError, ObjectAnnotation

CATEGORIES = ["cube", "sphere", "torus"]


def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def make_masks():
    """(image shape, [(category_id, mask, visible_fraction)]) per image."""
    h0, w0 = 24, 32
    rect = np.zeros((h0, w0), bool)
    rect[3:9, 5:17] = True
    blob = _disk(h0, w0, 15, 22, 5)
    blob[15, 22] = False  # a hole
    split = np.zeros((h0, w0), bool)
    split[20:24, 0:3] = True
    split[0:2, 28:32] = True  # two pieces, touching opposite corners
    h1, w1 = 20, 16
    pixel = np.zeros((h1, w1), bool)
    pixel[7, 11] = True
    full = np.ones((h1, w1), bool)
    return [
        ((h0, w0, 3), [(1, rect, 1.0), (2, blob, 0.75), (3, split, 0.3333)]),
        ((h1, w1), [(3, pixel, 0.05), (1, full, 1.0)]),
        ((8, 8, 3), []),
    ]


def make_dataset(seed: int = 0, **kw) -> tuple[Dataset, list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    images, anns, masks = [], [], []
    for shape, objs in make_masks():
        images.append(rng.integers(0, 256, shape, dtype=np.uint8))
        anns.append([ObjectAnnotation.from_mask(c, m, v) for c, m, v in objs])
        masks.append([m for _, m, _ in objs])
    return Dataset(images, anns, list(CATEGORIES), info={"seed": seed, "note": "synthetic"}, **kw), masks


@pytest.fixture
def written(tmp_path):
    ds, masks = make_dataset()
    root = tmp_path / "set"
    path = ds.write_coco(root)
    return ds, masks, root, path


# --------------------------------------------------------------------------------------------
# ObjectAnnotation.from_mask
# --------------------------------------------------------------------------------------------

def test_from_mask_box_is_tight_and_area_is_pixel_count():
    for _, objs in make_masks():
        for cat, m, vis in objs:
            a = ObjectAnnotation.from_mask(cat, m, vis)
            ys, xs = np.nonzero(m)
            assert a.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert all(isinstance(v, float) for v in a.bbox)
            x, y, w, h = (int(v) for v in a.bbox)
            # tight: every edge row/column of the box touches the mask, nothing outside it
            assert m[y:y + h, x:x + w].sum() == m.sum()
            crop = m[y:y + h, x:x + w]
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()
            assert a.area == float(m.sum()) and isinstance(a.area, float)
            assert a.category_id == cat and a.visible_fraction == vis
            assert a.segmentation["size"] == list(m.shape)
            assert isinstance(a.segmentation["counts"], str)
            assert np.array_equal(a.mask(), m)


@pytest.mark.parametrize("seed", range(5))
def test_from_mask_random_masks(seed):
    rng = np.random.default_rng(seed)
    m = rng.random((13, 29)) < 0.05
    m[rng.integers(13), rng.integers(29)] = True
    a = ObjectAnnotation.from_mask(1, m)
    ys, xs = np.nonzero(m)
    assert a.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert a.area == m.sum()
    assert np.array_equal(a.mask(), m)


def test_mask_without_segmentation_raises():
    with pytest.raises(DatasetError, match="segmentation"):
        ObjectAnnotation(1, (0.0, 0.0, 1.0, 1.0), 1.0).mask()


def test_dataset_validates_images():
    with pytest.raises(DatasetError, match="image 0"):
        Dataset([np.zeros((4, 4), np.float32)], [[]], ["a"])
    with pytest.raises(DatasetError, match="annotation list"):
        Dataset([np.zeros((4, 4), np.uint8)], [], ["a"])


# --------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------

def test_write_read_round_trip(written):
    ds, masks, root, path = written
    assert path == root / "annotations.json" and path.is_file()
    back = Dataset.read_coco(root)
    assert len(back) == len(ds) == 3
    assert back.categories == CATEGORIES
    assert back.info["seed"] == 0 and back.info["note"] == "synthetic"
    for i in range(len(ds)):
        assert back.images[i].dtype == np.uint8
        assert back.images[i].shape == ds.images[i].shape
        assert back.images[i].tobytes() == ds.images[i].tobytes()
        assert len(back.annotations[i]) == len(ds.annotations[i])
        for a, b, m in zip(ds.annotations[i], back.annotations[i], masks[i]):
            assert b.category_id == a.category_id
            assert b.bbox == a.bbox
            assert b.area == a.area == float(m.sum())
            assert b.visible_fraction == a.visible_fraction
            assert b.iscrowd == 0
            assert b.mask().shape == m.shape
            assert np.array_equal(b.mask(), m)
    assert back.file_names == [f"images/{i:06d}.png" for i in (1, 2, 3)]
    assert back.depths is None


def test_read_then_write_is_byte_identical(written, tmp_path):
    ds, _, root, path = written
    again = Dataset.read_coco(root).write_coco(tmp_path / "again")
    assert again.read_bytes() == path.read_bytes()
    for i in (1, 2, 3):
        name = f"images/{i:06d}.png"
        assert (tmp_path / "again" / name).read_bytes() == (root / name).read_bytes()


def _with_depths(ds):
    ds.depths = [np.linspace(0.5, 9.5, im.shape[0] * im.shape[1], dtype=np.float32).reshape(im.shape[:2])
                 for im in ds.images]
    return ds


def test_depth_round_trip(tmp_path):
    ds, _ = make_dataset()
    ds = _with_depths(ds.subset([0, 0]))
    ds.write_coco(tmp_path / "d")
    back = Dataset.read_coco(tmp_path / "d")
    assert back.depths is not None and len(back.depths) == 2
    for a, b in zip(ds.depths, back.depths):
        assert b.dtype == np.float32 and b.shape == a.shape
        np.testing.assert_allclose(b, a, rtol=1e-3)


def test_depth_of_mixed_image_sizes_round_trips_or_raises_dataset_error(tmp_path):
    # images of different sizes are allowed; depths of those sizes must not crash write_coco
    ds = _with_depths(make_dataset()[0])
    try:
        ds.write_coco(tmp_path / "d")
    except DatasetError:
        return
    back = Dataset.read_coco(tmp_path / "d")
    assert [d.shape for d in back.depths] == [d.shape for d in ds.depths]


def test_category_ids_reindexed_by_name(written):
    _, _, root, path = written
    coco = json.loads(path.read_text())
    # renumber categories 1,2,3 -> 30,10,20 and shuffle; names must follow their annotations
    new_ids = {1: 30, 2: 10, 3: 20}
    for c in coco["categories"]:
        c["id"] = new_ids[c["id"]]
    coco["categories"].reverse()
    names_before = [CATEGORIES[a["category_id"] - 1] for a in coco["annotations"]]
    for a in coco["annotations"]:
        a["category_id"] = new_ids[a["category_id"]]
    path.write_text(json.dumps(coco))
    back = Dataset.read_coco(root)
    assert back.categories == ["sphere", "torus", "cube"]
    names_after = [back.categories[a.category_id - 1] for objs in back.annotations for a in objs]
    assert names_after == names_before


def test_subset_and_stack():
    ds, _ = make_dataset()
    sub = ds.subset([2, 0])
    assert len(sub) == 2 and sub.images[0] is ds.images[2] and sub.annotations[1] is ds.annotations[0]
    with pytest.raises(DatasetError, match="one size"):
        ds.stacked_images()
    same = ds.subset([0, 0])
    assert same.stacked_images().shape == (2, 24, 32, 3)


# --------------------------------------------------------------------------------------------
# The annotations.json format
# --------------------------------------------------------------------------------------------

def test_annotations_json_format(written):
    ds, masks, root, path = written
    coco = json.loads(path.read_text())
    assert set(coco) >= {"info", "images", "annotations", "categories"}
    assert isinstance(coco["info"], dict) and coco["info"]["seed"] == 0
    img_ids = [im["id"] for im in coco["images"]]
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert img_ids == list(range(1, len(ds) + 1))
    assert ann_ids == list(range(1, sum(len(a) for a in ds.annotations) + 1))
    assert len(set(ann_ids)) == len(ann_ids)
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    assert [c["name"] for c in coco["categories"]] == CATEGORIES
    for im, arr in zip(coco["images"], ds.images):
        assert (im["height"], im["width"]) == arr.shape[:2]
        assert (root / im["file_name"]).is_file()
    flat_masks = [m for ms in masks for m in ms]
    expected_image = [i + 1 for i, ms in enumerate(masks) for _ in ms]
    for a, m, img in zip(coco["annotations"], flat_masks, expected_image):
        assert a["image_id"] == img
        assert isinstance(a["area"], (int, float)) and not isinstance(a["area"], bool)
        assert a["area"] == m.sum()
        assert isinstance(a["bbox"], list) and len(a["bbox"]) == 4
        x, y, w, h = a["bbox"]
        ys, xs = np.nonzero(m)
        assert [x, y, w, h] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert w > 0 and h > 0
        assert a["iscrowd"] == 0
        assert isinstance(a["segmentation"], dict) and isinstance(a["segmentation"]["counts"], str)
        assert 0.0 <= a["visible_fraction"] <= 1.0


def test_pycocotools_loads_and_decodes(written):
    from pycocotools.coco import COCO

    ds, masks, root, path = written
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert sorted(coco.getCatIds()) == [1, 2, 3]
    for i, ms in enumerate(masks):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[i + 1]))
        assert len(anns) == len(ms)
        for ann, m in zip(sorted(anns, key=lambda a: a["id"]), ms):
            assert np.array_equal(coco.annToMask(ann).astype(bool), m)
            assert coco.annToMask(ann).sum() == ann["area"]


def test_write_twice_is_byte_identical(tmp_path):
    a, _ = make_dataset(seed=3)
    b, _ = make_dataset(seed=3)
    pa, pb = a.write_coco(tmp_path / "a"), b.write_coco(tmp_path / "b")
    a.write_coco(tmp_path / "a")  # rewriting in place changes nothing either
    assert pa.read_bytes() == pb.read_bytes()
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    assert [str(p) for p in files_a] == ["annotations.json", "images/000001.png", "images/000002.png",
                                         "images/000003.png"]
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    c, _ = make_dataset(seed=4)
    assert c.write_coco(tmp_path / "c").read_bytes() != pa.read_bytes() or \
        (tmp_path / "c/images/000001.png").read_bytes() != (tmp_path / "a/images/000001.png").read_bytes()


# --------------------------------------------------------------------------------------------
# Malformed COCO
# --------------------------------------------------------------------------------------------

def _ann(coco, k=0):
    return coco["annotations"][k]


def _set(path_keys, value):
    def mutate(coco, root):
        obj = coco
        for key in path_keys[:-1]:
            obj = obj[key]
        obj[path_keys[-1]] = value
    return mutate


def _delete_key(path_keys):
    def mutate(coco, root):
        obj = coco
        for key in path_keys[:-1]:
            obj = obj[key]
        del obj[path_keys[-1]]
    return mutate


def _remove_file(rel):
    def mutate(coco, root):
        (root / rel).unlink()
    return mutate


def _garbage_image(coco, root):
    (root / "images/000002.png").write_bytes(b"\x89PNG not really a png" + bytes(range(256)))


def _duplicate_ann_id(coco, root):
    coco["annotations"][2]["id"] = coco["annotations"][1]["id"]


def _duplicate_image_id(coco, root):
    coco["images"][1]["id"] = coco["images"][0]["id"]


def _whole_file(text):
    def mutate(coco, root):
        return text
    return mutate


MALFORMED = [
    ("missing image file", _remove_file("images/000001.png"), "expected an existing file"),
    ("bbox past right edge", _set(["annotations", 0, "bbox"], [20.0, 3.0, 13.0, 6.0]), "expected a box inside"),
    ("bbox past bottom edge", _set(["annotations", 3, "bbox"], [0.0, 15.0, 5.0, 6.0]), "expected a box inside"),
    ("bbox negative x", _set(["annotations", 0, "bbox"], [-1.0, 3.0, 5.0, 6.0]), "expected a box inside"),
    ("bbox zero width", _set(["annotations", 0, "bbox"], [5.0, 3.0, 0.0, 6.0]), "expected positive width and height"),
    ("bbox negative height", _set(["annotations", 1, "bbox"], [5.0, 3.0, 2.0, -6.0]),
     "expected positive width and height"),
    ("bbox three numbers", _set(["annotations", 0, "bbox"], [5.0, 3.0, 2.0]), "expected [x, y, w, h]"),
    ("bbox strings", _set(["annotations", 0, "bbox"], ["5", 3.0, 2.0, 2.0]), "expected [x, y, w, h]"),
    ("unknown category id", _set(["annotations", 1, "category_id"], 99), "unknown category"),
    ("unknown image id", _set(["annotations", 1, "image_id"], 42), "expected an id of images"),
    ("duplicate annotation ids", _duplicate_ann_id, "expected unique ids"),
    ("duplicate image ids", _duplicate_image_id, "expected unique ids"),
    ("zero annotation id", _set(["annotations", 0, "id"], 0), "expected an integer >= 1"),
    ("zero image id", _set(["images", 0, "id"], 0), "expected an integer >= 1"),
    ("zero category id", _set(["categories", 0, "id"], 0), "expected an integer >= 1"),
    ("string annotation id", _set(["annotations", 0, "id"], "1"), "expected an integer >= 1"),
    ("bool image id", _set(["images", 2, "id"], True), "expected an integer >= 1"),
    ("missing images", _delete_key(["images"]), "images: expected a list, got missing key"),
    ("missing annotations", _delete_key(["annotations"]), "annotations: expected a list"),
    ("categories not a list", _set(["categories"], {"1": "cube"}), "categories: expected a list"),
    ("annotation without bbox", _delete_key(["annotations", 2, "bbox"]), "expected keys ['bbox'], missing"),
    ("annotation without image_id", _delete_key(["annotations", 0, "image_id"]), "image_id"),
    ("image without width", _delete_key(["images", 1, "width"]), "expected key 'width', missing"),
    ("image zero height", _set(["images", 0, "height"], 0), "positive integer width and height"),
    ("category without name", _delete_key(["categories", 1, "name"]), "categories[1].name"),
    ("area is a list", _set(["annotations", 0, "area"], [72.0]), "expected a scalar number"),
    ("annotation not an object", _set(["annotations", 1], [1, 2, 3]), "expected an object"),
    ("unreadable image file", _garbage_image, "expected a readable image"),
    ("invalid JSON", _whole_file('{"images": [1, 2'), "expected JSON"),
    ("top level is a list", _whole_file("[]"), "expected a JSON object"),
    ("missing annotations file", _remove_file("annotations.json"), "expected a COCO annotations file"),
]


@pytest.mark.parametrize("mutate,fragment", [(m, f) for _, m, f in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_malformed_coco_raises(written, mutate, fragment):
    _, _, root, path = written
    coco = json.loads(path.read_text())
    text = mutate(coco, root)
    if path.exists():
        path.write_text(text if isinstance(text, str) else json.dumps(coco))
    with pytest.raises(DatasetError) as exc:
        Dataset.read_coco(root)
    assert fragment in str(exc.value), str(exc.value)


def _file_name_int(coco, root):
    coco["images"][0]["file_name"] = 5


def _size_mismatch(coco, root):
    coco["images"][0]["width"], coco["images"][0]["height"] = 100, 100  # the file is 32×24


def _segmentation_size_mismatch(coco, root):
    coco["annotations"][0]["segmentation"] = ObjectAnnotation.from_mask(
        1, np.ones((5, 5), bool)).segmentation  # image 1 is 24×32


MALFORMED_MORE = [
    ("image_id is a list", _set(["annotations", 0, "image_id"], [1]), "image_id"),
    ("category_id is a list", _set(["annotations", 0, "category_id"], [1]), "category_id"),
    ("file_name is a number", _file_name_int, "file_name"),
    ("bbox with NaN", _set(["annotations", 0, "bbox"], [float("nan"), 3.0, 5.0, 6.0]), "bbox"),
    ("area is NaN", _set(["annotations", 0, "area"], float("nan")), "area"),
    ("visible_fraction is a string", _set(["annotations", 0, "visible_fraction"], "most"), "visible_fraction"),
    ("width/height disagree with the file", _size_mismatch, "100"),
    ("segmentation size disagrees with the image", _segmentation_size_mismatch, "annotations[0]"),
]


@pytest.mark.parametrize("mutate,fragment", [(m, f) for _, m, f in MALFORMED_MORE],
                         ids=[n for n, _, _ in MALFORMED_MORE])
def test_malformed_coco_more_raises_dataset_error(written, mutate, fragment):
    """Malformed values beyond the basic cases: still one DatasetError naming the field."""
    _, _, root, path = written
    coco = json.loads(path.read_text())
    mutate(coco, root)
    path.write_text(json.dumps(coco))
    with pytest.raises(DatasetError) as exc:
        Dataset.read_coco(root)
    assert fragment in str(exc.value), str(exc.value)


def test_malformed_lists_several_problems_and_names_file(written):
    _, _, root, path = written
    coco = json.loads(path.read_text())
    coco["annotations"][0]["category_id"] = 77
    coco["annotations"][1]["bbox"] = [1.0, 1.0, 0.0, 1.0]
    coco["annotations"][2]["id"] = 0
    path.write_text(json.dumps(coco))
    with pytest.raises(DatasetError) as exc:
        Dataset.read_coco(root)
    msg = str(exc.value)
    assert str(path) in msg
    assert "3 problem(s)" in msg
    assert "annotations[0].category_id" in msg and "annotations[1].bbox" in msg and "annotations[2].id" in msg


def test_many_problems_are_truncated(written):
    _, _, root, path = written
    coco = json.loads(path.read_text())
    for a in coco["annotations"]:
        a["category_id"] = 99
        a["id"] = 0
    path.write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=r"10 problem\(s\).*\(and 5 more\)"):
        Dataset.read_coco(root)


def test_read_with_explicit_annotations_path(written, tmp_path):
    _, masks, root, path = written
    other = tmp_path / "elsewhere.json"
    other.write_bytes(path.read_bytes())
    path.unlink()
    back = Dataset.read_coco(root, other)
    assert len(back) == 3 and np.array_equal(back.annotations[0][1].mask(), masks[0][1])
