"""The shapes generator: annotations are exact, rendering is deterministic, extremes never crash."""

import math

import numpy as np
import pytest
from pycocotools.coco import COCO

from generator.base import derive_seed, image_seeds, render_dataset
from generator.dataset import Dataset
from generator.shapes import ShapesGenerator
from generator.shapes_scene import CLASSES, SceneDescription, Shape, look_at


@pytest.fixture(scope="module")
def gen():
    g = ShapesGenerator(image_size=64)
    yield g
    g.close()


@pytest.fixture(scope="module")
def dataset(gen):
    return render_dataset(gen, gen.space.to_vector(), 40, seed=3)


def test_images_and_annotations_are_consistent(dataset, gen):
    assert len(dataset) == 40 and dataset.categories == list(CLASSES)
    n_ann = 0
    for im, anns in zip(dataset.images, dataset.annotations):
        assert im.dtype == np.uint8 and im.shape == (64, 64, 3)
        union = np.zeros((64, 64), int)
        for a in anns:
            m = a.mask()
            union += m
            ys, xs = np.nonzero(m)
            assert a.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert a.area == m.sum() >= gen.min_visible_pixels
            assert 1 <= a.category_id <= len(CLASSES)
            assert 0 < a.visible_fraction <= 1
            n_ann += 1
        assert union.max() <= 1, "visible masks of two instances overlap"
    assert n_ann > 40, "the default distribution should put objects in view"


def test_same_seed_same_bytes_and_seeds_matter(gen):
    theta = gen.space.to_vector()
    a = render_dataset(gen, theta, 6, seed=11)
    b = render_dataset(gen, theta, 6, seed=11)
    c = render_dataset(gen, theta, 6, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    assert a.to_coco() == b.to_coco()
    assert not all(np.array_equal(x, y) for x, y in zip(a.images, c.images))


def test_per_image_seeds_do_not_depend_on_batch_position():
    assert image_seeds(5, 3, start=2)[0] == image_seeds(5, 5)[2]
    assert derive_seed(1, 2, 3) != derive_seed(1, 2, 4)


def _scene(objects, distractors=(), camera_eye=(0.0, 2.0, 6.0)) -> SceneDescription:
    return SceneDescription(
        objects=list(objects), distractors=list(distractors), ground_color=(0.5, 0.5, 0.5),
        background_color=(0.2, 0.3, 0.4), light_pose=look_at(np.array([1.0, 2.0, 1.0]), np.zeros(3)),
        light_intensity=4.0, ambient=0.3, camera_pose=look_at(np.array(camera_eye), np.array([0.0, 0.4, 0.0])),
        yfov=math.radians(45), sensor={})


def _cube(x, z, scale=1.0, color=(0.9, 0.1, 0.1)):
    pose = np.eye(4)
    pose[:3, :3] *= scale
    pose[0, 3], pose[2, 3] = x, z
    return Shape("cube", pose, color, category=0)


@pytest.mark.parametrize("backend", ["gl", "pyrender"])
def test_occlusion_shrinks_box_and_visible_fraction(backend):
    from generator.annotate import annotate

    g = ShapesGenerator(image_size=64, backend=backend)
    back, front = _cube(0.3, -1.0), _cube(-0.2, 1.5, scale=0.8, color=(0.1, 0.9, 0.1))
    _, _, ids_alone, amodal_alone = g.backend.draw(_scene([back]))
    alone = annotate(ids_alone, _scene([back]), 1, amodal_alone)
    rgb, depth, ids, amodal = g.backend.draw(_scene([back, front]))
    both = annotate(ids, _scene([back, front]), 1, amodal)
    g.close()
    assert len(alone) == 1 and len(both) == 2
    assert alone[0].visible_fraction == 1.0
    assert both[0].area < alone[0].area
    assert both[0].visible_fraction < 0.95
    assert both[0].visible_fraction == pytest.approx(both[0].area / alone[0].area, abs=0.08)
    assert both[1].visible_fraction > 0.95
    assert (depth[ids == 2] < depth[ids == 1].min()).all(), "the front cube must be nearer"


def test_gl_and_pyrender_backends_agree_on_masks():
    """Two independent rasterisations (ours and pyrender's) of the same scenes."""
    a = ShapesGenerator(image_size=64, backend="gl")
    b = ShapesGenerator(image_size=64, backend="pyrender")
    theta = a.space.to_vector()
    da, db = render_dataset(a, theta, 12, 7), render_dataset(b, theta, 12, 7)
    a.close(), b.close()
    ious = []
    for xa, xb in zip(da.annotations, db.annotations):
        for p, q in zip(xa, xb):
            assert p.category_id == q.category_id
            m1, m2 = p.mask(), q.mask()
            ious.append((m1 & m2).sum() / (m1 | m2).sum())
    assert len(ious) > 10 and np.mean(ious) > 0.95


def test_depth_is_metric_distance(gen):
    g = gen
    scene = _scene([_cube(0.0, 0.0)], camera_eye=(0.0, 0.4, 5.0))
    _, depth, ids, _ = g.backend.draw(scene)
    assert depth[ids == 1].min() == pytest.approx(5.0 - 0.45, abs=0.05)  # the cube's front face
    assert (depth >= 0).all()


@pytest.mark.parametrize("overrides", [
    {"camera.distance": {"range": [0.5, 0.6]}, "object.scale": {"range": [1.9, 2.0]},
     "object.x": {"range": [-0.1, 0.1]}, "object.z": {"range": [-0.1, 0.1]}},           # camera inside objects
    {"object_count": {"mean": 0.0, "std": 0.05}},                                        # zero objects
    {"light.intensity": {"range": [0.0, 0.0]}, "ambient": {"range": [0.0, 0.0]}},      # no light
    {"distractor_count": {"mean": 2.0, "std": 0.1}, "distractor.scale": {"range": [2.0, 2.0]},
     "distractor.x": {"range": [0.0, 0.0]}, "distractor.z": {"range": [2.5, 3.5]},
     "camera.azimuth": {"range": [0.0, 0.0]}, "camera.elevation": {"range": [0.0, 1.0]},
     "camera.distance": {"range": [4.0, 4.1]}},                                          # occluder in front
    {"sensor.noise": {"range": [0.3, 0.3]}, "sensor.blur": {"range": [3.0, 3.0]},
     "sensor.exposure": {"range": [3.0, 3.0]}, "sensor.gamma": {"range": [2.5, 2.5]}},   # extreme sensor
    {"camera.fov": {"range": [15, 15]}, "camera.elevation": {"range": [89, 89]}},
])
def test_extreme_parameters_give_valid_images(gen, overrides):
    space = gen.space.override(overrides)
    draws = space.sample(space.to_vector(), 6, np.random.default_rng(0))
    for i in range(6):
        s = gen.render({k: v[i] for k, v in draws.items()}, seed=i)
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        for a in s.annotations:
            x, y, w, h = a.bbox
            assert 0 <= x and 0 <= y and x + w <= 64 and y + h <= 64 and w > 0 and h > 0
            assert 0 < a.visible_fraction <= 1


def test_zero_objects_means_no_annotations(gen):
    space = gen.space.override({"object_count": {"mean": 0.0, "std": 0.05}})
    ds = render_dataset(gen, space.to_vector(), 5, seed=0)
    assert all(a == [] for a in ds.annotations)


def test_no_light_gives_dark_objects_but_exact_annotations(gen):
    space = gen.space.override({"light.intensity": {"range": [0.0, 0.0]}, "ambient": {"range": [0.0, 0.0]},
                                "sensor.noise": {"range": [0.0, 0.0]}, "sensor.exposure": {"range": [0.0, 0.0]},
                                "sensor.blur": {"range": [0.0, 0.0]}})
    ds = render_dataset(gen, space.to_vector(), 8, seed=4)
    anns = [(im, a) for im, objs in zip(ds.images, ds.annotations) for a in objs]
    assert anns
    for im, a in anns:
        assert im[a.mask()].mean() < 25  # near black (the display gamma lifts the faint remainder)


def test_rendered_coco_loads_in_pycocotools(dataset, tmp_path):
    path = dataset.write_coco(tmp_path / "set")
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == len(dataset)
    for ann in coco.loadAnns(coco.getAnnIds())[:20]:
        img = ann["image_id"] - 1
        ours = [a for a in dataset.annotations[img]]
        k = [a["id"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[ann["image_id"]]))].index(ann["id"])
        assert np.array_equal(coco.annToMask(ann).astype(bool), ours[k].mask())
    again = Dataset.read_coco(tmp_path / "set")
    assert all(np.array_equal(a, b) for a, b in zip(again.images, dataset.images))


