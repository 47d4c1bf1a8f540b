"""Real datasets, split once and for all into ``val`` (the search's reward) and ``test``
(reported only, never seen by the search).

Two sources: a user's COCO set on disk (read with the project's one COCO reader) and the real
UCI handwritten digits that ship with scikit-learn. Splits are seeded and stratified where labels
allow, so the same seed always gives the same two sets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generator.dataset import Dataset, DatasetError, ObjectAnnotation

DIGIT_CLASSES = tuple(str(d) for d in range(10))
DIGITS_VALUE_MAX = 16


@dataclass
class RealSplits:
    val: Dataset
    test: Dataset
    source: str

    def describe(self) -> str:
        return f"{self.source}: {len(self.val)} val / {len(self.test)} test images"

    def sha256(self) -> str:
        """A digest of both splits' pixels, annotations and categories: a resumed run checks that
        it scores on the set it started with."""
        h = hashlib.sha256()
        for ds in (self.val, self.test):
            coco = ds.to_coco()
            h.update(json.dumps([coco["annotations"], coco["categories"]], sort_keys=True).encode())
            for im in ds.images:
                h.update(image_digest(im))
        return h.hexdigest()


def image_digest(im: np.ndarray) -> bytes:
    """A digest of an image's decoded pixels and shape (the same for a copy or a re-encoding)."""
    return hashlib.blake2b(repr(im.shape).encode() + np.ascontiguousarray(im).tobytes(), digest_size=16).digest()


