"""make-target (hidden target domains, the camera model) and `dropt eval` from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluator.real import load_coco_real
from generator.sensor import apply_camera_model
from loop.front.cli import main
from loop.config import ConfigError, config_from_dict, load_config
from loop.engine.target import make_target

from smoke import ROOT, SMOKE  # noqa: E402
TARGET = ROOT / "experiments" / "shapes" / "target.toml"


def test_target_config_loads_and_hides_a_different_distribution():
    target, default = load_config(TARGET), load_config(ROOT / "experiments" / "shapes" / "default.toml")
    assert target.target is not None and target.target.camera.jpeg_quality == 70
    t, d = target.build_generator(), default.build_generator()
    assert t.space.theta_names() == d.space.theta_names()
    assert not np.allclose(t.space.to_vector(), d.space.to_vector())


@pytest.mark.parametrize("target,fragment", [
    ({"val": 1}, "target.val"), ({"tests": 3}, "target.tests: unknown key"),
    ({"camera": {"jpeg_quality": 100}}, "target.camera.jpeg_quality"),
    ({"camera": {"color_gain": [1, 1]}}, "target.camera.color_gain"),
    ({"camera": {"iso": 100}}, "target.camera.iso: unknown key"), ({"camera": {"gamma": 0}}, "target.camera.gamma"),
    ("big", "target: expected a table"),
])
def test_bad_target_tables(target, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        config_from_dict({"target": target})


def test_camera_model_is_seeded_and_changes_the_image():
    rng = np.random.default_rng(0)
    im = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cam = {"noise": 0.02, "blur": 0.5, "gamma": 1.1, "color_gain": (1.1, 1.0, 0.9), "jpeg_quality": 60}
    a = apply_camera_model(im, np.random.default_rng(1), **cam)
    b = apply_camera_model(im, np.random.default_rng(1), **cam)
    assert a.dtype == np.uint8 and a.shape == im.shape and np.array_equal(a, b)
    assert not np.array_equal(a, im)
    assert np.array_equal(apply_camera_model(im, np.random.default_rng(1)), im)  # identity by default


def test_make_target_writes_pre_split_real_data(tmp_path):
    cfg = load_config(SMOKE, ["target.val=6", "target.test=8", "target.camera.jpeg_quality=50"])
    summary = make_target(cfg, tmp_path / "t", workers=0, progress=False)
    assert summary["val"]["images"] == 6 and summary["test"]["images"] == 8
    real = load_coco_real(tmp_path / "t")
    assert (len(real.val), len(real.test)) == (6, 8) and real.val.depths is None
    hidden = json.loads((tmp_path / "t" / "target.json").read_text())
    assert hidden["camera"]["jpeg_quality"] == 50 and "object.scale.low" in " ".join(hidden["theta"])
    assert (tmp_path / "t" / "preview.png").is_file()
    again = make_target(cfg, tmp_path / "u", workers=0, progress=False)
    assert again["val"] == summary["val"]
    assert (tmp_path / "t" / "test" / "annotations.json").read_bytes() == (tmp_path / "u" / "test" / "annotations.json").read_bytes()
    assert [p.read_bytes() for p in sorted((tmp_path / "t" / "val" / "images").iterdir())] == \
        [p.read_bytes() for p in sorted((tmp_path / "u" / "val" / "images").iterdir())]


def test_eval_command_prints_val_and_test_scores(tmp_path, capsys):
    assert main(["make-target", str(SMOKE), "--out", str(tmp_path / "real"), "--workers", "0",
                 "--set", "target.val=6", "--set", "target.test=6"]) == 0
    assert main(["render", str(SMOKE), "--n", "12", "--out", str(tmp_path / "syn"), "--workers", "0"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "syn"), "--real", str(tmp_path / "real"), "--steps", "3",
                 "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 3 and 0.0 <= out["val_ap50"] <= 1.0 and 0.0 <= out["test_map"] <= 1.0
    assert main(["eval", str(tmp_path / "syn"), "--real", str(tmp_path / "real"), "--steps", "2",
                 "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("val ") and lines[1].startswith("test") and "AP50" in lines[0]


@pytest.mark.parametrize("argv,fragment", [
    (["eval", "SYN", "--real", "MISSING"], "found neither"),
    (["eval", "MISSING", "--real", "REAL"], "expected a COCO annotations file"),
    (["eval", "SYN", "--real", "REAL", "--steps", "0"], "expected an integer >= 1"),
    (["eval", "SYN", "--real", "REAL", "--device", "tpu"], "device"),
    (["make-target", str(SMOKE), "--out", "X", "--set", "target.camera.jpeg_quality=0"], "jpeg_quality"),
])
def test_bad_eval_and_make_target_input_exits_2(tmp_path, capsys, argv, fragment):
    from generator.dataset import Dataset
    from test_evaluator import box_dataset

    ds = box_dataset(4, size=32)
    Dataset(ds.images, ds.annotations, ["cube", "sphere"]).write_coco(tmp_path / "syn")
    Dataset(ds.images, ds.annotations, ["cube", "sphere"]).write_coco(tmp_path / "real")
    subst = {"SYN": str(tmp_path / "syn"), "REAL": str(tmp_path / "real"), "MISSING": str(tmp_path / "missing"),
             "X": str(tmp_path / "x")}
    code = _exit_code([subst.get(a, a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err, err


def _exit_code(argv: list[str]) -> int:
    """main's return value, or the status of the SystemExit argparse raises."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)