def test_bad_generator_options_name_the_key():
    with pytest.raises(ValueError, match="generator.image_size"):
        ShapesGenerator(image_size=3)
    with pytest.raises(ValueError, match="generator.backend"):
        ShapesGenerator(backend="vulkan")


def test_an_image_does_not_depend_on_what_was_rendered_before(gen):
    """Reversed order, same bytes: no state (buffers, poses, materials) leaks between images."""
    theta = gen.space.to_vector()
    rows, seeds = gen.scene_params(theta, 8, 21), image_seeds(21, 8)
    forward = [gen.render(r, s) for r, s in zip(rows, seeds)]
    backward = [gen.render(r, s) for r, s in zip(rows[::-1], seeds[::-1])][::-1]
    for f, b in zip(forward, backward):
        assert np.array_equal(f.image, b.image) and np.array_equal(f.depth, b.depth)
        assert [a.to_coco(1, 1) for a in f.annotations] == [a.to_coco(1, 1) for a in b.annotations]


def test_without_depth_the_images_and_annotations_are_the_same(gen):
    """``depth = false`` (the loop's setting) skips the depth read-back and changes nothing else."""
    no_depth = ShapesGenerator(image_size=64, depth=False)
    theta = gen.space.to_vector()
    with_d, without = render_dataset(gen, theta, 6, seed=5), render_dataset(no_depth, theta, 6, seed=5)
    no_depth.close()
    assert with_d.depths is not None and without.depths is None
    assert all(np.array_equal(a, b) for a, b in zip(with_d.images, without.images))
    assert [[a.to_coco(1, 1) for a in anns] for anns in with_d.annotations] == \
        [[a.to_coco(1, 1) for a in anns] for anns in without.annotations]


@pytest.mark.parametrize("exposure,gamma", [(0.0, 1.0), (1.3, 0.6), (-2.0, 2.2)])
def test_sensor_tone_curve_is_exposure_then_gamma_per_pixel(exposure, gamma):
    from generator.sensor import apply_sensor

    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    out = apply_sensor(img, np.random.default_rng(1), exposure=exposure, gamma=gamma)
    expected = np.clip(img / 255.0 * 2.0 ** exposure, 0, 1) ** gamma * 255.0
    assert out.dtype == np.uint8 and np.abs(out.astype(float) - expected).max() <= 0.5 + 1e-3
