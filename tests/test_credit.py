"""Per-image credit (evaluator.credit): the head-gradient inner products match explicit
per-image gradients, and the evaluators return one credit per training image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluator.base import EvaluatorError, Fidelity
from evaluator.centernet import CenterNet, detection_loss, detection_losses, encode_targets, images_to_tensor
from evaluator.classification import ClassificationEvaluator, SmallCNN
from evaluator.credit import checkpoint_steps, tracin_credit
from evaluator.real import digits_dataset, load_digits_real
from generator.dataset import ObjectAnnotation


def explicit(loss_i, val_loss, params, n, lr, normalize=False):
    gv = torch.autograd.grad(val_loss(), params)
    out = []
    for i in range(n):
        gi = torch.autograd.grad(loss_i(i), params)
        dot = sum((a * b).sum() for a, b in zip(gi, gv)).item()
        norm = float(torch.sqrt(sum((a * a).sum() for a in gi))) if normalize else 1.0
        out.append(lr * dot / norm)
    return np.array(out)


def test_classifier_head_credit_matches_per_image_gradients():
    torch.manual_seed(0)
    m = SmallCNN(10, 1, 8).double().eval()
    x, y = torch.rand(12, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (12,))
    xv, yv = torch.rand(20, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (20,))
    head = m.classifier[-1]
    for normalize in (False, True):
        got = tracin_credit(m, [head], lambda idx: F.cross_entropy(m(x[idx]), y[idx], reduction="none"),
                            lambda: F.cross_entropy(m(xv), yv), 12, lr=0.5, chunk=5, normalize=normalize)
        ref = explicit(lambda i: F.cross_entropy(m(x[i:i + 1]), y[i:i + 1]), lambda: F.cross_entropy(m(xv), yv),
                       list(head.parameters()), 12, 0.5, normalize)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-15)
        assert np.abs(ref).max() > 1e-4      # not trivially zero


def test_detector_heads_credit_matches_per_image_gradients():
    torch.manual_seed(1)
    net = CenterNet(3, 8).double().eval()
    anns = [[ObjectAnnotation(1 + i % 3, (4.0 + i, 6.0, 10.0, 8.0), 80.0)] * (1 + i % 2) for i in range(6)]
    t, vt = encode_targets(anns, 3, 32, 32), encode_targets(anns[:5], 3, 32, 32)
    x = images_to_tensor(torch.randint(0, 255, (6, 32, 32, 3), dtype=torch.uint8)).double()
    xv = images_to_tensor(torch.randint(0, 255, (5, 32, 32, 3), dtype=torch.uint8)).double()
    heads = [net.heatmap, net.size, net.offset]
    one = lambda i: {k: v[i:i + 1] for k, v in t.items()}  # noqa: E731
    for i in range(6):   # per-image losses equal the batch loss of that image alone
        assert torch.allclose(detection_losses(net(x[i:i + 1]), one(i))[0], detection_loss(net(x[i:i + 1]), one(i)))
    for normalize in (False, True):
        got = tracin_credit(net, heads, lambda idx: detection_losses(net(x[idx]), {k: v[idx] for k, v in t.items()}),
                            lambda: detection_loss(net(xv), vt), 6, lr=1.0, chunk=4, normalize=normalize)
        ref = explicit(lambda i: detection_loss(net(x[i:i + 1]), one(i)), lambda: detection_loss(net(xv), vt),
                       [p for h in heads for p in h.parameters()], 6, 1.0, normalize)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_credit_refuses_heads_that_are_not_pointwise_linear():
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    with pytest.raises(ValueError, match="expected nn.Linear or 1×1 nn.Conv2d"):
        tracin_credit(m, [m[0]], lambda idx: m(torch.zeros(1, 1, 4, 4)).sum((1, 2, 3)), lambda: m(torch.zeros(1, 1, 4, 4)).sum(),
                      1, lr=1.0)


def test_checkpoint_steps_spread_over_the_run():
    assert checkpoint_steps(100, 4) == [24, 49, 74, 99]
    assert checkpoint_steps(3, 10) == [0, 1, 2]


def test_classification_evaluator_returns_one_credit_per_image_and_real_digits_get_positive_credit():
    real = load_digits_real(seed=0)
    ev = ClassificationEvaluator(real, device="cpu", threads=1, width=8)
    # half real val digits (help on val), half the same images with shuffled labels (hurt)
    imgs = np.stack(real.val.images[:60])
    labels = np.array([o[0].category_id - 1 for o in real.val.annotations[:60]])
    wrong = (labels + 1 + np.random.default_rng(0).integers(0, 9, 60)) % 10
    ds = digits_dataset(np.concatenate([imgs, imgs]), np.concatenate([labels, wrong]))
    m = ev.evaluate(ds, Fidelity(steps=40, batch_size=16), seed=0, per_image=("credit",))
    credit = m.per_image["credit"]
    assert credit.shape == (120,) and np.isfinite(credit).all()
    assert credit[:60].mean() > credit[60:].mean()
    again = ev.evaluate(ds, Fidelity(steps=40, batch_size=16), seed=0, per_image=("credit",))
    np.testing.assert_array_equal(again.per_image["credit"], credit)      # seeded, byte-identical
    plain = ev.evaluate(ds, Fidelity(steps=40, batch_size=16), seed=0)
    assert plain.per_image == {} and plain.score == m.score                # credit does not change training
    with pytest.raises(EvaluatorError, match="per_image: expected outputs among"):
        ev.evaluate(ds, Fidelity(steps=2), seed=0, per_image=("influence",))
