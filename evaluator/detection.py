"""The detection task: train the CenterNet-style detector on a synthetic COCO set, score COCO
AP50 and mAP@[.5:.95] on the real splits."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from generator.dataset import Dataset, ObjectAnnotation

from .base import Evaluator, EvaluatorError, Fidelity, Metrics, ProgressFn, check_per_image, check_splits
from .centernet import (CenterNet, decode, detection_loss, detection_loss_terms, detection_losses, encode_targets,
                        images_to_tensor)
from .credit import checkpoint_steps, tracin_credit
from .metagrad import check_weights, train_unrolled, wants_unrolled
from .coco_metrics import Detections, detection_scores
from .real import RealSplits
from .training import build_seeded, fit, load_warm_start, resolve_device, state_dict_cpu, torch_threads

SCORES = ("ap50", "map")
WEIGHT_DECAY = 1e-4       # AdamW's decoupled decay of the detector's training


class DetectionEvaluator(Evaluator):
    """Train on synthetic images, score on the real val split (and test when asked)."""

    higher_is_better = True
    per_image_outputs = frozenset({"credit", "metagrad"})

    def __init__(self, real: RealSplits, *, score: str = "ap50", device: str = "auto", threads: int | None = None,
                 width: int = 48, lr: float = 6e-3, flip: bool = True, eval_batch: int = 128,
                 credit_checkpoints: int = 3, credit_normalize: bool = True):
        if not isinstance(credit_checkpoints, int) or credit_checkpoints < 1:
            raise EvaluatorError(f"evaluator.credit_checkpoints: expected an integer >= 1, got {credit_checkpoints!r}")
        self.credit_checkpoints, self.credit_normalize = credit_checkpoints, bool(credit_normalize)
        if score not in SCORES:
            raise EvaluatorError(f"evaluator.score: expected one of {list(SCORES)}, got {score!r}")
        if not isinstance(width, int) or width < 8 or width % 2:
            raise EvaluatorError(f"evaluator.width: expected an even integer >= 8, got {width!r}")
        if not lr > 0:
            raise EvaluatorError(f"evaluator.lr: expected a positive number, got {lr!r}")
        self.real, self.score_name, self.width, self.lr = real, score, width, float(lr)
        self.device = resolve_device(device)
        self.threads, self.eval_batch, self.flip = threads, eval_batch, bool(flip)

    @property
    def categories(self) -> list[str]:
        return list(self.real.val.categories)

    def _check(self, dataset: Dataset) -> None:
        if len(dataset) == 0:
            raise EvaluatorError("expected a synthetic dataset with at least one image, got 0")
        if list(dataset.categories) != self.categories:
            raise EvaluatorError(f"expected the synthetic categories to match the real set's {self.categories}, "
                                 f"got {list(dataset.categories)}")

    def new_model(self, seed: int) -> CenterNet:
        model = build_seeded(lambda: CenterNet(len(self.categories), self.width), seed)
        return model.to(self.device, memory_format=torch.channels_last)

    def evaluate(self, dataset: Dataset, fidelity: Fidelity, seed: int, warm_start: dict | None = None, *,
                 splits: Sequence[str] = ("val",), progress: ProgressFn | None = None,
                 per_image: Sequence[str] = (), image_weights: np.ndarray | None = None) -> Metrics:
        """``image_weights`` (one per training image, after ``fidelity.images``) scales each image's
        loss term; the run then also reports its differentiable real-val loss (``val_loss``)."""
        splits = check_splits(splits)
        per_image = check_per_image(self, per_image)
        self._check(dataset)
        t0 = time.perf_counter()
        if fidelity.images is not None:
            dataset = dataset.subset(range(min(fidelity.images, len(dataset))))
        images = torch.from_numpy(dataset.stacked_images())
        h, w = images.shape[1:3]
        C = len(self.categories)
        # targets for the images as given and mirrored left-right: a flip per sample is then an
        # index choice at batch time (a free doubling of the data, no Python per object)
        targets = [{k: v.to(self.device) for k, v in encode_targets(anns, C, h, w).items()}
                   for anns in (dataset.annotations, _mirrored(dataset.annotations, w))]
        images = images.to(self.device)
        with torch_threads(self.threads):
            model = self.new_model(seed)
            load_warm_start(model, warm_start)
            t_prep = time.perf_counter() - t0
            curve, t_train, outputs, unrolled = self._train(model, images, targets, fidelity, seed, per_image, progress,
                                                            image_weights)
            t1 = time.perf_counter()
            extras: dict[str, float] = {}
            for split in splits:
                real = getattr(self.real, split)
                for name, value in detection_scores(real, self.predict(model, real)).items():
                    extras[f"{split}_{name}"] = value
            t_score = time.perf_counter() - t1
        extras.update(unrolled)
        extras["train_images"] = float(len(dataset))
        extras["final_loss"] = curve[-1]
        score = extras.get(f"val_{self.score_name}", float("nan"))
        return Metrics(score=score, extras=extras, loss_curve=curve,
                       timings={"prepare": t_prep, "train": t_train, "score": t_score,
                                "total": time.perf_counter() - t0},
                       weights=state_dict_cpu(model), per_image=outputs)

    def _train(self, model: CenterNet, images: torch.Tensor, targets: list[dict[str, torch.Tensor]],
               fidelity: Fidelity, seed: int, per_image: Sequence[str], progress: ProgressFn | None,
               image_weights: np.ndarray | None
               ) -> tuple[list[float], float, dict, dict]:
        """One training run on ``images`` (targets as given and mirrored); (loss curve, seconds,
        the per-image outputs asked for, the unrolled run's val_loss)."""
        flip_rng = np.random.default_rng([seed, 0xF11B])
        kw = dict(n_items=len(images), steps=fidelity.steps, batch_size=fidelity.batch_size, seed=seed, lr=self.lr,
                  weight_decay=WEIGHT_DECAY)

        def batch(idx: np.ndarray, flip: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            """The images at ``idx``, those where ``flip`` mirrored left-right, and their targets."""
            sel = torch.from_numpy(idx).to(self.device)
            x, tgt = images[sel], {}
            if flip is not None:
                x = torch.where(flip[:, None, None, None] if x.ndim == 4 else flip[:, None, None], x.flip(2), x)
            for k in targets[0]:
                a, b = targets[0][k][sel], targets[1][k][sel]
                tgt[k] = a if flip is None else torch.where(flip.view(-1, *[1] * (a.ndim - 1)), b, a)
            return images_to_tensor(x), tgt

        def draw_flip(n: int) -> torch.Tensor | None:
            return torch.from_numpy(flip_rng.random(n) < 0.5).to(self.device) if self.flip else None

        if wants_unrolled(per_image, image_weights):
            flips: dict[int, torch.Tensor | None] = {}    # drawn in step order once; the replay reads them back

            def terms(forward, idx: np.ndarray, step: int) -> torch.Tensor:
                if step not in flips:
                    flips[step] = draw_flip(len(idx))
                x, tgt = batch(idx, flips[step])
                return detection_loss_terms(forward(x), tgt)

            val_x, val_t = self._val_tensors()
            signal, val_loss, curve, t_train = train_unrolled(
                model, terms, lambda forward: detection_loss(forward(val_x), val_t),
                weights=check_weights(image_weights, len(images)), metagradient="metagrad" in per_image, **kw)
            return curve, t_train, {} if signal is None else {"metagrad": signal}, {"val_loss": val_loss}

        def step_loss(idx: np.ndarray) -> torch.Tensor:
            x, tgt = batch(idx, draw_flip(len(idx)))
            return detection_loss(model(x), tgt)

        credit = np.zeros(len(images))
        checkpoints = None
        if "credit" in per_image:
            checkpoints = (checkpoint_steps(fidelity.steps, self.credit_checkpoints),
                           self._credit_fn(model, images, targets[0], credit))
        curve, t_train = fit(model, step_loss, progress=progress, checkpoints=checkpoints, **kw)
        return curve, t_train, {"credit": credit} if "credit" in per_image else {}, {}

    def _val_tensors(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The real val images and their encoded targets, on the device."""
        val = self.real.val.stacked_images()
        vh, vw = val.shape[1:3]
        return images_to_tensor(val).to(self.device), {
            k: v.to(self.device) for k, v in encode_targets(self.real.val.annotations, len(self.categories), vh, vw).items()}

    def _credit_fn(self, model: CenterNet, images: torch.Tensor, targets: dict[str, torch.Tensor],
                   credit: np.ndarray):
        """A checkpoint callback adding each training image's TracIn credit (its heads' loss
        gradient against the real-val loss gradient, see :mod:`evaluator.credit`) to ``credit``."""
        val_x, val_t = self._val_tensors()
        heads = [model.heatmap, model.size, model.offset]

        def image_losses(idx: np.ndarray) -> torch.Tensor:
            sel = torch.from_numpy(idx).to(self.device)
            return detection_losses(model(images_to_tensor(images[sel])), {k: v[sel] for k, v in targets.items()})

        def add(step: int, step_lr: float) -> None:
            credit[:] += tracin_credit(model, heads, image_losses, lambda: detection_loss(model(val_x), val_t),
                                       len(credit), lr=step_lr, chunk=128,
                                       normalize=self.credit_normalize)
        return add

    @torch.no_grad()
    def sample_losses(self, dataset: Dataset, weights: dict | None, seed: int = 0) -> np.ndarray:
        """The detection loss of each image under ``weights`` (a fresh seeded model when None):
        how hard each synthetic image is for the current model (VADRA's per-sample reward)."""
        self._check(dataset)
        images = torch.from_numpy(dataset.stacked_images()).to(self.device)
        h, w = images.shape[1:3]
        targets = {k: v.to(self.device) for k, v in
                   encode_targets(dataset.annotations, len(self.categories), h, w).items()}
        with torch_threads(self.threads):
            model = self.new_model(seed)
            load_warm_start(model, weights)
            model.eval()
            losses = [float(detection_loss(model(images_to_tensor(images[i:i + 1])),
                                           {k: v[i:i + 1] for k, v in targets.items()}))
                      for i in range(len(dataset))]
        return np.asarray(losses)

    @torch.no_grad()
    def predict(self, model: CenterNet, dataset: Dataset) -> list[Detections]:
        """Detections for every image of ``dataset`` (images of one size)."""
        model.eval()
        images = dataset.stacked_images()
        h, w = images.shape[1:3]
        out: list[Detections] = []
        for start in range(0, len(images), self.eval_batch):
            x = images_to_tensor(images[start:start + self.eval_batch]).to(self.device)
            for boxes, scores, labels in decode(model(x), h, w):
                out.append(Detections(boxes, scores, labels))
        return out


def _mirrored(annotations: list[list[ObjectAnnotation]], width: int) -> list[list[ObjectAnnotation]]:
    """Boxes of the left-right mirrored images (only boxes and classes: what the detector learns)."""
    return [[ObjectAnnotation(o.category_id, (width - o.bbox[0] - o.bbox[2], o.bbox[1], o.bbox[2], o.bbox[3]),
                              o.area) for o in objs] for objs in annotations]
