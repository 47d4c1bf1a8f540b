"""Paths and tiny overrides the tests share (the fixtures built from them are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "shapes" / "smoke.toml"
DIGITS = ROOT / "experiments" / "digits" / "default.toml"


def tiny(real_dir: Path, *extra: str) -> list[str]:
    """Overrides that make the smoke config's loop run in seconds against ``real_dir``."""
    return [f'evaluator.real="{real_dir}"', "evaluator.images=8", "evaluator.steps=3", "evaluator.batch_size=4",
            "evaluator.final_seeds=2", "evaluator.final_steps=2", "evaluator.final_images=8", "evaluator.width=8",
            "evaluator.gap_images=6", "loop.budget=3", "loop.candidates=2", "render.workers=0", *extra]


def one_line_exit(capsys, argv: list[str], want: int) -> str:
    """Run the CLI in this process; assert exit status ``want`` and exactly one error line, the
    last line of stderr, with no traceback; return that line."""
    from loop.front.cli import main

    try:
        code = main(argv)
    except SystemExit as e:        # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if " error: " in line or line.startswith("error")]
    assert code == want, (code, err)
    # the error is one line, the last one (progress lines of the rounds that ran may precede it)
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]
