"""An evaluator without a network: a nearest-centroid classifier of each image's first object."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from evaluator.base import Evaluator, EvaluatorError, Metrics, check_per_image
from generator.dataset import Dataset


def _features(image: np.ndarray) -> np.ndarray:
    """The low-frequency magnitudes of the image's Fourier transform: they do not change when
    the object moves, so the class centroids are not blurred by position."""
    grey = np.asarray(image, np.float64).mean(axis=-1) / 255.0
    spectrum = np.abs(np.fft.fft2(grey - grey.mean()))
    return np.log1p(spectrum[:8, :8].ravel())


def _features_and_labels(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    keep = [i for i, anns in enumerate(ds.annotations) if anns]
    x = np.stack([_features(ds.images[i]) for i in keep])
    return x, np.array([ds.annotations[i][0].category_id for i in keep])


class NearestCentroidEvaluator(Evaluator):
    """Scores a synthetic set by how well its per-class mean images classify the real images."""

    score_name = "accuracy"

    def __init__(self, real, *, device: str = "cpu", threads: int | None = None, **_: Any):
        self.real = real

    def evaluate(self, dataset, fidelity, seed, warm_start=None, *, splits=("val",), progress=None, per_image=()):
        check_per_image(self, per_image)          # it computes none: any name asked for is refused
        t0 = time.perf_counter()
        n = fidelity.images or len(dataset)
        x, y = _features_and_labels(Dataset(dataset.images[:n], dataset.annotations[:n], list(dataset.categories)))
        classes = np.unique(y)
        if len(classes) < 2:
            raise EvaluatorError(f"dataset: expected images of at least 2 classes, got {classes.tolist()}")
        mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6      # standardised by the synthetic set's spread
        x = (x - mu) / sd
        centroids = np.stack([x[y == c].mean(axis=0) for c in classes])
        extras = {}
        for split in splits:
            xr, yr = _features_and_labels(getattr(self.real, split))
            xr = (xr - mu) / sd
            pred = classes[np.argmin(((xr[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)]
            extras[f"{split}_accuracy"] = float((pred == yr).mean())
        return Metrics(score=extras["val_accuracy"], extras=extras, timings={"train": time.perf_counter() - t0})
