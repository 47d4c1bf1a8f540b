"""Tests for generator.space: ParameterSpace, its five families, θ ⇄ space, densities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from generator.space import (
    Categorical,
    IntCount,
    LogUniform,
    ParameterSpace,
    SpaceError,
    TruncatedNormal,
    Uniform,
)

SPEC = {
    "u": {"family": "uniform", "bounds": [-2.0, 3.0], "range": [-1.0, 2.0]},
    "lu": {"family": "loguniform", "bounds": [0.01, 100.0], "range": [0.1, 10.0]},
    "tn": {"family": "truncnormal", "bounds": [0.0, 10.0], "mean": 3.0, "std": 2.0},
    "k": {"family": "int", "bounds": [1, 8], "mean": 3, "std": 1.5, "size": 3},
    "c": {"family": "categorical", "choices": ["red", "green", "blue"], "probs": [0.2, 0.3, 0.5]},
}

PROPS = settings(max_examples=40, deadline=None)


def make_space(spec=SPEC) -> ParameterSpace:
    return ParameterSpace.from_dict(spec)


SPACE = make_space()
LO, HI = SPACE.bounds()


@st.composite
def thetas(draw, space=SPACE):
    lo, hi = space.bounds()
    return np.array([draw(st.floats(float(a), float(b), allow_nan=False)) for a, b in zip(lo, hi)])


def single(name: str, spec: dict) -> ParameterSpace:
    return ParameterSpace.from_dict({name: spec})


# --------------------------------------------------------------------------------------------
# Basic structure
# --------------------------------------------------------------------------------------------

def test_structure_and_names():
    assert SPACE.names == ["u", "lu", "tn", "k", "c"]
    assert SPACE.dim == 2 + 2 + 2 + 2 + 3
    assert SPACE.theta_names() == ["u.low", "u.high", "lu.low", "lu.high", "tn.mean", "tn.log_std",
                                   "k.mean", "k.log_std", "c.logit[red]", "c.logit[green]",
                                   "c.logit[blue]"]
    assert isinstance(SPACE["u"].family, Uniform) and type(SPACE["u"].family) is Uniform
    assert isinstance(SPACE["lu"].family, LogUniform)
    assert type(SPACE["tn"].family) is TruncatedNormal
    assert isinstance(SPACE["k"].family, IntCount)
    assert isinstance(SPACE["c"].family, Categorical)
    assert SPACE["k"].size == 3
    assert "u" in SPACE and "nope" not in SPACE
    with pytest.raises(KeyError):
        SPACE["nope"]
    lo, hi = SPACE.bounds()
    assert lo.shape == hi.shape == (SPACE.dim,)
    assert np.all(lo < hi)
    theta = SPACE.to_vector()
    assert np.all((lo <= theta) & (theta <= hi))
    # the initial vector reflects the spec
    assert theta[:2].tolist() == [-1.0, 2.0]
    assert theta[4] == 3.0 and theta[5] == pytest.approx(math.log(2.0))
    np.testing.assert_allclose(torch.softmax(torch.tensor(theta[8:]), 0).numpy(), [0.2, 0.3, 0.5], rtol=1e-9)


def test_defaults():
    s = ParameterSpace.from_dict({
        "u": {"family": "uniform", "bounds": [2.0, 4.0]},
        "t": {"family": "truncnormal", "bounds": [0.0, 8.0]},
        "c": {"family": "categorical", "choices": ["a", "b", "c", "d"]},
    })
    assert s["u"].family.low == 2.0 and s["u"].family.high == 4.0
    assert s["t"].family.mean == 4.0 and math.exp(s["t"].family.log_std) == pytest.approx(2.0)
    np.testing.assert_allclose(s.to_vector()[4:], 0.0)


# --------------------------------------------------------------------------------------------
# Property tests over θ
# --------------------------------------------------------------------------------------------

@PROPS
@given(theta=thetas(), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 64))
def test_samples_respect_support_and_types(theta, seed, n):
    samples = SPACE.sample(theta, n, np.random.default_rng(seed))
    assert set(samples) == set(SPACE.names)
    for p in SPACE.parameters:
        x = samples[p.name]
        expected_shape = (n,) if p.size == 1 else (n, p.size)
        assert x.shape == expected_shape, p.name
        lo, hi = p.family.support()
        assert np.all(np.isfinite(x)), p.name
        assert np.all((x >= lo) & (x <= hi)), (p.name, x.min(), x.max(), lo, hi)
        if p.family.is_discrete:
            assert np.issubdtype(x.dtype, np.integer), (p.name, x.dtype)
    c = samples["c"]
    assert np.all((c >= 0) & (c < 3))
    # uniform samples lie inside the effective (sorted) range when it is wider than the minimum
    a, b = sorted(theta[:2])
    if b - a >= Uniform.MIN_WIDTH * 5.0:
        assert np.all((samples["u"] >= a) & (samples["u"] <= b))
    a, b = sorted(theta[2:4])
    if math.log(b / a) >= LogUniform.MIN_WIDTH * math.log(1e4):
        assert np.all((samples["lu"] >= a * (1 - 1e-12)) & (samples["lu"] <= b * (1 + 1e-12)))


@PROPS
@given(theta=thetas(), seed=st.integers(0, 2**32 - 1))
def test_log_prob_finite_on_own_samples(theta, seed):
    samples = SPACE.sample(theta, 32, np.random.default_rng(seed))
    lp = SPACE.log_prob(theta, samples)
    assert lp.shape == (32,)
    assert lp.dtype == torch.float64
    assert torch.isfinite(lp).all(), lp
    # the joint log-density is the sum of the per-parameter ones
    parts = sum(single(p.name, p.to_dict()).log_prob(
        theta[SPACE._slices[p.name]], {p.name: samples[p.name]}) for p in SPACE.parameters)
    torch.testing.assert_close(lp, parts, rtol=1e-12, atol=1e-9)


@PROPS
@given(theta=thetas())
def test_from_vector_to_vector_exact(theta):
    back = SPACE.from_vector(theta).to_vector()
    assert back.dtype == np.float64
    assert np.array_equal(back, theta), (theta, back)


@PROPS
@given(theta=thetas())
def test_dict_round_trip_exact(theta):
    space = SPACE.from_vector(theta)
    d = space.to_dict()
    again = ParameterSpace.from_dict(d)
    assert again.to_dict() == d
    assert np.array_equal(again.to_vector(), space.to_vector()), (space.to_vector(), again.to_vector())
    assert again.names == space.names
    assert [p.size for p in again.parameters] == [p.size for p in space.parameters]


def test_dict_round_trip_reversed_uniform_range():
    # every θ in the box is valid, including low > high (the range is their sorted pair)
    for name, theta_pair in (("u", [2.0, 1.0]), ("lu", [5.0, 0.5])):
        theta = SPACE.to_vector()
        theta[SPACE._slices[name]] = theta_pair
        space = SPACE.from_vector(theta)
        again = ParameterSpace.from_dict(space.to_dict())
        assert np.array_equal(again.to_vector(), space.to_vector())


@pytest.mark.parametrize("log_std", [0.25, -1.3, 1.1, math.log(2.0)])
def test_dict_round_trip_log_std_exact(log_std):
    for name in ("tn", "k"):
        theta = SPACE.to_vector()
        theta[SPACE._slices[name].start + 1] = log_std
        space = SPACE.from_vector(theta)
        again = ParameterSpace.from_dict(space.to_dict())
        assert again.to_vector()[SPACE._slices[name].start + 1] == log_std, name


@pytest.mark.parametrize("spec", [
    {"family": "truncnormal", "bounds": [0.0, 10.0], "std": 0.01},   # 1e-3 × width: the minimum
    {"family": "truncnormal", "bounds": [0.0, 10.0], "std": 100.0},  # 10 × width: the maximum
    {"family": "int", "bounds": [1, 8], "std": 0.05},                # the int minimum
    {"family": "int", "bounds": [1, 8], "std": 80.0},                # 10 × (number of counts)
])
def test_std_at_documented_limits_accepted(spec):
    space = single("s", spec)
    lo, hi = space.bounds()
    assert lo[1] - 1e-9 <= space.to_vector()[1] <= hi[1] + 1e-9


@PROPS
@given(theta=thetas())
def test_named_round_trip(theta):
    named = SPACE.named(theta)
    assert list(named) == SPACE.theta_names()
    assert all(isinstance(v, float) for v in named.values())
    assert np.array_equal(SPACE.from_named(named), theta)
    # order of the mapping does not matter
    assert np.array_equal(SPACE.from_named(dict(reversed(list(named.items())))), theta)


def test_from_named_missing_entry_named():
    named = SPACE.named(SPACE.to_vector())
    del named["tn.log_std"]
    with pytest.raises(SpaceError, match=r"tn\.log_std"):
        SPACE.from_named(named)


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------

def _fd_check(space: ParameterSpace, theta: np.ndarray, fn, eps=1e-6, rtol=1e-4, atol=1e-7):
    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    out = fn(t)
    assert out.dim() == 0 and torch.isfinite(out)
    (grad,) = torch.autograd.grad(out, t)
    grad = grad.numpy()
    assert np.all(np.isfinite(grad))
    fd = np.zeros_like(theta)
    for i in range(len(theta)):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += eps
        tm[i] -= eps
        with torch.no_grad():
            fp = float(fn(torch.tensor(tp, dtype=torch.float64)))
            fm = float(fn(torch.tensor(tm, dtype=torch.float64)))
        fd[i] = (fp - fm) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=rtol, atol=atol)
    return grad


GRAD_CASES = [
    # (spec, θ values, samples) — uniform samples well inside the effective range
    ({"family": "uniform", "bounds": [-2.0, 3.0]}, [-1.0, 2.0], [-0.5, 0.0, 1.5]),
    ({"family": "uniform", "bounds": [-2.0, 3.0]}, [2.5, -0.5], [0.0, 1.0, 2.0]),  # reversed
    ({"family": "uniform", "bounds": [0.0, 1.0]}, [0.4, 0.4002], [0.40005, 0.4001]),  # min width
    ({"family": "loguniform", "bounds": [0.01, 100.0]}, [0.1, 10.0], [0.2, 1.0, 5.0]),
    ({"family": "loguniform", "bounds": [1.0, 1000.0]}, [30.0, 3.0], [4.0, 10.0, 25.0]),
    ({"family": "truncnormal", "bounds": [0.0, 10.0]}, [3.0, math.log(2.0)], [0.1, 3.0, 9.5]),
    ({"family": "truncnormal", "bounds": [0.0, 10.0]}, [0.2, math.log(0.5)], [0.0, 0.3, 1.7]),
    ({"family": "truncnormal", "bounds": [-1.0, 1.0]}, [0.9, math.log(5.0)], [-0.99, 0.0, 0.99]),
    ({"family": "int", "bounds": [1, 8]}, [3.2, math.log(1.5)], [1, 3, 4, 8]),
    ({"family": "int", "bounds": [0, 3]}, [0.1, math.log(0.3)], [0, 1]),
    ({"family": "int", "bounds": [0, 20]}, [10.0, math.log(40.0)], [0, 5, 20]),
    ({"family": "categorical", "choices": ["a", "b", "c"]}, [0.5, -1.0, 2.0], [0, 1, 2, 2]),
    ({"family": "categorical", "choices": ["a", "b"]}, [1.9, -1.9], [1, 0]),
]


@pytest.mark.parametrize("spec,theta,x", GRAD_CASES, ids=[f"{c[0]['family']}-{i}" for i, c in enumerate(GRAD_CASES)])
def test_log_prob_gradient_matches_finite_differences(spec, theta, x):
    space = single("p", spec)
    theta = np.array(theta, dtype=np.float64)
    samples = {"p": np.array(x)}
    assert torch.isfinite(space.log_prob(theta, samples)).all()
    grad = _fd_check(space, theta, lambda t: space.log_prob(t, samples).sum())
    at_min_width = spec["family"] == "uniform" and abs(theta[1] - theta[0]) < Uniform.MIN_WIDTH * (
        spec["bounds"][1] - spec["bounds"][0])
    if not at_min_width:  # at the minimum width the density is locally constant in θ
        assert np.any(grad != 0)


def test_log_prob_gradient_full_space_with_sized_parameter():
    theta = SPACE.to_vector()
    samples = {"u": np.array([0.0, 1.0]), "lu": np.array([1.0, 2.0]), "tn": np.array([2.0, 5.0]),
               "k": np.array([[1, 2, 3], [3, 4, 8]]), "c": np.array([0, 2])}
    _fd_check(SPACE, theta, lambda t: SPACE.log_prob(t, samples).sum())


@pytest.mark.parametrize("spec,theta,_x", GRAD_CASES, ids=[f"{c[0]['family']}-{i}" for i, c in enumerate(GRAD_CASES)])
def test_entropy_finite_and_gradient_matches_finite_differences(spec, theta, _x):
    space = single("p", spec)
    theta = np.array(theta, dtype=np.float64)
    h = space.entropy(theta)
    assert h.shape == () and torch.isfinite(h)
    _fd_check(space, theta, lambda t: space.entropy(t), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Entropy values
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("low,high", [(-1.0, 2.0), (0.0, 0.5), (2.9, -1.5)])
def test_uniform_entropy_is_log_width(low, high):
    space = single("u", {"family": "uniform", "bounds": [-2.0, 3.0]})
    h = float(space.entropy(np.array([low, high])))
    assert h == pytest.approx(math.log(abs(high - low)), rel=1e-12)


def test_uniform_entropy_at_minimum_width_is_finite():
    space = single("u", {"family": "uniform", "bounds": [0.0, 10.0]})
    h = float(space.entropy(np.array([4.0, 4.0])))
    assert h == pytest.approx(math.log(Uniform.MIN_WIDTH * 10.0), rel=1e-9)


def test_loguniform_entropy_matches_scipy():
    space = single("l", {"family": "loguniform", "bounds": [0.01, 100.0]})
    h = float(space.entropy(np.array([0.5, 20.0])))
    assert h == pytest.approx(float(stats.loguniform(0.5, 20.0).entropy()), rel=1e-6)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_categorical_equal_logits_entropy_is_log_k(k):
    space = single("c", {"family": "categorical", "choices": [f"o{i}" for i in range(k)]})
    for v in (0.0, 1.5, -2.0):
        assert float(space.entropy(np.full(k, v))) == pytest.approx(math.log(k), rel=1e-12)
    # unequal logits have lower entropy
    assert float(space.entropy(np.linspace(-2.0, 2.0, k))) < math.log(k)


@pytest.mark.parametrize("mean,std", [(5.0, 1.0), (0.0, 1.0), (9.0, 3.0), (5.0, 50.0), (2.0, 0.05)])
def test_truncnormal_entropy_and_log_prob_match_scipy(mean, std):
    lo, hi = 0.0, 10.0
    space = single("t", {"family": "truncnormal", "bounds": [lo, hi]})
    theta = np.array([mean, math.log(std)])
    ref = stats.truncnorm((lo - mean) / std, (hi - mean) / std, loc=mean, scale=std)
    assert float(space.entropy(theta)) == pytest.approx(float(ref.entropy()), rel=1e-6, abs=1e-8)
    x = np.linspace(lo, hi, 11)
    lp = space.log_prob(theta, {"t": x}).numpy()
    np.testing.assert_allclose(lp, ref.logpdf(x), rtol=1e-8, atol=1e-8)


def test_truncnormal_wider_has_larger_entropy():
    space = single("t", {"family": "truncnormal", "bounds": [0.0, 10.0]})
    hs = [float(space.entropy(np.array([5.0, math.log(s)]))) for s in (0.1, 0.5, 1.0, 2.0, 5.0)]
    assert all(a < b for a, b in zip(hs, hs[1:])), hs


def test_int_entropy_matches_its_mass():
    space = single("k", {"family": "int", "bounds": [0, 6]})
    theta = np.array([2.3, math.log(1.2)])
    ks = np.arange(0, 7)
    p = np.exp(space.log_prob(theta, {"k": ks}).numpy())
    assert float(space.entropy(theta)) == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-10)
    wide = float(space.entropy(np.array([3.0, math.log(50.0)])))
    assert wide == pytest.approx(math.log(7), rel=1e-3)


def test_sized_parameter_entropy_scales_with_size():
    one = single("k", {"family": "int", "bounds": [1, 8], "mean": 3, "std": 1.5})
    three = single("k", {"family": "int", "bounds": [1, 8], "mean": 3, "std": 1.5, "size": 3})
    theta = one.to_vector()
    assert float(three.entropy(theta)) == pytest.approx(3 * float(one.entropy(theta)), rel=1e-12)


def test_entropy_of_space_is_sum_and_differentiable():
    theta = SPACE.to_vector()
    total = float(SPACE.entropy(theta))
    parts = sum(p.size * float(single(p.name, p.to_dict() | {"size": 1}).entropy(theta[SPACE._slices[p.name]]))
                for p in SPACE.parameters)
    assert total == pytest.approx(parts, rel=1e-12)
    t = torch.tensor(theta, requires_grad=True)
    SPACE.entropy(t).backward()
    assert t.grad is not None and torch.isfinite(t.grad).all() and (t.grad != 0).any()


# --------------------------------------------------------------------------------------------
# Seeds and sampling statistics
# --------------------------------------------------------------------------------------------

def test_same_seed_same_samples_different_seed_different():
    theta = SPACE.to_vector()
    a = SPACE.sample(theta, 50, np.random.default_rng(123))
    b = SPACE.sample(theta, 50, np.random.default_rng(123))
    c = SPACE.sample(theta, 50, np.random.default_rng(124))
    for name in SPACE.names:
        assert np.array_equal(a[name], b[name]), name
        assert a[name].dtype == b[name].dtype
    for name in ("u", "lu", "tn"):
        assert not np.array_equal(a[name], c[name]), name
    assert any(not np.array_equal(a[n], c[n]) for n in ("k", "c"))


def test_sample_zero_and_bad_n():
    out = SPACE.sample(SPACE.to_vector(), 0, np.random.default_rng(0))
    assert all(len(v) == 0 for v in out.values())
    for bad in (-1, 2.5, "3"):
        with pytest.raises(SpaceError) as e:
            SPACE.sample(SPACE.to_vector(), bad, np.random.default_rng(0))
        assert str(e.value) == f"n: expected a non-negative integer, got {bad!r}"


def test_uniform_sample_mean_and_distribution():
    a, b = -1.0, 2.0
    space = single("u", {"family": "uniform", "bounds": [-2.0, 3.0], "range": [a, b]})
    x = space.sample(space.to_vector(), 20_000, np.random.default_rng(7))["u"]
    se = (b - a) / math.sqrt(12 * 20_000)
    assert abs(x.mean() - (a + b) / 2) < 5 * se
    assert x.min() >= a and x.max() <= b
    assert stats.kstest(x, stats.uniform(a, b - a).cdf).pvalue > 1e-3


def test_loguniform_samples_match_distribution():
    space = single("l", {"family": "loguniform", "bounds": [0.01, 100.0], "range": [0.1, 10.0]})
    x = space.sample(space.to_vector(), 20_000, np.random.default_rng(8))["l"]
    assert stats.kstest(x, stats.loguniform(0.1, 10.0).cdf).pvalue > 1e-3
    lp = space.log_prob(space.to_vector(), {"l": x}).numpy()
    np.testing.assert_allclose(lp, stats.loguniform(0.1, 10.0).logpdf(x), rtol=1e-9)


@pytest.mark.parametrize("mean,std", [(3.0, 2.0), (0.0, 1.0), (10.0, 4.0), (5.0, 0.011)])
def test_truncnormal_samples_match_distribution(mean, std):
    space = single("t", {"family": "truncnormal", "bounds": [0.0, 10.0], "mean": mean, "std": std})
    x = space.sample(space.to_vector(), 20_000, np.random.default_rng(9))["t"]
    ref = stats.truncnorm(-mean / std, (10.0 - mean) / std, loc=mean, scale=std)
    assert stats.kstest(x, ref.cdf).pvalue > 1e-3


@pytest.mark.parametrize("logits", [[0.0, 0.0, 0.0], [0.5, -1.0, 2.0, 0.0], [3.0, -3.0]])
def test_categorical_frequencies_match_softmax(logits):
    k = len(logits)
    space = single("c", {"family": "categorical", "choices": [f"o{i}" for i in range(k)], "logits": logits,
                         "logit_bound": 3.0})
    n = 20_000
    x = space.sample(space.to_vector(), n, np.random.default_rng(10))["c"]
    p = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0).numpy()
    freq = np.bincount(x, minlength=k) / n
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * se + 1e-12), (freq, p)
    lp = space.log_prob(np.array(logits), {"c": np.arange(k)}).numpy()
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-12)


def test_categorical_from_probs_gives_those_probs():
    probs = [0.1, 0.6, 0.3]
    space = single("c", {"family": "categorical", "choices": ["a", "b", "c"], "probs": probs})
    lp = space.log_prob(space.to_vector(), {"c": np.arange(3)}).numpy()
    np.testing.assert_allclose(np.exp(lp), probs, rtol=1e-9)


@PROPS
@given(theta=thetas(single("k", {"family": "int", "bounds": [-2, 9]})))
def test_int_mass_sums_to_one(theta):
    space = single("k", {"family": "int", "bounds": [-2, 9]})
    ks = np.arange(-2, 10)
    p = np.exp(space.log_prob(theta, {"k": ks}).numpy())
    assert abs(p.sum() - 1.0) <= 1e-6, p.sum()
    # values outside the support or non-integers have zero mass
    out = space.log_prob(theta, {"k": np.array([-3, 10, 2.5])}).numpy()
    assert np.all(out == -np.inf)


@pytest.mark.parametrize("mean,std", [(3.2, 1.5), (1.0, 0.06), (1.5, 0.2), (8.0, 30.0)])
def test_int_samples_match_mass(mean, std):
    space = single("k", {"family": "int", "bounds": [1, 8], "mean": mean, "std": std})
    n = 20_000
    x = space.sample(space.to_vector(), n, np.random.default_rng(11))["k"]
    p = np.exp(space.log_prob(space.to_vector(), {"k": np.arange(1, 9)}).numpy())
    freq = np.bincount(x - 1, minlength=8) / n
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * se + 1e-4), (freq, p)


def test_log_prob_outside_support_is_minus_inf():
    theta = SPACE.to_vector()
    bad = {"u": np.array([2.5, 0.0]), "lu": np.array([1.0, 50.0]), "tn": np.array([-0.1, 5.0]),
           "k": np.array([[1, 1, 1], [1, 1, 1]]), "c": np.array([0, 0])}
    lp = SPACE.log_prob(theta, bad).numpy()
    assert np.all(lp == -np.inf)
    cat = single("c", {"family": "categorical", "choices": ["a", "b"]})
    assert np.all(cat.log_prob(np.zeros(2), {"c": np.array([-1, 2])}).numpy() == -np.inf)


def test_log_prob_missing_sample_named():
    samples = SPACE.sample(SPACE.to_vector(), 3, np.random.default_rng(0))
    del samples["tn"]
    with pytest.raises(SpaceError) as e:
        SPACE.log_prob(SPACE.to_vector(), samples)
    assert str(e.value) == "tn: expected in samples, missing"


# --------------------------------------------------------------------------------------------
# Invalid spaces and θ
# --------------------------------------------------------------------------------------------

NAME = "zeta_knob"

INVALID = [
    ({"family": "uniform", "bounds": [1.0, 1.0]}, "bounds"),
    ({"family": "uniform", "bounds": [2.0, 1.0]}, "bounds"),
    ({"family": "truncnormal", "bounds": [3.0, -3.0]}, "bounds"),
    ({"family": "uniform", "bounds": [0.0]}, "bounds"),
    ({"family": "uniform"}, "bounds"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "range": [0.5, 1.5]}, "range"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "range": [-0.5, 0.5]}, "range"),
    ({"family": "loguniform", "bounds": [0.0, 1.0]}, "bounds"),
    ({"family": "loguniform", "bounds": [-1.0, 1.0]}, "bounds"),
    ({"family": "loguniform", "bounds": [1.0, 10.0], "range": [0.5, 5.0]}, "range"),
    ({"family": "truncnormal", "bounds": [0.0, 1.0], "std": -0.1}, "std"),
    ({"family": "truncnormal", "bounds": [0.0, 1.0], "std": 0.0}, "std"),
    ({"family": "truncnormal", "bounds": [0.0, 1.0], "std": 1e6}, "std"),
    ({"family": "truncnormal", "bounds": [0.0, 1.0], "std": 1e-9}, "std"),
    ({"family": "truncnormal", "bounds": [0.0, 1.0], "mean": 2.0}, "mean"),
    ({"family": "int", "bounds": [0, 5], "std": 0.0}, "std"),
    ({"family": "int", "bounds": [0, 5], "std": 0.01}, "std"),
    ({"family": "categorical", "choices": ["a", "b"], "probs": [0.5, 0.6]}, "probs"),
    ({"family": "categorical", "choices": ["a", "b"], "probs": [0.2, 0.2]}, "summing to 1"),
    ({"family": "categorical", "choices": ["a", "b"], "probs": [-0.5, 1.5]}, "non-negative"),
    ({"family": "categorical", "choices": ["a", "b"], "probs": [1.0]}, "probs"),
    ({"family": "categorical", "choices": ["a", "b"], "logits": [0.0]}, "logits"),
    ({"family": "categorical", "choices": ["a", "b"], "logits": [0.0, 50.0]}, "logits"),
    ({"family": "categorical", "choices": ["a", "b"], "logits": [0.0, 2.5]}, "logits"),
    ({"family": "categorical", "choices": ["a", "b"], "logit_bound": 0.0}, "logit_bound"),
    ({"family": "categorical", "choices": ["a", "b"], "logit_bound": float("nan")}, "logit_bound"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "logit_bound": 3.0}, "logit_bound"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "learn": "no"}, "learn"),
    ({"family": "categorical", "choices": ["a", "b"], "probs": [0.5, 0.5], "logits": [0.0, 0.0]}, "probs"),
    ({"family": "gaussian", "bounds": [0.0, 1.0]}, "family"),
    ({"bounds": [0.0, 1.0]}, "family"),
    ({"family": "uniform", "bounds": [float("nan"), 1.0]}, "finite"),
    ({"family": "uniform", "bounds": [0.0, float("inf")]}, "finite"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "range": [float("nan"), 0.5]}, "finite"),
    ({"family": "truncnormal", "bounds": [0.0, 1.0], "mean": float("nan")}, "mean"),
    ({"family": "truncnormal", "bounds": [0.0, 1.0], "std": float("inf")}, "std"),
    ({"family": "truncnormal", "bounds": [0.0, 1.0], "std": float("nan")}, "std"),
    ({"family": "categorical", "choices": ["a", "b"], "probs": [float("nan"), 0.5]}, "probs"),
    ({"family": "categorical", "choices": ["a", "b"], "logits": [float("-inf"), 0.0]}, "logits"),
    ({"family": "uniform", "bounds": ["zero", 1.0]}, "number"),
    ({"family": "int", "bounds": [0, 2.5]}, "integers"),
    ({"family": "int", "bounds": [0.5, 3]}, "integers"),
    ({"family": "int", "bounds": [float("nan"), 3]}, "finite"),
    ({"family": "categorical", "choices": ["a", "a"]}, "distinct"),
    ({"family": "categorical", "choices": ["1", 1]}, "distinct"),
    ({"family": "categorical", "choices": []}, "choices"),
    ({"family": "categorical"}, "choices"),
    ({"family": "categorical", "choices": "abc"}, "choices"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "size": 0}, "size"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "size": -2}, "size"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "size": 1.5}, "size"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "size": True}, "size"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "size": "2"}, "size"),
    ({"family": "uniform", "bounds": [0.0, 1.0], "sigma": 1.0}, "unknown key"),
    ({"family": "truncnormal", "bounds": [0.0, 1.0], "men": 0.5}, "men"),
    ([0.0, 1.0], "family"),
]


@pytest.mark.parametrize("spec,fragment", INVALID, ids=[f"{i}-{f}" for i, (_, f) in enumerate(INVALID)])
def test_invalid_space_raises_naming_parameter(spec, fragment):
    with pytest.raises(SpaceError) as exc:
        ParameterSpace.from_dict({"ok": {"family": "uniform", "bounds": [0.0, 1.0]}, NAME: spec})
    msg = str(exc.value)
    assert NAME in msg, msg
    assert fragment in msg, msg


def test_space_error_is_value_error_and_non_mapping_space():
    assert issubclass(SpaceError, ValueError)
    with pytest.raises(SpaceError, match="space"):
        ParameterSpace.from_dict([("a", {})])


def test_duplicate_parameter_names_rejected():
    p = single("dup", {"family": "uniform", "bounds": [0.0, 1.0]}).parameters[0]
    with pytest.raises(SpaceError, match="dup"):
        ParameterSpace([p, p])


def _with(theta, name, value):
    t = np.array(theta, dtype=np.float64)
    t[SPACE.theta_names().index(name)] = value
    return t


BAD_THETAS = [
    (np.zeros(SPACE.dim + 1), "theta"),
    (np.zeros(SPACE.dim - 1), "theta"),
    (np.zeros((1, SPACE.dim)), "theta"),
    (_with(SPACE.to_vector(), "u.low", float("nan")), "u.low"),
    (_with(SPACE.to_vector(), "u.high", 3.5), "u.high"),
    (_with(SPACE.to_vector(), "lu.low", 0.001), "lu.low"),
    (_with(SPACE.to_vector(), "tn.mean", -1.0), "tn.mean"),
    (_with(SPACE.to_vector(), "tn.log_std", 100.0), "tn.log_std"),
    (_with(SPACE.to_vector(), "k.log_std", float("-inf")), "k.log_std"),
    (_with(SPACE.to_vector(), "c.logit[green]", 11.0), "c.logit[green]"),
    (_with(SPACE.to_vector(), "c.logit[blue]", float("nan")), "c.logit[blue]"),
]


@pytest.mark.parametrize("theta,fragment", BAD_THETAS, ids=[f for _, f in BAD_THETAS])
def test_bad_theta_raises_naming_entry(theta, fragment):
    for call in (SPACE.from_vector, SPACE.check_theta, SPACE.named,
                 lambda t: SPACE.sample(t, 2, np.random.default_rng(0)), SPACE.entropy):
        with pytest.raises(SpaceError) as exc:
            call(theta)
        assert fragment in str(exc.value), str(exc.value)


def test_bad_theta_tensor_shape_raises():
    with pytest.raises(SpaceError, match="theta"):
        SPACE.log_prob(torch.zeros(SPACE.dim + 2, dtype=torch.float64), {})


def test_clip_brings_theta_into_bounds():
    lo, hi = SPACE.bounds()
    t = SPACE.clip(np.concatenate([hi[:4] + 5, lo[4:] - 5]))
    assert np.all((t >= lo) & (t <= hi))
    SPACE.from_vector(t)  # valid now


# --------------------------------------------------------------------------------------------
# override
# --------------------------------------------------------------------------------------------

def test_override_merges_partial_settings():
    before = SPACE.to_dict()
    new = SPACE.override({"u": {"range": [0.0, 1.0]}, "tn": {"mean": 7.0}})
    d = new.to_dict()
    assert SPACE.to_dict() == before  # original untouched
    assert d["u"] == {"family": "uniform", "bounds": [-2.0, 3.0], "range": [0.0, 1.0]}
    assert d["tn"]["mean"] == 7.0 and d["tn"]["bounds"] == [0.0, 10.0]
    assert math.exp(d["tn"]["log_std"]) == pytest.approx(2.0)
    for name in ("lu", "k", "c"):
        assert d[name] == before[name]
    assert new.names == SPACE.names and new["k"].size == 3


def test_override_bounds_and_family_change():
    new = SPACE.override({"u": {"bounds": [-5.0, 5.0]}})
    assert new.to_dict()["u"] == {"family": "uniform", "bounds": [-5.0, 5.0], "range": [-1.0, 2.0]}
    fam = SPACE.override({"k": {"family": "truncnormal", "bounds": [0.0, 4.0]}})
    assert isinstance(fam["k"].family, TruncatedNormal) and not isinstance(fam["k"].family, IntCount)
    assert fam["k"].size == 3
    assert fam["k"].family.mean == 2.0  # defaults of the new family, not the old mean
    fam2 = SPACE.override({"u": {"family": "categorical", "choices": ["x", "y"]}})
    assert fam2["u"].family.choices == ("x", "y")


def test_override_probs_replace_logits():
    new = SPACE.override({"c": {"probs": [0.5, 0.25, 0.25]}})
    lp = new.log_prob(new.to_vector(), {"u": [0.0] * 3, "lu": [1.0] * 3, "tn": [3.0] * 3,
                                         "k": [[3, 3, 3]] * 3, "c": [0, 1, 2]})
    base = new.override({"c": {"probs": [1 / 3] * 3}})
    lpb = base.log_prob(base.to_vector(), {"u": [0.0] * 3, "lu": [1.0] * 3, "tn": [3.0] * 3,
                                           "k": [[3, 3, 3]] * 3, "c": [0, 1, 2]})
    np.testing.assert_allclose((lp - lpb).numpy(), np.log(np.array([0.5, 0.25, 0.25]) * 3), rtol=1e-9)


def test_override_rejects_unknown_and_invalid():
    with pytest.raises(SpaceError, match="no_such_param"):
        SPACE.override({"no_such_param": {"range": [0.0, 1.0]}})
    with pytest.raises(SpaceError) as e:
        SPACE.override({"u": [0.0, 1.0]})
    assert str(e.value) == "u: expected a table, got [0.0, 1.0]"
    with pytest.raises(SpaceError, match=r"u\.range"):
        SPACE.override({"u": {"bounds": [5.0, 6.0]}})
    with pytest.raises(SpaceError, match=r"tn\.std"):
        SPACE.override({"tn": {"std": -1.0}})
    with pytest.raises(SpaceError) as e:
        SPACE.override({"tn": {"stdev": 1.0}})
    assert str(e.value) == "tn: unknown key(s) ['stdev']"


# --------------------------------------------------------------------------------------------
# What is learned: fixed parameters and the bounded logit box
# --------------------------------------------------------------------------------------------

FIXED_SPEC = {**SPEC, "c": {**SPEC["c"], "learn": False}, "u": {**SPEC["u"], "learn": False}}


def test_fixed_parameters_are_left_out_of_theta_but_still_sampled():
    space = make_space(FIXED_SPEC)
    assert space.fixed_names == ["u", "c"]
    assert [p.name for p in space.learned] == ["lu", "tn", "k"]
    assert space.dim == SPACE.dim - 2 - 3
    assert not any(n.startswith(("u.", "c.")) for n in space.theta_names())
    theta = space.to_vector()
    draws = space.sample(theta, 20_000, np.random.default_rng(3))
    assert set(draws) == set(SPACE.names)
    assert -1.0 <= draws["u"].min() and draws["u"].max() <= 2.0       # the configured range
    freq = np.bincount(draws["c"], minlength=3) / 20_000
    np.testing.assert_allclose(freq, [0.2, 0.3, 0.5], atol=0.015)     # the configured probs
    # the same draws as the all-learned space gives at the same θ values
    full = SPACE.sample(SPACE.to_vector(), 20_000, np.random.default_rng(3))
    for name in SPACE.names:
        np.testing.assert_array_equal(draws[name], full[name])


def test_fixed_parameters_keep_their_values_through_theta_round_trips():
    space = make_space(FIXED_SPEC)
    lo, hi = space.bounds()
    theta = (lo + hi) / 2
    moved = space.from_vector(theta)
    assert moved["u"].family.to_dict() == space["u"].family.to_dict()
    assert moved["c"].family.to_dict() == space["c"].family.to_dict()
    np.testing.assert_allclose(moved.to_vector(), theta)
    again = ParameterSpace.from_dict(moved.to_dict())
    assert again.fixed_names == ["u", "c"] and again.dim == space.dim
    t = torch.tensor(theta, requires_grad=True)
    draws = space.sample(theta, 64, np.random.default_rng(0))
    space.log_prob(t, draws).sum().backward()
    assert t.grad.shape == (space.dim,) and torch.isfinite(t.grad).all()


def test_override_can_fix_and_unfix_a_parameter():
    fixed = SPACE.override({"c": {"learn": False}})
    assert fixed.fixed_names == ["c"] and fixed.dim == SPACE.dim - 3
    assert fixed.override({"c": {"learn": True}}).dim == SPACE.dim


def test_an_override_key_with_a_star_applies_to_every_parameter_it_matches():
    fixed = SPACE.override({"*u": {"learn": False}})             # "u" and "lu"
    assert fixed.fixed_names == ["u", "lu"]
    assert fixed.to_dict()["tn"] == SPACE.to_dict()["tn"]
    with pytest.raises(SpaceError, match=r"font\.\*: unknown parameter"):
        SPACE.override({"font.*": {"learn": False}})


@given(st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=30))
@PROPS
def test_any_theta_in_the_logit_box_is_a_spread_distribution(unit):
    k = len(unit)
    space = single("c", {"family": "categorical", "choices": [f"o{i}" for i in range(k)]})
    lo, hi = space.bounds()
    theta = lo + (np.asarray(unit) + 1) / 2 * (hi - lo)
    p = np.exp(space.log_prob(theta, {"c": np.arange(k)}).numpy())
    assert p.max() / p.min() <= math.exp(2 * Categorical.LOGIT) * (1 + 1e-9)
    assert p.min() >= 1.0 / (1 + (k - 1) * math.exp(2 * Categorical.LOGIT)) - 1e-12


def test_probs_are_kept_exactly_within_the_bound_and_clipped_beyond_it():
    space = single("c", {"family": "categorical", "choices": ["a", "b", "c"], "probs": [0.1, 0.2, 0.7]})
    p = np.exp(space.log_prob(space.to_vector(), {"c": np.arange(3)}).numpy())
    np.testing.assert_allclose(p, [0.1, 0.2, 0.7], rtol=1e-9)
    wide = single("c", {"family": "categorical", "choices": ["a", "b"], "probs": [0.001, 0.999]})
    p = np.exp(wide.log_prob(wide.to_vector(), {"c": np.arange(2)}).numpy())
    assert p[1] / p[0] == pytest.approx(math.exp(2 * Categorical.LOGIT))
