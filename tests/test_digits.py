"""The digits generator: UCI-like 8×8 images, right labels, normalised, deterministic, robust."""

import itertools

import numpy as np
import pytest
from sklearn.datasets import load_digits

from generator.base import image_seeds, render_dataset
from loop.registry import lookup
from generator.digits import DigitsGenerator
from generator.fonts import digit_fonts, draw_digit, font_stems
from generator.space import ParameterSpace

CONTINUOUS = ("stroke_width", "rotation", "shear", "scale", "aspect", "translate.x", "translate.y",
              "elastic.alpha", "elastic.sigma", "threshold")


@pytest.fixture(scope="module")
def gen():
    return DigitsGenerator()


@pytest.fixture(scope="module")
def default_set(gen):
    """600 renders at the default θ, their digits, and the images as float vectors."""
    rows = gen.scene_params(gen.space.to_vector(), 600, seed=7)
    samples = [gen.render(r, s) for r, s in zip(rows, image_seeds(7, 600))]
    digits = np.array([int(r["digit"]) for r in rows])
    return samples, digits, np.stack([s.image.reshape(-1) for s in samples]).astype(float)


def plain(digit, font, **over):
    """A parameter row with no jitter at all."""
    p = {"digit": np.int64(digit), "font": np.int64(font), "stroke_width": 0.0, "rotation": 0.0,
         "shear": 0.0, "scale": 1.0, "aspect": 1.0, "translate.x": 0.0, "translate.y": 0.0,
         "elastic.alpha": 0.0, "elastic.sigma": 4.0, "threshold": 0.5}
    return {k: np.asarray(v) for k, v in (p | over).items()}


def check_image(sample):
    im = sample.image
    assert isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.shape == (8, 8)
    assert im.max() <= 16


# --------------------------------------------------------------------------------------------
# Fonts
# --------------------------------------------------------------------------------------------

def test_fonts_draw_ten_distinct_digits():
    paths = digit_fonts()
    assert len(paths) >= 10
    assert [p.name for p in paths] == sorted(p.name for p in paths)
    stems = font_stems()
    assert "DejaVuSans" in stems and "cmr10" in stems
    # a placeholder face (ten identical glyphs) and TeX symbol faces that map '0'..'9' to symbols
    assert not {"LastResortHE-Regular", "cmsy10", "cmex10", "DejaVuSansDisplay"} & set(stems)
    for p in paths:
        glyphs = [draw_digit(p, d, 40, 64) for d in range(10)]
        assert all((g > 127).sum() > 20 for g in glyphs), p.name
        assert len({g.tobytes() for g in glyphs}) == 10, p.name


# --------------------------------------------------------------------------------------------
# Images and labels
# --------------------------------------------------------------------------------------------

def test_images_are_uci_shaped_and_labelled(gen, default_set):
    samples, digits, _ = default_set
    assert gen.categories == tuple("0123456789")
    for s, d in zip(samples, digits):
        check_image(s)
        assert s.depth is None and len(s.annotations) == 1
        a = s.annotations[0]
        assert a.category_id == d + 1 and a.bbox == (0.0, 0.0, 8.0, 8.0) and a.area == 64.0
    assert set(digits) == set(range(10))