def split_indices(n: int, seed: int, val_fraction: float = 0.5,
                  labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted val and test indices of a seeded split (stratified by ``labels`` when given)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    if n < 2:
        raise DatasetError(f"expected at least 2 real images to split into val and test, got {n}")
    idx = np.arange(n)
    try:
        val, test = train_test_split(idx, train_size=val_fraction, random_state=seed, shuffle=True,
                                     stratify=labels)
    except ValueError:  # a class too rare to stratify: fall back to a plain seeded split
        val, test = train_test_split(idx, train_size=val_fraction, random_state=seed, shuffle=True)
    return np.sort(val), np.sort(test)


def _main_label(objs: list[ObjectAnnotation]) -> int:
    """The most frequent category of an image (0 for none): a coarse stratification key."""
    if not objs:
        return 0
    return int(np.bincount([o.category_id for o in objs]).argmax())


def load_coco_real(root: str | Path, *, seed: int = 0, val_fraction: float = 0.5) -> RealSplits:
    """A real COCO set: ``root/val`` and ``root/test`` when the set comes pre-split (what
    ``dropt make-target`` writes), else ``root/annotations.json`` split here with ``seed``."""
    root = Path(root)
    if (root / "val" / "annotations.json").is_file() and (root / "test" / "annotations.json").is_file():
        val, test = Dataset.read_coco(root / "val"), Dataset.read_coco(root / "test")
        if sorted(val.categories) != sorted(test.categories):
            raise DatasetError(f"{root}: expected val and test with the same categories, got "
                               f"{val.categories} and {test.categories}")
        test = test.with_categories(val.categories)    # the same names, matched by name
        return RealSplits(val, test, f"{root} (pre-split)")
    if any((root / s).is_dir() for s in ("val", "test")) and not (root / "annotations.json").is_file():
        missing = [f"{s}/annotations.json" for s in ("val", "test") if not (root / s / "annotations.json").is_file()]
        raise DatasetError(f"{root}: expected val/ and test/ with an annotations.json each (a pre-split set), "
                           f"{missing[0]} not found")
    if not (root / "annotations.json").is_file():
        raise DatasetError(f"{root}: expected a COCO set (annotations.json + images) or val/ and test/ "
                           f"sub-directories holding one each, found neither")
    full = Dataset.read_coco(root)
    labels = np.array([_main_label(a) for a in full.annotations])
    val_idx, test_idx = split_indices(len(full), seed, val_fraction, labels)
    info = {"split_seed": seed, "val_fraction": val_fraction}
    val, test = full.subset(val_idx), full.subset(test_idx)
    val.info.update(info, split="val")
    test.info.update(info, split="test")
    return RealSplits(val, test, f"{root} (split with seed {seed})")


def check_real_splits(real: RealSplits, key: str) -> None:
    """What scoring on ``real`` needs, checked once for `dropt run` and `dropt eval` (``key`` names
    the setting or flag that gave the set): in each split at least 2 images of one size and channel
    count and some annotations COCO scoring counts (crowd regions it ignores: a set of only those
    scores 0 whatever the detector does); and a test split that shares no image with val."""
    for split in ("val", "test"):
        ds: Dataset = getattr(real, split)
        if len(ds) < 2:
            raise DatasetError(f"{key}: expected at least 2 images in the {split} split, got {len(ds)} ({real.source})")
        objects = [o for objs in ds.annotations for o in objs]
        if not objects:
            raise DatasetError(f"{key}: expected annotations in the {split} split, got none ({real.source})")
        if all(o.iscrowd for o in objects):
            raise DatasetError(f"{key}: expected non-crowd annotations (iscrowd 0) in the {split} split, got only "
                               f"crowd ones, which COCO scoring ignores ({real.source})")
        shapes = sorted({im.shape for im in ds.images})
        if len(shapes) > 1:
            raise DatasetError(f"{key}: expected {split} images of one size and channel count, got "
                               f"{' and '.join('×'.join(map(str, s)) for s in shapes[:3])} ({real.source})")
    _check_disjoint(real, key)


def _check_disjoint(real: RealSplits, key: str) -> None:
    """No test image with the pixels of a val image (the same files, test/ a link to val/, or a
    copy): TEST must never be seen by the search. Compared by a digest of the decoded pixels."""
    val_index = {d: i for i, d in reversed(list(enumerate(map(image_digest, real.val.images))))}
    for j, d in enumerate(map(image_digest, real.test.images)):
        if d in val_index:
            raise DatasetError(f"{key}: expected val and test splits with no image in common (TEST must never be "
                               f"seen by the search), got test image {_image_name(real.test, j)} identical to val "
                               f"image {_image_name(real.val, val_index[d])} ({real.source})")


def _image_name(ds: Dataset, i: int) -> str:
    return ds.file_names[i] if ds.file_names is not None else f"#{i + 1}"


def digits_dataset(images: np.ndarray, labels: np.ndarray, info: dict | None = None) -> Dataset:
    """8×8 digit images (values 0–16) as a Dataset: one whole-image annotation per image."""
    h, w = images.shape[1:3]
    anns = [[ObjectAnnotation(category_id=int(y) + 1, bbox=(0.0, 0.0, float(w), float(h)), area=float(w * h))]
            for y in labels]
    return Dataset([np.ascontiguousarray(im, dtype=np.uint8) for im in images], anns, list(DIGIT_CLASSES),
                   {"value_max": DIGITS_VALUE_MAX, **(info or {})})


def load_digits_real(*, seed: int = 0, val_fraction: float = 0.5) -> RealSplits:
    """The 1,797 real UCI digits shipped with scikit-learn, stratified into val and test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)        # values 0..16 (counts of on-pixels in 4×4 blocks)
    labels = bunch.target.astype(np.int64)
    val_idx, test_idx = split_indices(len(labels), seed, val_fraction, labels)
    info = {"source": "sklearn.datasets.load_digits (UCI optdigits)", "split_seed": seed}
    return RealSplits(digits_dataset(images[val_idx], labels[val_idx], {**info, "split": "val"}),
                      digits_dataset(images[test_idx], labels[test_idx], {**info, "split": "test"}),
                      f"UCI digits (split with seed {seed})")


def class_labels(dataset: Dataset) -> np.ndarray:
    """0-based class per image for classification sets (exactly one annotation per image)."""
    bad = [i for i, objs in enumerate(dataset.annotations) if len(objs) != 1]
    if bad:
        raise DatasetError(f"expected exactly one annotation per image for classification, got "
                           f"{len(dataset.annotations[bad[0]])} in image {bad[0]} ({len(bad)} such images)")
    return np.array([objs[0].category_id - 1 for objs in dataset.annotations], dtype=np.int64)
