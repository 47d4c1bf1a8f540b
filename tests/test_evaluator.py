"""Tests for evaluator/: real splits, COCO scoring, the detector and the classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evaluator.base import EvaluatorError, Fidelity, Metrics, check_splits
from evaluator.classification import ClassificationEvaluator
from evaluator.coco_metrics import Detections, detection_scores, perfect_detections
from evaluator.detection import DetectionEvaluator
from evaluator.real import RealSplits, digits_dataset, load_coco_real, load_digits_real, split_indices
from generator.dataset import Dataset, DatasetError, ObjectAnnotation
from test_dataset import MALFORMED

CATS = ["a", "b"]


def box_dataset(n: int = 6, seed: int = 0, size: int = 32) -> Dataset:
    """Bright squares (class a) and discs (class b) on a dark background, with exact boxes."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    yy, xx = np.mgrid[:size, :size]
    for _ in range(n):
        im = np.full((size, size, 3), 20, np.uint8)
        objs = []
        for k in range(2):
            s = int(rng.integers(8, 13))
            x, y = int(rng.integers(0, size - s)), int(rng.integers(0, size - s))
            if any(abs(x - o.bbox[0]) < s and abs(y - o.bbox[1]) < s for o in objs):
                continue
            cat = 1 + k % 2
            if cat == 1:
                mask = (xx >= x) & (xx < x + s) & (yy >= y) & (yy < y + s)
            else:
                mask = (xx - x - s / 2 + 0.5) ** 2 + (yy - y - s / 2 + 0.5) ** 2 <= (s / 2) ** 2
            im[mask] = (230, 60, 60) if cat == 1 else (60, 230, 60)
            objs.append(ObjectAnnotation.from_mask(cat, mask))
        images.append(im)
        anns.append(objs)
    return Dataset(images, anns, list(CATS))


# --------------------------------------------------------------------------------------------
# COCO scoring
# --------------------------------------------------------------------------------------------

def test_perfect_predictions_score_one_and_none_score_zero():
    ds = box_dataset(5)
    perfect = detection_scores(ds, perfect_detections(ds))
    assert perfect["map"] == pytest.approx(1.0) and perfect["ap50"] == pytest.approx(1.0)
    none = detection_scores(ds, [Detections.empty() for _ in range(len(ds))])
    assert none == {"map": 0.0, "ap50": 0.0, "ap75": 0.0}


