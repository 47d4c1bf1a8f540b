"""The run directory: resolved config, metadata, one JSON line per candidate, an atomic checkpoint
after every round, and ``best.json``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("dropt", "numpy", "torch", "ray", "optuna", "pyrender", "faster-coco-eval"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


class RunDir:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.config = self.root / "config.toml"
        self.metadata = self.root / "metadata.json"
        self.rounds = self.root / "rounds.jsonl"
        self.checkpoint_dir = self.root / "checkpoint"
        self.checkpoint = self.checkpoint_dir / "state.json"
        self.best = self.root / "best.json"
        self.report = self.root / "report"

    def exists(self) -> bool:
        return self.checkpoint.is_file() or self.rounds.is_file()

    def create(self, raw_config: dict[str, Any], seed: int, extra: dict[str, Any]) -> None:
        import tomli_w

        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(exist_ok=True)
        _atomic_write(self.config, tomli_w.dumps(raw_config))
        meta = {"seed": seed, "versions": versions(), "git_commit": _git_commit(), "argv": sys.argv, **extra}
        _atomic_write(self.metadata, json.dumps(meta, indent=1, sort_keys=True))

    def append_round(self, lines: list[dict[str, Any]]) -> None:
        with open(self.rounds, "a") as f:
            for line in lines:
                f.write(json.dumps(line, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_rounds(self) -> list[dict[str, Any]]:
        if not self.rounds.is_file():
            return []
        return [json.loads(line) for line in self.rounds.read_text().splitlines() if line.strip()]

    def truncate_rounds(self, before_round: int) -> None:
        """Drop lines of rounds the checkpoint does not cover (a run killed mid-round)."""
        keep = [r for r in self.read_rounds() if r["round"] < before_round]
        _atomic_write(self.rounds, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.checkpoint, json.dumps(state, sort_keys=True))

    def load_checkpoint(self) -> dict[str, Any] | None:
        return json.loads(self.checkpoint.read_text()) if self.checkpoint.is_file() else None

    def save_best(self, best: dict[str, Any]) -> None:
        _atomic_write(self.best, json.dumps(best, indent=1, sort_keys=True))
