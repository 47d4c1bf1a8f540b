"""The handwriting digits generator: templates, style frequencies, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from generator.base import render_dataset, render_samples
from generator.digits import BOX
from generator.stroke_templates import TEMPLATES
from generator.strokes import StrokeDigitsGenerator
from loop.front.cli import main
from loop.config import ConfigError, config_from_dict


def params_for(gen: StrokeDigitsGenerator, digit: int, style: str, seed: int = 0, **knobs) -> dict:
    row = {k: v[0] for k, v in gen.scene_draws(gen.space.to_vector(), 1, seed).items()}
    row["digit"] = np.int64(digit)
    row[f"style.{digit}"] = np.int64(list(gen.templates[digit]).index(style))
    row.update({k: np.float64(v) for k, v in knobs.items()})
    return row


@pytest.mark.parametrize("digit", range(10))
def test_every_style_renders_its_digit_inside_the_box(digit):
    gen = StrokeDigitsGenerator()
    for style in TEMPLATES[digit]:
        for seed in range(3):
            p = params_for(gen, digit, style, seed, scale=1.0, **{"translate.x": 0.0, "translate.y": 0.0})
            bitmap = gen.bitmap(p, seed)
            assert bitmap.shape == (BOX, BOX) and bitmap.dtype == bool
            rows, cols = np.flatnonzero(bitmap.any(1)), np.flatnonzero(bitmap.any(0))
            # size-normalised: the ink fills the box along its longer side, and nothing is cut off
            assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 >= BOX - 3, (digit, style, seed)
            sample = gen.render(p, seed)
            assert sample.image.shape == (8, 8) and sample.image.max() <= 16 and sample.image.sum() > 0
            assert sample.annotations[0].category_id == digit + 1


def test_style_probabilities_set_the_rendered_mix():
    """2,000 draws of the 7s' style follow the configured probabilities (χ²), and a different
    setting is told apart."""
    want = [0.2, 0.5, 0.3]
    cfg = config_from_dict({"generator": {"name": "strokes"}, "space": {"style.7": {"probs": want}}})
    gen = cfg.build_generator()
    draws = gen.scene_draws(gen.space.to_vector(), 2000, seed=3)
    rows = [{k: v[i] for k, v in draws.items()} | {"digit": np.int64(7)} for i in range(2000)]
    names = list(TEMPLATES[7])
    counts = np.bincount([names.index(gen.style(r)) for r in rows], minlength=3)
    assert stats.chisquare(counts, np.array(want) * 2000).pvalue > 1e-3
    assert stats.chisquare(counts, np.array([0.5, 0.2, 0.3]) * 2000).pvalue < 1e-6


def test_the_source_weight_sets_the_font_share_and_fonts_render_as_the_font_generator():
    from generator.digits import DigitsGenerator

    cfg = config_from_dict({"generator": {"name": "strokes", "fonts": True}, "space": {"source": {"probs": [0.3, 0.7]}}})
    gen = cfg.build_generator()
    draws = gen.scene_draws(gen.space.to_vector(), 2000, seed=1)
    share = float(np.mean([gen.source({"source": s}) == "font" for s in draws["source"]]))
    assert abs(share - 0.7) < 0.04
    i = int(np.flatnonzero(draws["source"] == 1)[0])
    row = {k: v[i] for k, v in draws.items()}
    fonts = DigitsGenerator()
    font_row = {"digit": row["digit"], **{("font" if k == "font.face" else k[5:]): v for k, v in row.items()
                                          if k.startswith("font.")}}
    assert np.array_equal(gen.bitmap(row, 5), fonts.bitmap(font_row, 5))


def test_same_seed_same_bytes_however_the_images_are_split():
    gen = StrokeDigitsGenerator(fonts=True)
    theta = gen.space.to_vector()
    a, b = render_dataset(gen, theta, 40, 11), render_dataset(gen, theta, 40, 11)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    draws = gen.scene_draws(theta, 40, 11)
    halves = render_samples(gen, {k: v[:17] for k, v in draws.items()}, 11, 0) + \
        render_samples(gen, {k: v[17:] for k, v in draws.items()}, 11, 17)
    assert all(np.array_equal(s.image, x) for s, x in zip(halves, a.images))
    c = render_dataset(gen, theta, 40, 12)
    assert not all(np.array_equal(x, y) for x, y in zip(a.images, c.images))


def test_knobs_change_the_ink_as_they_should():
    gen = StrokeDigitsGenerator()
    thin = gen.bitmap(params_for(gen, 8, "stacked", **{"pen.width": 2.0}), 0).sum()
    bold = gen.bitmap(params_for(gen, 8, "stacked", **{"pen.width": 8.0}), 0).sum()
    assert bold > 1.5 * thin
    plain = gen.bitmap(params_for(gen, 7, "plain", jitter=0.0), 0)
    crossed = gen.bitmap(params_for(gen, 7, "crossed", jitter=0.0), 0)
    assert crossed.sum() > plain.sum()


@pytest.mark.parametrize("templates,fragment", [
    ({d: {"a": [[(0.5, 0.0), (0.5, 1.0)]]} for d in range(9)}, "templates[9]: expected at least one style"),
    ({**TEMPLATES, 3: {"bad": [[(0.5, 0.5)]]}}, "templates[3]['bad'][0]: expected a stroke of at least 2 points"),
    ({**TEMPLATES, 4: {"far": [[(0.5, 0.0), (3.0, 1.0)]]}}, "templates[4]['far'][0]: expected points in the unit box"),
])
def test_a_bad_template_is_one_line_naming_it(templates, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        StrokeDigitsGenerator(templates=templates)


@pytest.mark.parametrize("toml,fragment", [
    ('[generator]\nname = "strokes"\nfonts = "yes"\n', "generator.fonts: expected true or false"),
    ('[generator]\nname = "strokes"\n[space."pen.width"]\nrange = [20.0, 30.0]\n', "pen.width"),
    ('[generator]\nname = "strokes"\n[space."style.7"]\nprobs = [0.5, 0.5]\n', "style.7.probs: expected 3 numbers"),
    ('[generator]\nname = "strokes"\n[space."font.face"]\nlearn = false\n', "font.face"),
])
def test_a_bad_knob_is_one_line_and_exit_2(tmp_path, capsys, toml, fragment):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    assert main(["preview", str(cfg), "--out", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="generator"):
        config_from_dict({"generator": {"name": "strokes", "pen": 3}}).build_generator()


def test_without_variants_each_digit_keeps_its_first_style_only():
    gen = StrokeDigitsGenerator(variants=False)
    assert gen.styles() == [(d, next(iter(TEMPLATES[d]))) for d in range(10)]
    assert all(len(gen.space[f"style.{d}"].family.choices) == 1 for d in range(10))


def test_preview_styles_draws_a_row_per_style(tmp_path, capsys):
    from PIL import Image

    cfg = tmp_path / "s.toml"
    cfg.write_text('[generator]\nname = "strokes"\nfonts = true\n')
    assert main(["preview", str(cfg), "--styles", "--out", str(tmp_path / "styles.png")]) == 0
    with Image.open(tmp_path / "styles.png") as im:
        assert im.size[1] > 20 * len(StrokeDigitsGenerator().styles())
