"""Tests for evaluator.gap (MMD², witness, Fréchet) and evaluator.features (random conv features)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from evaluator.features import RandomConvFeatures
from evaluator.gap import (
    frechet_distance,
    gap_metrics,
    gap_with_witness,
    median_bandwidth,
    mmd2_unbiased,
    witness_values,
)


def gauss(n, d=5, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# ---------------------------------------------------------------- MMD²
def mmd2_loops(x, y, sigma):
    k = lambda a, b: math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * sigma ** 2))  # noqa: E731
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_mmd2_matches_double_loop():
    x, y = gauss(7, 3, seed=1), gauss(5, 3, shift=0.7, seed=2)
    for sigma in (0.5, 2.0):
        assert mmd2_unbiased(x, y, bandwidth=sigma) == pytest.approx(mmd2_loops(x, y, sigma), abs=1e-12)
    z = np.concatenate([x, y])
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))[np.triu_indices(len(z), 1)]
    assert median_bandwidth(x, y) == pytest.approx(np.median(d))
    assert mmd2_unbiased(x, y) == pytest.approx(mmd2_loops(x, y, np.median(d)), abs=1e-12)


def test_mmd2_with_itself_is_tiny():
    # exactly: 2/m · (mean off-diagonal k − 1) ∈ [−2/m, 0]
    x = gauss(200)
    value = mmd2_unbiased(x, x)
    assert -2 / len(x) <= value <= 0


def test_mmd2_near_zero_same_distribution_and_monotone_in_shift():
    values = [mmd2_unbiased(gauss(300, seed=1), gauss(300, shift=s, seed=2)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 0.01
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[1] > 0.02


def test_median_bandwidth_guards_duplicates():
    x = np.ones((4, 3))
    assert median_bandwidth(x, x) == 1.0
    y = np.concatenate([x, x + 2.0])
    assert median_bandwidth(x, y) == pytest.approx(2 * math.sqrt(3))  # zeros are left out
    z = np.random.default_rng(0).normal(size=(2, 50)) * 10  # round-off must not count as a distance
    assert median_bandwidth(np.repeat(z[:1], 8, 0), np.repeat(z[1:], 2, 0)) == pytest.approx(
        np.linalg.norm(z[0] - z[1]))


# ---------------------------------------------------------------- witness
def test_witness_identity():
    x, y = gauss(40, seed=3), gauss(30, shift=0.8, seed=4)
    sigma = median_bandwidth(x, y)
    w_syn, w_real = witness_values(x, y), witness_values(y, x)
    assert w_syn.shape == (40,) and w_real.shape == (30,)
    assert mmd2_unbiased(x, y) == pytest.approx(-w_syn.mean() - w_real.mean(), abs=1e-12)
    # mean_i w_i = cross − within_x, from the definitions
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * sigma ** 2))  # noqa: E731
    kxx = k(x, x)
    within_x = (kxx.sum() - np.trace(kxx)) / (40 * 39)
    assert w_syn.mean() == pytest.approx(k(x, y).mean() - within_x, abs=1e-12)
    # element-wise against the definition, point itself excluded
    i = 7
    expect = k(x[i:i + 1], y).mean() - np.delete(kxx[i], i).mean()
    assert w_syn[i] == pytest.approx(expect, abs=1e-12)


def test_witness_is_lower_for_shifted_synthetic_points():
    real = gauss(100, d=2, seed=5)
    syn = np.concatenate([gauss(50, d=2, seed=6), gauss(50, d=2, shift=4.0, seed=7)])
    w = witness_values(syn, real)
    assert w[:50].mean() > w[50:].mean()
    assert w[:50].min() > w[50:].max()


# ---------------------------------------------------------------- Fréchet
def test_frechet_identical_sets_is_zero():
    x = gauss(500, d=4)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_matches_closed_form():
    rng = np.random.default_rng(8)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([1.0, 0.5, 0.0])
    a = rng.normal(size=(3, 3))
    cov1, cov2 = a @ a.T + 0.5 * np.eye(3), np.diag([1.0, 2.0, 0.5])
    x = rng.multivariate_normal(mu1, cov1, size=40_000)
    y = rng.multivariate_normal(mu2, cov2, size=40_000)
    expect = ((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * np.real(scipy.linalg.sqrtm(cov1 @ cov2)))
    assert frechet_distance(x, y) == pytest.approx(expect, rel=0.05)


def test_frechet_with_fewer_rows_than_features_is_finite():
    value = frechet_distance(gauss(10, d=30, seed=1), gauss(12, d=30, seed=2))
    assert np.isfinite(value) and value >= 0


def test_frechet_retries_with_an_offset_when_sqrtm_fails(monkeypatch):
    seen, real_sqrtm = [], scipy.linalg.sqrtm

    def flaky(a):
        seen.append(a.copy())
        return np.full_like(a, np.nan) if len(seen) == 1 else real_sqrtm(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky)
    x, y = gauss(300, d=3, seed=1), gauss(300, d=3, seed=2)
    value = frechet_distance(x, y)
    assert len(seen) == 2 and not np.array_equal(seen[0], seen[1])  # retried on offset covariances
    monkeypatch.undo()
    assert value == pytest.approx(frechet_distance(x, y), abs=1e-4)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "x, y, message",
    [
        (np.zeros(5), np.zeros((5, 2)), "x: expected a 2-D"),
        (np.zeros((5, 2)), np.zeros((5, 3)), "y: expected 2 features like x, got 3"),
        (np.zeros((1, 2)), np.zeros((5, 2)), "x: expected at least 2 rows, got 1"),
        (np.full((3, 2), np.nan), np.zeros((5, 2)), "x: expected finite values"),
    ],
)
def test_gap_functions_validate_shapes(x, y, message):
    for fn in (mmd2_unbiased, frechet_distance, median_bandwidth):
        with pytest.raises(ValueError, match=message):
            fn(x, y)
    with pytest.raises(ValueError, match=message.replace("x:", "x_syn:").replace("y:", "y_real:")
                       .replace("like x", "like x_syn")):
        witness_values(x, y)


def test_bad_bandwidth_is_rejected():
    with pytest.raises(ValueError, match="bandwidth: expected a positive number"):
        mmd2_unbiased(gauss(5), gauss(5), bandwidth=0.0)


# ---------------------------------------------------------------- features
def digits_like(n, seed=0):
    return np.random.default_rng(seed).integers(0, 17, size=(n, 8, 8), dtype=np.uint8)


def rgb(n, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_features_deterministic_per_seed_and_differ_across_seeds():
    images = rgb(6, 32)
    a, b = RandomConvFeatures(3)(images), RandomConvFeatures(3)(images)
    assert a.dtype == np.float64 and a.shape == (6, RandomConvFeatures(3).feature_dim)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, RandomConvFeatures(4)(images))


def test_features_grey_digits_and_rgb():
    f = RandomConvFeatures(0)
    grey = f(digits_like(10), value_max=16)
    colour = f(rgb(5, 64))
    assert grey.shape == (10, f.feature_dim) and colour.shape == (5, f.feature_dim)
    assert np.isfinite(grey).all() and np.isfinite(colour).all()
    assert grey.std(0).max() > 0  # different images, different features
    assert f(rgb(2, 128)).shape == (2, f.feature_dim)  # size-independent length


def test_grey_equals_replicated_rgb_and_list_equals_array():
    f = RandomConvFeatures(1)
    grey = digits_like(4) * 15
    np.testing.assert_allclose(f(grey), f(np.repeat(grey[..., None], 3, axis=-1)), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(f(list(grey)), f(grey))
    one_channel = RandomConvFeatures(1, in_channels=1)
    assert one_channel(rgb(3, 16)).shape == (3, one_channel.feature_dim)


def test_features_batching_does_not_change_result():
    images = rgb(7, 16)
    np.testing.assert_allclose(RandomConvFeatures(2, batch_size=3)(images), RandomConvFeatures(2)(images),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (np.zeros((2, 8, 8), np.float64), {}, "expected uint8 images, got float64"),
        (np.zeros((8, 8), np.uint8), {}, r"expected an N×H×W or N×H×W×C array, got shape \(8, 8\)"),
        (np.zeros((2, 8, 8, 4), np.uint8), {}, "expected 1 \\(grey\\) or 3 \\(RGB\\) channels, got 4"),
        (np.full((2, 8, 8), 17, np.uint8), {"value_max": 16}, "expected pixel values ≤ value_max=16, got max 17"),
        ([np.zeros((8, 8), np.uint8), np.zeros((9, 8), np.uint8)], {}, "expected images of one size"),
        (np.zeros((2, 8, 8), np.uint8), {"value_max": 0}, "value_max: expected a positive number, got 0"),
        ("abc", {}, "expected a uint8 array or a list of them, got str"),
    ],
)
def test_features_validate_inputs(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomConvFeatures(0)(images, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"in_channels": 2}, "in_channels: expected 1, 3 or None, got 2"),
     ({"width": 0}, "width: expected a positive int, got 0"),
     ({"seed": 1.5}, "seed: expected an int, got 1.5")],
)
def test_features_validate_constructor(kwargs, message):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        RandomConvFeatures(**kwargs)


# ---------------------------------------------------------------- gap_metrics on images
def blobs(n, size=32, seed=0):
    """Smooth RGB images: a bright disc of random centre, radius and colour on a dark ground."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(8, size - 8, 2)
        r = rng.uniform(4, 8)
        colour = rng.uniform(120, 255, 3)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)[..., None]
        out[i] = np.where(disc, colour, 30.0).astype(np.uint8)
    return out