def test_renders_look_like_their_digit(default_set):
    """Nearest centroid: fit on one half of the default renders, classify the other half, and
    classify the real UCI digits with the synthetic centroids (measured: 0.76 and 0.49;
    chance is 0.10)."""
    _, digits, x = default_set
    fit, held = slice(0, 300), slice(300, 600)
    cent = np.stack([x[fit][digits[fit] == d].mean(0) for d in range(10)])

    def accuracy(images, labels):
        pred = np.argmin(((images[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)
        return (pred == labels).mean()

    assert accuracy(x[held], digits[held]) > 0.7
    real = load_digits()
    assert accuracy(real.data, real.target) > 0.4


def test_mean_ink_is_near_the_real_digits(default_set):
    """Measured: the default θ gives a mean pixel of 4.02 (of 16), the real UCI digits 4.88:
    font strokes are a little thinner than pen strokes; the default is not tuned to the data."""
    _, _, x = default_set
    ratio = x.mean() / load_digits().data.mean()
    assert 0.6 < ratio < 1.5


def margins(bitmap):
    rows, cols = np.flatnonzero(bitmap.any(1)), np.flatnonzero(bitmap.any(0))
    n = len(bitmap) - 1
    return rows[0], n - rows[-1], cols[0], n - cols[-1]


def test_normalize_fills_the_box():
    """With no jitter, the 32×32 bitmap's ink touches both edges along its longer axis and is
    centred along the other (within a pixel; thin serifs lost in resampling can shift one face's
    '1' by a few); the naive render (font size = box size) leaves margins."""
    g, naive = DigitsGenerator(), DigitsGenerator(normalize=False)
    off_centre, naive_margin = 0, []
    for font, digit in itertools.product(range(len(g.fonts)), range(10)):
        top, bottom, left, right = margins(g.bitmap(plain(digit, font), seed=0))
        assert top + bottom == 0 or left + right == 0, (g.fonts[font], digit)
        assert abs(top - bottom) <= 4 and abs(left - right) <= 4, (g.fonts[font], digit)
        off_centre += abs(top - bottom) > 1 or abs(left - right) > 1
        top, bottom, left, right = margins(naive.bitmap(plain(digit, font), seed=0))
        naive_margin.append(min(top + bottom, left + right))
    assert off_centre <= 3
    assert np.mean(naive_margin) > 4
    # the 8×8 image of a bitmap is its 4×4 block counts
    p = plain(8, 0, rotation=10.0)
    bits = g.bitmap(p, seed=0).astype(int)
    assert np.array_equal(g.render(p, seed=0).image, bits.reshape(8, 4, 8, 4).sum(axis=(1, 3)))


# --------------------------------------------------------------------------------------------
# Determinism and robustness
# --------------------------------------------------------------------------------------------

def test_same_seed_same_bytes_and_seeds_matter(gen):
    elastic = plain(3, 0, **{"elastic.alpha": 1.5})
    a, b = gen.render(elastic, seed=5), gen.render(elastic, seed=5)
    assert a.image.tobytes() == b.image.tobytes()
    assert any(gen.render(elastic, seed=s).image.tobytes() != a.image.tobytes() for s in range(6, 10))
    theta = gen.space.to_vector()
    x, y = render_dataset(gen, theta, 30, seed=1), render_dataset(gen, theta, 30, seed=1)
    z = render_dataset(gen, theta, 30, seed=2)
    assert all(np.array_equal(i, j) for i, j in zip(x.images, y.images))
    assert not all(np.array_equal(i, j) for i, j in zip(x.images, z.images))


def test_every_corner_of_the_bounds_gives_a_valid_image(gen):
    bounds = {n: gen.space[n].family.support() for n in CONTINUOUS}
    n_fonts, n_empty = len(gen.fonts), 0
    for k, corner in enumerate(itertools.product(*bounds.values())):
        p = plain(k % 10, k % n_fonts, **dict(zip(CONTINUOUS, corner)))
        s = gen.render(p, seed=k)
        check_image(s)
        n_empty += not s.image.any()
    assert n_empty < 2 ** len(CONTINUOUS)   # extremes may erase the digit, not every one
    lo, hi = gen.space.bounds()
    for theta in (lo, hi, (lo + hi) / 2):
        for s in render_dataset(gen, theta, 10, seed=3).images:
            assert s.shape == (8, 8) and s.max() <= 16


def test_theta_round_trip(gen):
    space = gen.space
    assert {p.name for p in space.parameters} == {"digit", "font", *CONTINUOUS}
    theta = space.to_vector()
    lo, hi = space.bounds()
    assert np.all(lo <= theta) and np.all(theta <= hi)
    rng = np.random.default_rng(0)
    other = lo + (hi - lo) * rng.random(space.dim)
    assert np.array_equal(space.from_vector(other).to_vector(), other)
    assert np.array_equal(space.from_named(space.named(other)), other)
    again = ParameterSpace.from_dict(space.from_vector(other).to_dict())
    assert np.allclose(again.to_vector(), other)
    draws = space.sample(other, 50, rng)
    assert np.isfinite(space.log_prob(other, draws).numpy()).all()


def test_fonts_option_restricts_the_space():
    g = DigitsGenerator(fonts=["DejaVuSans", "cmr10"], normalize=False)
    assert g.space["font"].family.choices == ("DejaVuSans", "cmr10")
    assert g.config()["fonts"] == ["DejaVuSans", "cmr10"] and g.config()["normalize"] is False
    check_image(g.render(plain(8, 1), seed=0))
    assert lookup("generator", "digits") is DigitsGenerator


@pytest.mark.parametrize("options, message", [
    ({"normalize": "yes"}, "generator.normalize: expected true or false, got 'yes'"),
    ({"normalize": 1}, "generator.normalize: expected true or false, got 1"),
    ({"fonts": []}, "generator.fonts: expected a non-empty list of distinct font names, got []"),
    ({"fonts": "DejaVuSans"}, "generator.fonts: expected a non-empty list"),
    ({"fonts": ["cmr10", "cmr10"]}, "generator.fonts: expected a non-empty list"),
    ({"fonts": ["cmr10", 3]}, "generator.fonts: expected a non-empty list"),
    ({"fonts": ["Comic Sans"]}, "got 'Comic Sans'"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError, match="^generator\\.") as e:
        DigitsGenerator(**options)
    assert message in str(e.value)
