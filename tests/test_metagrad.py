"""Exact per-image metagradients (evaluator/metagrad.py): the replayed run is fit()'s run, and
its derivatives match finite differences of a retraining with one image's weight moved."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluator.classification import SmallCNN
from evaluator.metagrad import Unrolled, train_unrolled
from evaluator.training import build_seeded, fit

N, STEPS, BATCH, SEED, LR, WD = 40, 30, 16, 5, 2e-3, 1e-3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((N, 1, 8, 8)))
    y = torch.from_numpy(rng.integers(0, 10, N))
    return x, y, torch.from_numpy(rng.random((30, 1, 8, 8))), torch.from_numpy(rng.integers(0, 10, 30))


def model():
    return build_seeded(lambda: SmallCNN(10, 1, 8), 3).double()     # dropout on: its masks are replayed


def terms_and_val(data):
    x, y, xv, yv = data
    terms = lambda fwd, idx, step: F.cross_entropy(fwd(x[torch.from_numpy(idx)]), y[torch.from_numpy(idx)],
                                                   reduction="none") / len(idx)
    return terms, lambda fwd: F.cross_entropy(fwd(xv), yv)


def unrolled(m, terms):
    return Unrolled(m, terms, n_items=N, steps=STEPS, batch_size=BATCH, seed=SEED, lr=LR, weight_decay=WD)


def test_the_unrolled_run_is_fits_run(data):
    x, y, _, _ = data
    a, b = model(), model()
    fit(a, lambda idx: F.cross_entropy(a(x[torch.from_numpy(idx)]), y[torch.from_numpy(idx)]), n_items=N,
        steps=STEPS, batch_size=BATCH, seed=SEED, lr=LR, weight_decay=WD)
    unrolled(b, terms_and_val(data)[0]).train(keep=False)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-12)


def test_metagradients_match_finite_differences_of_a_retraining(data):
    terms, val = terms_and_val(data)
    signal, _, losses, _ = train_unrolled(model(), terms, val, n_items=N, steps=STEPS, batch_size=BATCH,
                                          seed=SEED, lr=LR, weight_decay=WD)
    assert 1 <= len(losses) <= STEPS and signal.shape == (N,) and np.abs(signal).max() > 0

    def val_loss(weights):
        m = model()
        unrolled(m, terms).train(weights, keep=False)
        with torch.no_grad():
            return float(val(m))

    delta = 1e-6
    for i in (0, 7, 23):
        w = np.ones(N)
        w[i] += delta
        up = val_loss(w)
        w[i] -= 2 * delta
        fd = (up - val_loss(w)) / (2 * delta)
        assert -signal[i] == pytest.approx(fd, rel=1e-4, abs=1e-9)      # the signal is −d val / d w


def test_an_image_never_drawn_into_a_batch_has_no_metagradient(data):
    terms, val = terms_and_val(data)
    signal, _, _, _ = train_unrolled(model(), terms, val, n_items=N, steps=1, batch_size=BATCH,
                                     seed=SEED, lr=LR, weight_decay=WD)
    drawn = Unrolled(model(), terms, n_items=N, steps=1, batch_size=BATCH, seed=SEED, lr=LR, weight_decay=WD).batches[0]
    undrawn = np.setdiff1d(np.arange(N), drawn)
    assert np.all(signal[undrawn] == 0) and np.any(signal[drawn] != 0)


# --------------------------------------------------------------------------------------------
# The evaluators' ``per_image=("metagrad",)``: the same training run, and a signal per image
# --------------------------------------------------------------------------------------------

def _evaluators():
    from evaluator.classification import ClassificationEvaluator
    from evaluator.detection import DetectionEvaluator
    from evaluator.real import RealSplits, load_digits_real
    from test_evaluator import box_dataset

    boxes = box_dataset(12, 0, 32)
    digits = load_digits_real(seed=0)
    return [(DetectionEvaluator(RealSplits(boxes, box_dataset(6, 1, 32), "boxes"), device="cpu", threads=1), boxes),
            (ClassificationEvaluator(digits, device="cpu", threads=1), digits.test.subset(range(48)))]


def test_detection_terms_sum_to_the_batch_loss():
    from evaluator.centernet import detection_loss, detection_loss_terms, encode_targets
    from test_evaluator import box_dataset

    ds = box_dataset(5, 2, 32)
    targets = encode_targets(ds.annotations, 2, 32, 32)
    g = torch.Generator().manual_seed(0)
    outputs = tuple(torch.randn(5, c, 8, 8, generator=g) for c in (2, 2, 2))
    assert detection_loss_terms(outputs, targets).sum().item() == pytest.approx(
        detection_loss(outputs, targets).item(), rel=1e-6)


@pytest.mark.parametrize("which", [0, 1], ids=["detection", "classification"])
def test_measuring_metagradients_trains_the_same_model(which):
    from evaluator.base import Fidelity

    ev, ds = _evaluators()[which]
    fid = Fidelity(steps=8, batch_size=8)
    plain = ev.evaluate(ds, fid, 3)
    meta = ev.evaluate(ds, fid, 3, per_image=("metagrad",))
    assert meta.score == pytest.approx(plain.score, abs=1e-6)
    np.testing.assert_allclose(meta.loss_curve, plain.loss_curve, rtol=1e-5)
    signal = meta.per_image["metagrad"]
    assert signal.shape == (len(ds),) and np.isfinite(signal).all() and np.abs(signal).max() > 0
    again = ev.evaluate(ds, fid, 3, per_image=("metagrad",)).per_image["metagrad"]
    np.testing.assert_array_equal(signal, again)                      # same seed, same bytes


def test_credit_and_metagrad_together_are_refused():
    from evaluator.base import EvaluatorError, Fidelity

    ev, ds = _evaluators()[1]
    with pytest.raises(EvaluatorError, match="'credit' or 'metagrad'"):
        ev.evaluate(ds, Fidelity(steps=2, batch_size=8), 0, per_image=("credit", "metagrad"))


def test_image_weights_scale_the_images_terms_and_are_checked():
    from evaluator.base import EvaluatorError, Fidelity

    ev, ds = _evaluators()[0]
    fid = Fidelity(steps=6, batch_size=8)
    ones = ev.evaluate(ds, fid, 3, image_weights=np.ones(len(ds)))
    assert ones.score == pytest.approx(ev.evaluate(ds, fid, 3).score, abs=1e-6) and "val_loss" in ones.extras
    w = np.ones(len(ds))
    w[:6] = 0.0
    dropped = ev.evaluate(ds, fid, 3, image_weights=w)
    assert dropped.extras["val_loss"] != ones.extras["val_loss"]
    for bad in (np.ones(3), -np.ones(len(ds)), np.full(len(ds), np.nan)):
        with pytest.raises(EvaluatorError, match="image_weights: expected 12 finite weights"):
            ev.evaluate(ds, fid, 3, image_weights=bad)
