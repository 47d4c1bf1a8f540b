"""The config schema: one-line errors naming the key, parametrised over (override, whole message),
and the reference page in docs/ generated from the models."""

from __future__ import annotations

import pytest

from loop.config import ConfigError, load_config
from loop.reference import reference_markdown
from smoke import ROOT, SMOKE

CASES = [
    ("render.num_cpus=nan", "render.num_cpus: expected a finite number >= 0, got nan"),
    ("render.workers=true", "render.workers: expected an integer >= 0, got True"),
    ("render.speed=2", "render.speed: unknown key; expected one of ['chunk', 'label_selector', 'num_cpus', 'num_gpus', 'resources', 'strategy', 'workers']"),
    ("evaluator.images=0", "evaluator.images: expected an integer >= 1, got 0"),
    ('evaluator.images="3"', "evaluator.images: expected an integer >= 1, got '3'"),
    ('evaluator.score="f1"', "evaluator.score: expected one of ['ap50', 'map'], got 'f1'"),
    ('evaluator.ray="yes"', "evaluator.ray: expected true or false, got 'yes'"),
    ("evaluator.options=3", "evaluator.options: expected a table of keyword options, got 3"),
    ("loop.budget=2.5", "loop.budget: expected an integer >= 1, got 2.5"),
    ("seed=-1", "seed: expected an integer >= 0, got -1"),
    ("bogus=1", "bogus: unknown key; expected one of ['evaluator', 'generator', 'loop', 'ray', 'render', 'seed', 'space', "
                "'target']"),
    ("target.camera.color_gain=[1.0, nan, 1.0]",
     "target.camera.color_gain: expected three finite numbers >= 0 (R, G, B), got [1.0, nan, 1.0]"),
    ("target.camera.jpeg_quality=100", "target.camera.jpeg_quality: expected an integer in [1, 95], got 100"),
    ("space=3", "space: expected a table of parameters, got 3"),
    ("generator.name=3", "generator.name: expected a string, got 3"),
]


@pytest.mark.parametrize("override, message", CASES, ids=[c[0] for c in CASES])
def test_a_bad_value_is_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(SMOKE, [override])
    assert str(e.value) == message


def test_defaults_come_from_the_models():
    cfg = load_config(SMOKE)
    assert (cfg.evaluator.threads, cfg.evaluator.gap_images, cfg.loop.keep_start, cfg.render.num_gpus) == (1, 200, True, 0.0)
    assert cfg.generator_options == {"image_size": 32, "max_objects": 2, "max_distractors": 1,
                                     "min_visible_pixels": 4, "depth": False}


def test_the_reference_page_is_generated_from_the_models():
    page = (ROOT / "docs" / "reference" / "config.md").read_text()
    assert page == reference_markdown(), "run: dropt config schema > docs/reference/config.md"
    assert "| `evaluator.images` | an integer >= 1 | `400` | synthetic images per candidate |" in page
