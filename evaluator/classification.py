"""The classification task (the digits benchmark): a small CNN trained on synthetic images and
scored by accuracy on the real splits."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from generator.dataset import Dataset

from .base import Evaluator, EvaluatorError, Fidelity, Metrics, ProgressFn, check_per_image, check_splits
from .credit import checkpoint_steps, tracin_credit
from .metagrad import check_weights, train_unrolled, wants_unrolled
from .real import RealSplits, class_labels
from .training import build_seeded, fit, load_warm_start, resolve_device, state_dict_cpu, torch_threads


class SmallCNN(nn.Module):
    """Two 3×3 conv blocks, one 2× pool, a 128-unit hidden layer; sized for 8×8 to 32×32 grey input."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(0.25), nn.Linear(32 * width, 128), nn.ReLU(inplace=True),
                                        nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _to_input(images: np.ndarray, value_max: float) -> torch.Tensor:
    """uint8 N×H×W (grey) or N×H×W×C → float N×C×H×W scaled to [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(value_max)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


class ClassificationEvaluator(Evaluator):
    """Train on synthetic labelled images (one whole-image annotation each), score accuracy."""

    score_name = "accuracy"
    higher_is_better = True
    per_image_outputs = frozenset({"credit", "metagrad"})

    def __init__(self, real: RealSplits, *, value_max: float | None = None, device: str = "auto",
                 threads: int | None = None, width: int = 32, lr: float = 2e-3, weight_decay: float = 1e-3,
                 credit_checkpoints: int = 4, credit_normalize: bool = True):
        if not isinstance(width, int) or width < 4:
            raise EvaluatorError(f"evaluator.width: expected an integer >= 4, got {width!r}")
        if not isinstance(credit_checkpoints, int) or credit_checkpoints < 1:
            raise EvaluatorError(f"evaluator.credit_checkpoints: expected an integer >= 1, got {credit_checkpoints!r}")
        self.credit_checkpoints, self.credit_normalize = credit_checkpoints, bool(credit_normalize)
        self.real, self.width, self.lr, self.weight_decay = real, width, float(lr), float(weight_decay)
        self.value_max = float(value_max if value_max is not None else real.val.info.get("value_max", 255))
        self.device = resolve_device(device)
        self.threads = threads
        first = real.val.images[0]
        self.shape = first.shape
        self.in_channels = 1 if first.ndim == 2 else first.shape[2]
        self.val_labels, self.test_labels = class_labels(real.val), class_labels(real.test)

    @property
    def categories(self) -> list[str]:
        return list(self.real.val.categories)

    def new_model(self, seed: int) -> SmallCNN:
        return build_seeded(lambda: SmallCNN(len(self.categories), self.in_channels, self.width), seed).to(self.device)

    def evaluate(self, dataset: Dataset, fidelity: Fidelity, seed: int, warm_start: dict | None = None, *,
                 splits: Sequence[str] = ("val",), progress: ProgressFn | None = None,
                 per_image: Sequence[str] = (), image_weights: np.ndarray | None = None) -> Metrics:
        """``image_weights`` (one per training image, after ``fidelity.images``) scales each image's
        loss term; the run then also reports its differentiable real-val loss (``val_loss``)."""
        splits = check_splits(splits)
        per_image = check_per_image(self, per_image)
        if len(dataset) == 0:
            raise EvaluatorError("expected a synthetic dataset with at least one image, got 0")
        if list(dataset.categories) != self.categories:
            raise EvaluatorError(f"expected the synthetic categories to match the real set's {self.categories}, "
                                 f"got {list(dataset.categories)}")
        t0 = time.perf_counter()
        if fidelity.images is not None:
            dataset = dataset.subset(range(min(fidelity.images, len(dataset))))
        images = dataset.stacked_images()
        if images.shape[1:] != self.shape:
            raise EvaluatorError(f"expected synthetic images of the real set's shape {self.shape}, got {images.shape[1:]}")
        x = _to_input(images, self.value_max).to(self.device)
        y = torch.from_numpy(class_labels(dataset)).to(self.device)
        with torch_threads(self.threads):
            model = self.new_model(seed)
            load_warm_start(model, warm_start)
            t_prep = time.perf_counter() - t0
            curve, t_train, outputs, unrolled = self._train(model, x, y, fidelity, seed, per_image, progress,
                                                            image_weights)
            t1 = time.perf_counter()
            extras: dict[str, float] = {}
            for split in splits:
                real = getattr(self.real, split)
                pred = self.predict(model, real.stacked_images())
                labels = self.val_labels if split == "val" else self.test_labels
                extras[f"{split}_accuracy"] = float((pred == labels).mean())
        extras.update(unrolled)
        extras["train_images"] = float(len(dataset))
        extras["final_loss"] = curve[-1]
        return Metrics(score=extras.get("val_accuracy", float("nan")), extras=extras, loss_curve=curve,
                       timings={"prepare": t_prep, "train": t_train, "score": time.perf_counter() - t1,
                                "total": time.perf_counter() - t0},
                       weights=state_dict_cpu(model), per_image=outputs)

    def _train(self, model: SmallCNN, x: torch.Tensor, y: torch.Tensor, fidelity: Fidelity, seed: int,
               per_image: Sequence[str], progress: ProgressFn | None,
               image_weights: np.ndarray | None) -> tuple[list[float], float, dict, dict]:
        """One training run; (loss curve, seconds, the per-image outputs asked for, the unrolled run's val_loss)."""
        kw = dict(n_items=len(x), steps=fidelity.steps, batch_size=fidelity.batch_size, seed=seed, lr=self.lr,
                  weight_decay=self.weight_decay)
        if per_image or image_weights is not None:      # the real val set as tensors, only when needed
            x_val = _to_input(self.real.val.stacked_images(), self.value_max).to(self.device)
            y_val = torch.from_numpy(self.val_labels).to(self.device)
        if wants_unrolled(per_image, image_weights):

            def terms(forward, idx: np.ndarray, step: int) -> torch.Tensor:
                sel = torch.from_numpy(idx).to(self.device)
                return F.cross_entropy(forward(x[sel]), y[sel], reduction="none") / len(idx)

            signal, val_loss, curve, t_train = train_unrolled(
                model, terms, lambda forward: F.cross_entropy(forward(x_val), y_val),
                weights=check_weights(image_weights, len(x)), metagradient="metagrad" in per_image, **kw)
            return curve, t_train, {} if signal is None else {"metagrad": signal}, {"val_loss": val_loss}

        def step_loss(idx: np.ndarray) -> torch.Tensor:
            sel = torch.from_numpy(idx).to(self.device)
            return F.cross_entropy(model(x[sel]), y[sel])

        credit = np.zeros(len(x))

        def add_credit(step: int, step_lr: float) -> None:
            credit[:] += tracin_credit(
                model, [model.classifier[-1]],
                lambda idx: F.cross_entropy(model(x[torch.from_numpy(idx)]), y[torch.from_numpy(idx)],
                                            reduction="none"),
                lambda: F.cross_entropy(model(x_val), y_val), len(x), lr=step_lr, normalize=self.credit_normalize)

        checkpoints = (checkpoint_steps(fidelity.steps, self.credit_checkpoints), add_credit) \
            if "credit" in per_image else None
        curve, t_train = fit(model, step_loss, progress=progress, checkpoints=checkpoints, **kw)
        return curve, t_train, {"credit": credit} if "credit" in per_image else {}, {}

    @torch.no_grad()
    def sample_losses(self, dataset: Dataset, weights: dict | None, seed: int = 0) -> np.ndarray:
        """Cross-entropy of each image under ``weights`` (a fresh seeded model when None)."""
        with torch_threads(self.threads):
            model = self.new_model(seed)
            load_warm_start(model, weights)
            model.eval()
            x = _to_input(dataset.stacked_images(), self.value_max).to(self.device)
            y = torch.from_numpy(class_labels(dataset)).to(self.device)
            return F.cross_entropy(model(x), y, reduction="none").cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def predict(self, model: SmallCNN, images: np.ndarray) -> np.ndarray:
        model.eval()
        out = [model(_to_input(images[s:s + 512], self.value_max).to(self.device)).argmax(1).cpu()
               for s in range(0, len(images), 512)]
        return torch.cat(out).numpy()
