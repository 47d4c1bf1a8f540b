"""The command contract: a renderer outside dropt (examples/command/boxes.py, and broken ones
written here) as a generator: draws as JSON in, a checked COCO set out; a command that fails is
one line naming it, and that candidate fails while the run goes on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from generator.base import RenderFailed, render_dataset
from generator.command import CommandGenerator, draws_document
from loop.config import load_config
from loop.engine.target import make_target
from loop.run.runner import run_loop

from smoke import ROOT, one_line_exit

CONFIG = ROOT / "experiments" / "command" / "default.toml"
TARGET = ROOT / "experiments" / "command" / "target.toml"
BOXES = str(ROOT / "examples" / "command" / "boxes.py")
SPACE = load_config(CONFIG).raw["space"]


def generator(*argv: str, timeout_s: float = 60.0, space=SPACE) -> CommandGenerator:
    return CommandGenerator(argv=list(argv), categories=["box", "disc"], space=space, timeout_s=timeout_s)


def boxes(*extra: str) -> CommandGenerator:
    return generator(sys.executable, BOXES, "{draws}", "{out}", *extra)


def script(tmp_path: Path, body: str) -> list[str]:
    """A broken renderer: ``body`` runs with ``draws`` and ``out`` bound (paths)."""
    path = tmp_path / "renderer.py"
    path.write_text("import json, os, sys, time\nfrom pathlib import Path\n"
                    "draws, out = Path(sys.argv[1]), Path(sys.argv[2])\n" + body)
    return [sys.executable, str(path), "{draws}", "{out}"]


# --------------------------------------------------------------------------------------------
# the contract when the command keeps it
# --------------------------------------------------------------------------------------------

def test_the_draws_name_every_value_and_categoricals_by_their_choice():
    gen = boxes()
    draws = gen.scene_draws(gen.space.to_vector(), 3, seed=5)
    doc = draws_document(gen.space, [{k: v[i] for k, v in draws.items()} for i in range(3)], [11, 12, 13],
                         gen.categories)
    assert [im["id"] for im in doc["images"]] == [1, 2, 3] and [im["seed"] for im in doc["images"]] == [11, 12, 13]
    assert doc["categories"] == ["box", "disc"]
    for k, im in enumerate(doc["images"]):
        assert set(im["params"]) == set(gen.space.names)
        assert im["params"]["object.shape"] == ["box", "disc"][int(draws["object.shape"][k])]
        assert im["params"]["object.size"] == pytest.approx(float(draws["object.size"][k]))


def test_a_per_object_parameter_comes_as_a_list():
    space = {**SPACE, "object.size": {**SPACE["object.size"], "size": 3}}
    gen = generator(sys.executable, BOXES, "{draws}", "{out}", space=space)
    draws = gen.scene_draws(gen.space.to_vector(), 1, seed=0)
    doc = draws_document(gen.space, [{k: v[0] for k, v in draws.items()}], [1], gen.categories)
    assert doc["images"][0]["params"]["object.size"] == pytest.approx(list(draws["object.size"][0]))


def test_the_example_renderer_gives_the_same_bytes_in_one_call_or_many():
    gen = boxes()
    theta = gen.space.to_vector()
    whole = render_dataset(gen, theta, 6, seed=3)
    draws = gen.scene_draws(theta, 6, seed=3)
    from generator.base import render_samples

    parts = render_samples(gen, {k: v[:4] for k, v in draws.items()}, 3) + \
        render_samples(gen, {k: v[4:] for k, v in draws.items()}, 3, start=4)
    assert len(whole) == 6 and all(np.array_equal(a, p.image) for a, p in zip(whole.images, parts))
    assert [[o.bbox for o in objs] for objs in whole.annotations] == [[o.bbox for o in p.annotations] for p in parts]
    shapes = [o.category_id for objs in whole.annotations for o in objs]
    assert set(shapes) <= {1, 2} and len(shapes) == 6       # one box or disc per image, named by category


def test_a_run_on_the_example_renderer_learns_the_same_in_process_and_on_ray(tmp_path):
    real = tmp_path / "real"
    make_target(load_config(TARGET, ["target.val=6", "target.test=6"]), real, workers=0, progress=False)
    tiny = [f'evaluator.real="{real}"', "evaluator.images=12", "evaluator.steps=3", "evaluator.final_steps=2",
            "evaluator.final_images=12", "evaluator.width=8", "loop.budget=2"]
    here = run_loop(load_config(CONFIG, tiny), tmp_path / "here", log=lambda m: None)
    ray = run_loop(load_config(CONFIG, [*tiny, "render.workers=1"]), tmp_path / "ray", log=lambda m: None)
    scores = [[json.loads(x)["score"] for x in (tmp_path / d / "rounds.jsonl").read_text().splitlines()]
              for d in ("here", "ray")]
    assert scores[0] == scores[1] and all(np.isfinite(scores[0]))
    assert here["test"] == ray["test"]


# --------------------------------------------------------------------------------------------
# a command that breaks the contract: one line naming it
# --------------------------------------------------------------------------------------------

WRITES_ONE = ("(out / 'images').mkdir()\n"
              "from PIL import Image\n"
              "Image.new('RGB', (32, 32)).save(out / 'images' / 'a.png')\n")
BROKEN = [
    ("exits non-zero", "sys.stderr.write('scene.blend: no such file\\n'); sys.exit(3)",
     "generator.argv python renderer.py: exited with status 3 (stderr: …scene.blend: no such file)"),
    ("runs past the time limit", "print('rendering', file=sys.stderr, flush=True); time.sleep(60)",
     "generator.argv python renderer.py: expected it to finish within generator.timeout_s = 2 s, killed it "
     "(stderr: …rendering)"),
    ("writes nothing", "pass",
     "generator.argv python renderer.py: expected a COCO set in its output folder, got: {out}/annotations.json: "
     "expected a COCO annotations file, not found"),
    ("writes bad JSON", "(out / 'annotations.json').write_text('{')",
     "generator.argv python renderer.py: expected a COCO set in its output folder, got: {out}/annotations.json: "
     "expected JSON, got a parse error: "),
    ("writes one image for two draws", WRITES_ONE + "(out / 'annotations.json').write_text(json.dumps({'images': "
     "[{'id': 1, 'file_name': 'images/a.png', 'width': 32, 'height': 32}], 'annotations': [], 'categories': "
     "[{'id': 1, 'name': 'box'}, {'id': 2, 'name': 'disc'}]}))",
     "generator.argv python renderer.py: expected 2 images (one per draw), got 1"),
    ("writes other categories", WRITES_ONE + "(out / 'images' / 'b.png').write_bytes((out / 'images' / "
     "'a.png').read_bytes())\n(out / 'annotations.json').write_text(json.dumps({'images': [{'id': 1, 'file_name': "
     "'images/a.png', 'width': 32, 'height': 32}, {'id': 2, 'file_name': 'images/b.png', 'width': 32, 'height': 32}], "
     "'annotations': [], 'categories': [{'id': 1, 'name': 'cat'}]}))",
     "generator.argv python renderer.py: expected the categories ['box', 'disc'], got ['cat']"),
]


@pytest.mark.parametrize("case,body,message", BROKEN, ids=[c[0] for c in BROKEN])
def test_a_broken_command_is_one_line_naming_it(tmp_path, case, body, message):
    gen = generator(*script(tmp_path, body), timeout_s=2)
    draws = gen.scene_draws(gen.space.to_vector(), 2, seed=0)
    with pytest.raises(RenderFailed) as e:
        from generator.base import render_draws

        render_draws(gen, draws, 0)
    line = str(e.value)
    assert "\n" not in line
    head, _, rest = message.partition("{out}")
    assert line.startswith(head.replace("python", Path(sys.executable).name)), line
    assert line.endswith(rest) if not rest.endswith(": ") else rest in line, line


def test_a_command_that_cannot_start_is_one_line(tmp_path):
    gen = generator(str(tmp_path / "no-such-renderer"), "{draws}", "{out}")
    with pytest.raises(RenderFailed) as e:
        render_dataset(gen, gen.space.to_vector(), 1, 0)
    assert str(e.value) == "generator.argv no-such-renderer: could not start (No such file or directory)"


@pytest.mark.parametrize("options,message", [
    ({"argv": ["render", "{draws}"]}, "generator.argv: expected a list of strings naming the command and '{out}'"),
    ({"argv": []}, "generator.argv: expected a list of strings"),
    ({"categories": []}, "generator.categories: expected a list of distinct category names, got []"),
    ({"categories": ["a", "a"]}, "generator.categories: expected a list of distinct category names"),
    ({"timeout_s": 0}, "generator.timeout_s: expected seconds in (0, 86400], got 0"),
])
def test_bad_command_options_stop_in_one_line(tmp_path, capsys, options, message):
    gen = {"name": "command", "argv": ["x", "{draws}", "{out}"], "categories": ["box", "disc"], **options}
    lines = ["[generator]"] + [f"{k} = {json.dumps(v)}" for k, v in gen.items()]
    lines += [f'[space."{name}"]\n' + "\n".join(f"{k} = {json.dumps(v)}" for k, v in p.items()) for name, p in SPACE.items()]
    cfg = tmp_path / "c.toml"
    cfg.write_text("\n".join(lines) + "\n")
    line = one_line_exit(capsys, ["render", str(cfg), "--n", "1", "--out", str(tmp_path / "o"), "--workers", "0"], 2)
    assert message in line
    assert not (tmp_path / "o").exists()


def test_render_with_a_failing_command_is_one_line_and_writes_nothing(tmp_path, capsys):
    argv = script(tmp_path, "sys.exit(4)")
    line = one_line_exit(capsys, ["render", str(CONFIG), "--n", "2", "--out", str(tmp_path / "o"), "--workers", "0",
                                  "--set", f"generator.argv={json.dumps(argv)}"], 1)
    assert line == f"dropt render: error: generator.argv {Path(sys.executable).name} renderer.py: exited with status 4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renderer.py"]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_candidate_whose_command_fails_is_recorded_and_the_run_goes_on(tmp_path, workers):
    """The wrapper fails on its second call: round 1's second candidate fails, the rest run (in
    this process, and on a render actor)."""
    real = tmp_path / "real"
    make_target(load_config(TARGET, ["target.val=6", "target.test=6"]), real, workers=0, progress=False)
    counter = tmp_path / "calls"
    argv = script(tmp_path, f"c = Path({str(counter)!r}); n = int(c.read_text()) + 1 if c.exists() else 1\n"
                            "c.write_text(str(n))\n"
                            "if n == 2: sys.stderr.write('lost the GPU\\n'); sys.exit(9)\n"
                            f"os.execv(sys.executable, [sys.executable, {BOXES!r}, str(draws), str(out)])\n")
    cfg = load_config(CONFIG, [f'evaluator.real="{real}"', "evaluator.images=12", "evaluator.steps=3",
                               "evaluator.final_steps=2", "evaluator.final_images=12", "evaluator.width=8",
                               "loop.budget=2", f"generator.argv={json.dumps(argv)}", f"render.workers={workers}"])
    best = run_loop(cfg, tmp_path / "run", log=lambda m: None)
    rows = [json.loads(x) for x in (tmp_path / "run" / "rounds.jsonl").read_text().splitlines()]
    assert [r.get("failed") is not None for r in rows] == [False, True, False, False]
    assert rows[1]["failed"] == (f"render: generator.argv {Path(sys.executable).name} renderer.py: exited with "
                                 f"status 9 (stderr: …lost the GPU)")
    assert np.isfinite(best["test"])
