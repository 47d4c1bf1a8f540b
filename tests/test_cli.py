"""The command line: outputs land where asked, bad input is one line and exit status 2."""

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from loop.front.cli import main
from loop.config import ConfigError, apply_override, config_from_dict, load_config
from loop.engine.render_pool import RenderPool, call_sizes

from smoke import ROOT, SMOKE  # noqa: E402


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


SHIPPED = sorted(p for p in [*(ROOT / "experiments").rglob("*.toml"), *(ROOT / "examples").glob("*/*.toml")]
                 if p.name != "pyproject.toml")


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_every_shipped_config_loads_and_builds_its_generator(path):
    gen = load_config(path).build_generator()
    try:
        assert gen.space.dim > 0 and gen.categories
    finally:
        gen.close()


def test_worker_count_does_not_change_bytes(tmp_path):
    cfg = load_config(SMOKE)
    outs = {}
    for workers in (0, 1, 2):
        with RenderPool(cfg, workers=workers) as pool:
            ds = pool.render(pool.generator.space.to_vector(), 20, seed=9)
        outs[workers] = tmp_path / f"w{workers}"
        ds.write_coco(outs[workers])
    assert _same_tree(outs[0], outs[1]) and _same_tree(outs[1], outs[2])
    # calls sized from the dataset (chunk = 0), with an uneven last call, and actors started in
    # the background (wait=False: the first render waits for them) give the same bytes
    with RenderPool(load_config(SMOKE, ["render.chunk=0"]), workers=2, wait=False) as pool:
        ds = pool.render(pool.generator.space.to_vector(), 20, seed=9)
        pool.ready()   # idempotent once they have started
    ds.write_coco(tmp_path / "auto")
    assert _same_tree(outs[0], tmp_path / "auto")


def test_render_actors_do_not_import_torch():
    """A render actor imports its worker class and builds the generator; torch would add about
    a second to each actor's start, and only the driver and evaluation tasks use it."""
    code = ("import sys; from loop.engine.render_pool import _Worker; from loop.config import load_config; "
            f"load_config({str(SMOKE)!r}).build_generator(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_call_sizes():
    for n, workers in [(1, 2), (20, 2), (400, 2), (1600, 2), (100_000, 2), (4000, 8), (333, 1)]:
        sizes = call_sizes(n, workers)
        assert sum(sizes) == n and min(sizes) > 0, (n, workers, sizes)
        assert max(sizes) <= 256
        assert all(a >= b for a, b in zip(sizes, sizes[1:-1]))  # never growing, but for the merged last call
    assert len(call_sizes(20, 2)) == 4                     # a small dataset still reaches both actors (2 calls each)
    big = call_sizes(100_000, 2)
    assert big[0] == 256 and big[-1] < 32                  # large calls first, small calls last
    assert call_sizes(40, 2, chunk=16) == [16, 16, 8]      # an explicit chunk is taken as given


def test_bench_render_two_workers_compares_the_pool_with_bare_processes():
    from loop.bench.render import bench_render

    res = bench_render(sizes=(32,), n=16, workers=2, modes=("gl",), repeats=1, log=lambda *a: None)
    fig = res["32"]
    for key in ("gl_one_process", "gl_all_cores", "gl_one_worker", "gl_bare_processes"):
        assert fig[key] > 0, key
    assert fig["scaling_bare_processes"] == pytest.approx(fig["gl_bare_processes"] / fig["gl_one_process"], rel=0.02)
    assert fig["pool_vs_bare_processes"] == pytest.approx(fig["gl_all_cores"] / fig["gl_bare_processes"], rel=0.02)
    assert res["machine_scaling"] > 0


def test_render_and_preview_commands(tmp_path, capsys):
    assert main(["render", str(SMOKE), "--n", "6", "--workers", "0", "--seed", "2",
                 "--out", str(tmp_path / "ds"), "--set", "generator.image_size=48"]) == 0
    assert (tmp_path / "ds" / "annotations.json").is_file()
    with Image.open(tmp_path / "ds" / "images" / "000001.png") as im:
        assert im.size == (48, 48)
    assert main(["preview", str(SMOKE), "--out", str(tmp_path / "grid.png"), "--n", "4"]) == 0
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size[0] > 100
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("toml,fragment", [
    ("[generator]\nimage_size = 3\n", "generator.image_size"),
    ("[generator]\nname = 'nope.module:Gen'\n", "generator.name"),
    ("[generator]\ncolour = 1\n", "generator"),
    ("bogus = 1\n", "bogus"),
    ("[render]\nworkers = -1\n", "render.workers"),
    ("[space.'object.scale']\nrange = [0.1, 5.0]\n", "object.scale"),
    ("[space.nonexistent]\nrange = [0, 1]\n", "nonexistent"),
    ("[space.'object_count']\nfamily = 'poisson'\n", "object_count.family"),
    ("[space.'light.intensity']\nbounds = [5.0, 1.0]\n", "light.intensity.bounds"),
    ("not toml at all [[[", "TOML"),
])
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, toml, fragment):
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    assert main(["render", str(bad), "--n", "2", "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err


@pytest.mark.parametrize("argv,fragment", [
    (["render", str(SMOKE), "--n", "zero", "--out", "x"], "--n"),
    (["render", str(SMOKE), "--n", "0", "--out", "x"], "--n"),
    (["render", str(SMOKE), "--n", "3"], "--out"),
    (["render", "missing.toml", "--n", "3", "--out", "x"], "missing.toml"),
    (["preview", str(SMOKE), "--out", "x.png", "--set", "generator.image_size"], "key=value"),
    (["bench", "render", "--sizes", "big"], "--sizes"),
    (["bench", "render", "--modes", "gl,fast"], "--modes"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv, fragment):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err


def test_console_script_exit_status():
    proc = subprocess.run([sys.executable, "-m", "loop.front.cli", "render", str(SMOKE), "--n", "-3", "--out", "x"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--n" in proc.stderr


def test_set_override_parses_values_and_quoted_keys():
    raw = {}
    apply_override(raw, 'space."object.scale".range=[0.7, 0.9]')
    apply_override(raw, "generator.image_size=128")
    apply_override(raw, "generator.name=shapes")
    assert raw == {"space": {"object.scale": {"range": [0.7, 0.9]}},
                   "generator": {"image_size": 128, "name": "shapes"}}
    cfg = config_from_dict(raw)
    assert cfg.build_generator().space["object.scale"].family.low == 0.7
    with pytest.raises(ConfigError, match="dotted key"):
        apply_override({}, 'a..b=1')


def test_bench_render_reports_every_figure():
    from loop.bench.render import bench_render

    res = bench_render(sizes=(32,), n=20, workers=1, modes=("gl", "naive"), repeats=1, log=lambda *a: None)
    fig = res["32"]
    for key in ("gl_one_process", "gl_all_cores", "naive_one_process", "naive_all_cores"):
        assert fig[key] > 0
    assert fig["speedup_vs_naive_one_process"] == pytest.approx(fig["gl_one_process"] / fig["naive_one_process"], rel=0.01)
    # one round: the median of the within-round ratios is that round's ratio
    # (rounded to 2 decimals: a small ratio, as on a busy machine, is within ±0.005 of it)
    assert fig["scaling_all_cores_median_round"] == pytest.approx(fig["gl_all_cores"] / fig["gl_one_process"],
                                                                  rel=0.01, abs=0.006)