def test_scores_match_pycocotools_on_a_hand_made_case():
    """Partly right detections: our wrapper (faster-coco-eval) gives pycocotools' own numbers."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = box_dataset(6, seed=3)
    rng = np.random.default_rng(1)
    dets = []
    for objs in ds.annotations:
        boxes, scores, labels = [], [], []
        for o in objs:
            x, y, w, h = o.bbox
            jitter = rng.uniform(-3, 3, 2)
            boxes.append([max(x + jitter[0], 0), max(y + jitter[1], 0), w, h])
            scores.append(rng.uniform(0.3, 1.0))
            labels.append(o.category_id if rng.random() > 0.2 else 3 - o.category_id)
        boxes.append([1.0, 1.0, 6.0, 6.0])       # a false positive
        scores.append(0.9)
        labels.append(1)
        dets.append(Detections(np.array(boxes, np.float32), np.array(scores, np.float32), np.array(labels)))
    ours = detection_scores(ds, dets)

    gt_dict = ds.to_coco()
    for a in gt_dict["annotations"]:
        a.pop("segmentation")
    gt = COCO()
    gt.dataset = gt_dict
    gt.createIndex()
    res = [{"image_id": i + 1, "category_id": int(lab), "bbox": [float(v) for v in b], "score": float(s)}
           for i, d in enumerate(dets) for b, s, lab in zip(d.boxes, d.scores, d.labels)]
    ev = COCOeval(gt, gt.loadRes(res), "bbox")
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert 0.05 < ours["map"] < 0.95
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-6)
    assert ours["ap50"] == pytest.approx(ev.stats[1], abs=1e-6)


def test_scores_need_one_detection_list_per_image():
    ds = box_dataset(3)
    with pytest.raises(ValueError, match="expected one Detections per image"):
        detection_scores(ds, [Detections.empty()])


# --------------------------------------------------------------------------------------------
# Fidelity, Metrics, splits
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,fragment", [
    ({"steps": 0}, "fidelity.steps"), ({"batch_size": 0}, "fidelity.batch_size"),
    ({"images": 0}, "fidelity.images"), ({"steps": 2.5}, "fidelity.steps"), ({"images": True}, "fidelity.images"),
])
def test_bad_fidelity(kwargs, fragment):
    with pytest.raises(EvaluatorError, match=fragment):
        Fidelity(**kwargs)


def test_bad_splits():
    with pytest.raises(EvaluatorError, match="expected a non-empty subset"):
        check_splits(["train"])
    with pytest.raises(EvaluatorError):
        check_splits([])


def test_metrics_to_dict_is_json_without_weights():
    m = Metrics(0.5, {"val_ap50": 0.5, "test_ap50": float("nan")}, [1.0, 0.5], {"train": 1.0}, {"w": torch.ones(2)})
    d = json.loads(json.dumps(m.to_dict()))
    assert d["score"] == 0.5 and d["test_ap50"] is None and "weights" not in d


# --------------------------------------------------------------------------------------------
# Real sets
# --------------------------------------------------------------------------------------------

def test_digits_split_is_stratified_disjoint_and_seeded():
    a, b, c = load_digits_real(seed=0), load_digits_real(seed=0), load_digits_real(seed=1)
    assert len(a.val) + len(a.test) == 1797
    assert all(np.array_equal(x, y) for x, y in zip(a.val.images, b.val.images))
    assert not all(np.array_equal(x, y) for x, y in zip(a.val.images, c.val.images))
    labels = lambda ds: np.array([o[0].category_id for o in ds.annotations])  # noqa: E731
    counts_val, counts_test = np.bincount(labels(a.val)), np.bincount(labels(a.test))
    assert np.abs(counts_val - counts_test).max() <= 1
    val_set = {im.tobytes() + bytes([lab]) for im, lab in zip(a.val.images, labels(a.val))}
    assert len(val_set & {im.tobytes() + bytes([lab]) for im, lab in zip(a.test.images, labels(a.test))}) < 5
    assert a.val.images[0].shape == (8, 8) and max(im.max() for im in a.val.images) == 16
    assert a.val.info["value_max"] == 16


def test_split_indices_partition():
    val, test = split_indices(11, seed=4, val_fraction=0.4)
    assert sorted(np.concatenate([val, test]).tolist()) == list(range(11)) and len(val) == 4
    with pytest.raises(DatasetError, match="val_fraction"):
        split_indices(10, 0, 1.0)
    with pytest.raises(DatasetError, match="at least 2"):
        split_indices(1, 0)


def test_coco_real_single_set_is_split_and_pre_split_is_kept(tmp_path):
    ds = box_dataset(10)
    ds.write_coco(tmp_path / "one")
    r = load_coco_real(tmp_path / "one", seed=2)
    assert len(r.val) + len(r.test) == 10 and r.val.info["split_seed"] == 2
    assert set(r.val.file_names).isdisjoint(r.test.file_names)
    assert load_coco_real(tmp_path / "one", seed=2).val.file_names == r.val.file_names
    ds.subset(range(4)).write_coco(tmp_path / "pre" / "val")
    ds.subset(range(4, 10)).write_coco(tmp_path / "pre" / "test")
    p = load_coco_real(tmp_path / "pre")
    assert (len(p.val), len(p.test)) == (4, 6)
    with pytest.raises(DatasetError, match="found neither"):
        load_coco_real(tmp_path / "missing")


@pytest.mark.parametrize("mutate,fragment", [(m, f) for _, m, f in MALFORMED], ids=[n for n, _, _ in MALFORMED])
def test_malformed_real_set_is_one_clear_error(tmp_path, mutate, fragment):
    """Every malformed case of the COCO reader reaches a real-set user as one DatasetError."""
    from test_dataset import make_dataset

    root = tmp_path / "real"
    path = make_dataset()[0].write_coco(root)
    coco = json.loads(path.read_text())
    text = mutate(coco, root)
    if path.exists():
        path.write_text(text if isinstance(text, str) else json.dumps(coco))
    with pytest.raises(DatasetError) as exc:
        load_coco_real(root)
    assert fragment in str(exc.value) or "found neither" in str(exc.value)


# --------------------------------------------------------------------------------------------
# Detector
# --------------------------------------------------------------------------------------------

def test_detector_overfits_a_handful_of_images():
    ds = box_dataset(8, seed=5)
    ev = DetectionEvaluator(RealSplits(ds, ds, "self"), device="cpu", threads=1)
    m = ev.evaluate(ds, Fidelity(steps=250, batch_size=8), seed=0)
    assert m.extras["val_ap50"] > 0.9, m.extras
    assert m.score == m.extras["val_ap50"] and m.loss_curve[-1] < m.loss_curve[0] / 5


def test_detector_is_deterministic_and_seed_dependent():
    ds = box_dataset(6, seed=1)
    ev = DetectionEvaluator(RealSplits(ds, ds, "self"), device="cpu", threads=1)
    fid = Fidelity(steps=6, batch_size=4)
    a, b, c = ev.evaluate(ds, fid, 3), ev.evaluate(ds, fid, 3), ev.evaluate(ds, fid, 4)
    assert a.loss_curve == b.loss_curve
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
    assert a.loss_curve != c.loss_curve


def test_detector_warm_start_continues_training():
    ds = box_dataset(8, seed=2)
    ev = DetectionEvaluator(RealSplits(ds, ds, "self"), device="cpu", threads=1)
    fid = Fidelity(steps=60, batch_size=8)
    first = ev.evaluate(ds, fid, 0)
    again = ev.evaluate(ds, fid, 0, warm_start=first.weights)
    assert again.loss_curve[0] < first.loss_curve[0] / 2
    with pytest.raises(EvaluatorError, match="warm_start"):
        ev.evaluate(ds, fid, 0, warm_start={"nope": torch.zeros(1)})


def test_detector_scores_test_split_only_when_asked_and_checks_categories():
    ds = box_dataset(4)
    ev = DetectionEvaluator(RealSplits(ds, ds, "self"), device="cpu", threads=1)
    m = ev.evaluate(ds, Fidelity(steps=2, batch_size=2, images=2), 0)
    assert "test_ap50" not in m.extras and m.extras["train_images"] == 2
    m = ev.evaluate(ds, Fidelity(steps=2, batch_size=2), 0, splits=("val", "test"))
    assert "test_ap50" in m.extras and "test_map" in m.extras
    other = Dataset(ds.images, ds.annotations, ["x", "y"])
    with pytest.raises(EvaluatorError, match="categories"):
        ev.evaluate(other, Fidelity(steps=1), 0)
    with pytest.raises(EvaluatorError, match="evaluator.score"):
        DetectionEvaluator(RealSplits(ds, ds, "self"), score="f1")


# --------------------------------------------------------------------------------------------
# Classifier
# --------------------------------------------------------------------------------------------

def test_classifier_learns_real_digits_and_is_deterministic():
    real = load_digits_real(seed=0)
    ev = ClassificationEvaluator(real, device="cpu", threads=1)
    fid = Fidelity(steps=150, batch_size=64)
    m = ev.evaluate(real.val, fid, 0, splits=("val", "test"))
    assert m.extras["test_accuracy"] > 0.85, m.extras
    again = ev.evaluate(real.val, Fidelity(steps=5, batch_size=64), 1)
    assert again.loss_curve == ev.evaluate(real.val, Fidelity(steps=5, batch_size=64), 1).loss_curve


def test_classifier_rejects_bad_layouts():
    real = load_digits_real(seed=0)
    ev = ClassificationEvaluator(real, device="cpu", threads=1)
    two = real.val.subset(range(4))
    two.annotations[1] = two.annotations[1] * 2
    with pytest.raises(DatasetError, match="exactly one annotation per image"):
        ev.evaluate(two, Fidelity(steps=1), 0)
    big = digits_dataset(np.zeros((3, 16, 16), np.uint8), np.array([1, 2, 3]))
    with pytest.raises(EvaluatorError, match="shape"):
        ev.evaluate(big, Fidelity(steps=1), 0)


def test_sample_losses_are_per_image_and_drop_with_training():
    ds = box_dataset(6, seed=4)
    ev = DetectionEvaluator(RealSplits(ds, ds, "self"), device="cpu", threads=1)
    fresh = ev.sample_losses(ds, None)
    trained = ev.sample_losses(ds, ev.evaluate(ds, Fidelity(steps=80, batch_size=6), 0).weights)
    assert fresh.shape == (6,) and np.all(np.isfinite(fresh)) and trained.mean() < fresh.mean() / 2
    real = load_digits_real(seed=0)
    cev = ClassificationEvaluator(real, device="cpu", threads=1)
    losses = cev.sample_losses(real.val.subset(range(10)), None)
    assert losses.shape == (10,) and np.all(losses > 0)