def test_gap_metrics_sees_noise():
    clean, similar = blobs(80, seed=1), blobs(80, seed=2)
    noise = np.random.default_rng(3).normal(0, 60, clean.shape)
    noisy = np.clip(clean + noise, 0, 255).astype(np.uint8)
    near, far = gap_metrics(similar, clean), gap_metrics(noisy, clean)
    assert set(near) == {"mmd2", "frechet", "bandwidth", "n_synthetic", "n_real"}
    assert far["mmd2"] > near["mmd2"] + 0.1
    assert far["frechet"] > near["frechet"]
    assert near["n_synthetic"] == near["n_real"] == 80
    assert gap_metrics(similar, clean) == near  # deterministic


def test_gap_with_witness_and_max_images():
    clean, similar = blobs(40, seed=1), blobs(40, seed=2)
    noisy = np.clip(similar + np.random.default_rng(4).normal(0, 60, similar.shape), 0, 255).astype(np.uint8)
    synthetic = np.concatenate([similar[:20], noisy[20:]])
    metrics, w = gap_with_witness(synthetic, clean)
    assert w.shape == (40,)
    assert w[:20].mean() > w[20:].mean()  # the noisy half looks less real
    capped = gap_metrics(list(synthetic), clean, max_images=10)
    assert capped["n_synthetic"] == capped["n_real"] == 10
    grey_vs_digits = gap_metrics(digits_like(30, 1), digits_like(20, 2), value_max=16)
    assert grey_vs_digits["n_synthetic"] == 30 and grey_vs_digits["n_real"] == 20
    with pytest.raises(ValueError, match="real_images: expected at least 2 images, got 1"):
        gap_metrics(synthetic, clean[:1])
