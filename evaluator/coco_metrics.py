"""COCO box mAP@[.5:.95] and AP50 through faster-coco-eval (the COCO protocol, not a copy of it)."""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import numpy as np

from generator.dataset import Dataset


@dataclass
class Detections:
    """One image's predictions: boxes as x, y, w, h in pixels; 1-based category ids."""

    boxes: np.ndarray      # (K, 4) float
    scores: np.ndarray     # (K,) float
    labels: np.ndarray     # (K,) int

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)


def _ground_truth(dataset: Dataset) -> dict:
    """The set's COCO dict for box evaluation (masks dropped: faster to load, not needed)."""
    coco = dataset.to_coco()
    for a in coco["annotations"]:
        a.pop("segmentation", None)
    return coco


def detection_scores(dataset: Dataset, detections: list[Detections]) -> dict[str, float]:
    """``{"map": mAP@[.5:.95], "ap50": AP@.5, "ap75": AP@.75}`` of ``detections`` on ``dataset``.

    No detections at all scores 0. A ground truth without any object gives NaN (COCO's -1):
    there is nothing to detect, so there is no honest number."""
    if len(detections) != len(dataset):
        raise ValueError(f"expected one Detections per image ({len(dataset)}), got {len(detections)}")
    n_gt = sum(len(a) for a in dataset.annotations)
    if n_gt == 0:
        return {"map": float("nan"), "ap50": float("nan"), "ap75": float("nan")}
    results = []
    for image_id, det in enumerate(detections, start=1):
        for box, score, label in zip(det.boxes, det.scores, det.labels):
            results.append({"image_id": image_id, "category_id": int(label),
                            "bbox": [float(v) for v in box], "score": float(score)})
    if not results:
        return {"map": 0.0, "ap50": 0.0, "ap75": 0.0}

    from faster_coco_eval import COCO, COCOeval_faster

    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    gt = COCO(_ground_truth(dataset))
    dt = gt.loadRes(results)
    ev = COCOeval_faster(gt, dt, iouType="bbox", print_function=lambda *a, **k: None)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [max(float(v), 0.0) for v in ev.stats[:3]]  # -1 (no such objects) counts as 0
    return {"map": stats[0], "ap50": stats[1], "ap75": stats[2]}


def perfect_detections(dataset: Dataset) -> list[Detections]:
    """The ground truth as detections with score 1 (a sanity reference)."""
    out = []
    for objs in dataset.annotations:
        if not objs:
            out.append(Detections.empty())
            continue
        out.append(Detections(np.array([o.bbox for o in objs], np.float32), np.ones(len(objs), np.float32),
                              np.array([o.category_id for o in objs], np.int64)))
    return out
