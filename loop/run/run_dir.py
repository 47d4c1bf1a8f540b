"""The run directory: resolved config, metadata, one JSON line per candidate, an atomic checkpoint
after every round (the previous one kept as a fallback), and ``best.json``.

A run directory is locked (``.lock``, an exclusive ``flock`` held for the process's life) before
anything else happens, so two runs can never write one folder. Every file is replaced atomically
(written beside, fsynced, renamed): a kill or a full disk leaves the previous version whole.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..errors import RunFailure

LOCK_NAME = ".lock"


class RunDirError(ConfigError):
    """A run directory that cannot be used as asked (locked, not a run, damaged): exit status 2."""


class RunDirWriteError(RunFailure):
    """A file of the run could not be written (a full disk): exit status 1, the previous version kept."""


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once; on failure (a full disk) the old file stays."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RunDirWriteError(f"{path}: could not write it ({e.strerror or e}); the previous version is kept") from None


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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


def json_clean(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    return value


def read_json(path: Path, what: str) -> Any:
    """A JSON file the user may have damaged: one line naming it, never a traceback."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path}: expected {what} (JSON), got an unreadable file ({e})") from None


class RunDir:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.config = self.root / "config.toml"
        self.metadata = self.root / "metadata.json"
        self.rounds = self.root / "rounds.jsonl"
        self.checkpoint_dir = self.root / "checkpoint"
        self.checkpoint = self.checkpoint_dir / "state.json"
        self.previous = self.checkpoint_dir / "state.prev.json"
        self.best = self.root / "best.json"
        self.report = self.root / "report"
        self._lock_file = None

    def exists(self) -> bool:
        """The folder holds a dropt run (finished, killed, or killed before its first checkpoint)."""
        return self.checkpoint.is_file() or self.previous.is_file() or self.rounds.is_file() or self._our_metadata()

    def _our_metadata(self) -> bool:
        try:
            meta = json.loads(self.metadata.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
        return isinstance(meta, dict) and {"seed", "versions", "config_sha256"} <= set(meta)

    # --- the lock ------------------------------------------------------------------------------
    def lock(self, *, new: bool) -> None:
        """Take the folder's lock (making the folder for a new run). A new run needs an empty
        folder, or one holding only a stale lock file."""
        if self.root.exists() and not self.root.is_dir():
            raise RunDirError(f"--out: expected a directory, {self.root} is a file")
        try:
            if new:
                self.root.mkdir(parents=True, exist_ok=True)
            elif not self.root.is_dir():
                raise RunDirError(f"--resume: expected a run directory, {self.root} not found")
            made_lock = not (self.root / LOCK_NAME).exists()
            self._lock_file = open(self.root / LOCK_NAME, "a")
        except OSError as e:
            raise RunDirError(f"--out: expected a directory dropt can write, {self.root}: "
                              f"{e.strerror or e}") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self.unlock()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise RunDirError(f"--out: {self.root} is in use by another dropt run (its {LOCK_NAME} is "
                                  f"locked); expected a folder no other run writes") from None
            raise
        try:
            self._check_usable(new)
        except RunDirError:
            if made_lock:           # a refusal leaves the user's folder as it was
                (self.root / LOCK_NAME).unlink(missing_ok=True)
            self.unlock()
            raise

    def _check_usable(self, new: bool) -> None:
        """A new run needs an empty folder; a resumed one a real ``checkpoint/`` folder if any."""
        if self.checkpoint_dir.exists() and not self.checkpoint_dir.is_dir():
            raise RunDirError(f"{self.checkpoint_dir}: expected the run's checkpoint folder, got a file")
        if not new:
            return
        others = sorted(p.name for p in self.root.iterdir() if p.name != LOCK_NAME)
        if self.exists():
            raise RunDirError(f"--out: expected a new run directory, {self.root} already holds a run "
                              f"(use --resume {self.root} to continue it)")
        if others:
            listed = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
            raise RunDirError(f"--out: expected an empty or new directory, {self.root} holds {listed} "
                              f"and is not a dropt run")

    def in_use(self) -> bool:
        """Whether a live dropt process holds this folder's lock (without taking it)."""
        try:
            with open(self.root / LOCK_NAME, "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    return e.errno in (errno.EAGAIN, errno.EACCES)
                fcntl.flock(f, fcntl.LOCK_UN)
                return False
        except FileNotFoundError:
            return False

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()      # closing releases the flock
            self._lock_file = None

    # --- config and metadata ---------------------------------------------------------------------
    def create(self, raw_config: dict[str, Any], seed: int, extra: dict[str, Any]) -> None:
        import tomli_w

        self.checkpoint_dir.mkdir(exist_ok=True)
        text = tomli_w.dumps(raw_config)
        atomic_write(self.config, text)
        meta = {"seed": seed, "versions": versions(), "git_commit": _git_commit(), "argv": sys.argv,
                "config_sha256": sha256_text(text), **extra}
        atomic_write(self.metadata, json.dumps(meta, indent=1, sort_keys=True))

    def check_config_unchanged(self) -> None:
        """A resumed run keeps the config it started with: compare config.toml with its hash in
        metadata.json (runs from before the hash was kept are not compared)."""
        if not self.metadata.is_file():
            raise RunDirError(f"--resume: expected {self.metadata} beside the checkpoint, not found")
        meta = read_json(self.metadata, "the run's metadata")
        want = meta.get("config_sha256") if isinstance(meta, dict) else None
        if want and sha256_text(self.config.read_text()) != want:
            raise RunDirError(f"{self.config}: expected the config the run started with, got an edited file "
                              f"(its sha256 differs from metadata.json's config_sha256); start a new run instead")

    def check_real_unchanged(self, sha256: str) -> None:
        """A resumed run scores on the real set it started with (runs from before the digest was
        kept are not compared)."""
        meta = read_json(self.metadata, "the run's metadata")
        want = meta.get("real_sha256") if isinstance(meta, dict) else None
        if want and want != sha256:
            raise RunDirError(f"evaluator.real: expected the real set the run started with (sha256 {want[:12]}…), "
                              f"got another set at that path (sha256 {sha256[:12]}…); the run's scores would not "
                              f"compare, start a new run instead")

    # --- the log of candidates ---------------------------------------------------------------------
    def append_round(self, lines: list[dict[str, Any]]) -> None:
        """Add one round's lines. The whole log is rewritten atomically (it is small), so a kill
        or a full disk never leaves half a line."""
        old = self.rounds.read_text() if self.rounds.is_file() else ""
        new = "".join(json.dumps(json_clean(line), sort_keys=True, allow_nan=False) + "\n" for line in lines)
        atomic_write(self.rounds, old + new)

    def read_rounds(self, warn=None) -> list[dict[str, Any]]:
        """The log's lines. An incomplete last line (a kill or a full disk while an older dropt
        appended) is dropped; a damaged line before it is an error naming the line."""
        if not self.rounds.is_file():
            return []
        text = self.rounds.read_text(errors="replace")
        lines = text.split("\n")
        out = []
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("round"), int):
                    raise ValueError("no round")
                out.append(row)
            except ValueError:
                last = all(not rest.strip() for rest in lines[k + 1:])
                if not last:
                    raise RunDirError(f"{self.rounds}: line {k + 1}: expected one JSON object per candidate, "
                                      f"got a damaged line") from None
                if warn:
                    warn(f"{self.rounds}: dropped an incomplete last line (line {k + 1})")
        return out

    def check_rounds(self, before_round: int, candidates: int, warn=None) -> None:
        """Keep the lines of the rounds the checkpoint covers (a run killed mid-round wrote some
        of the next) and check that they are exactly those rounds' candidates, in order."""
        rows = self.read_rounds(warn)
        ahead = sorted({r["round"] for r in rows if r["round"] > before_round})
        if ahead:       # a kill leaves at most one round beyond the checkpoint; more is a lost checkpoint
            raise RunDirError(f"{self.rounds}: expected no lines beyond round {before_round + 1} (the checkpoint "
                              f"covers {before_round} rounds), got lines of round {ahead[-1] + 1}; the run's "
                              f"checkpoint is missing or older than its log, nothing was changed")
        keep = [r for r in rows if r["round"] < before_round]
        got = [(r.get("round"), r.get("candidate")) for r in keep]
        want = [(r, c) for r in range(before_round) for c in range(candidates)]
        if got != want:
            first = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
            raise RunDirError(f"{self.rounds}: expected the {len(want)} lines of rounds 1–{before_round} that the "
                              f"checkpoint covers, got {len(got)} (first difference at line {first + 1}); "
                              f"the log and the checkpoint disagree")
        if len(keep) != len(rows) or (rows and not self.rounds.read_text().endswith("\n")):
            atomic_write(self.rounds, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))

    # --- the checkpoint ----------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """The new checkpoint; the one before it is kept as ``state.prev.json``."""
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if self.checkpoint.is_file():
            os.replace(self.checkpoint, self.previous)
        atomic_write(self.checkpoint, json.dumps(json_clean(state), sort_keys=True, allow_nan=False))

    def checkpoints(self) -> list[Path]:
        """The checkpoint files to try on resume, newest first."""
        return [p for p in (self.checkpoint, self.previous) if p.is_file()]

    def prune_checkpoint_files(self) -> None:
        """Delete the files in ``checkpoint/`` that neither checkpoint names (a stateful signal's
        files of older rounds, or of a round killed before its checkpoint)."""
        keep = {p.name for p in self.checkpoints()}
        for path in self.checkpoints():
            try:
                keep.update((read_json(path, "a checkpoint").get("signals") or {}).values())
            except (RunDirError, AttributeError):
                pass
        for p in self.checkpoint_dir.iterdir():
            if p.is_file() and p.name not in keep and not p.name.endswith(".json"):
                p.unlink(missing_ok=True)

    def save_best(self, best: dict[str, Any]) -> None:
        atomic_write(self.best, json.dumps(json_clean(best), indent=1, sort_keys=True, allow_nan=False))

    def load_best(self) -> dict[str, Any] | None:
        if not self.best.is_file():
            return None
        best = read_json(self.best, "a finished run's best.json")
        if not isinstance(best, dict) or not {"theta", "val", "test", "optimizer"} <= set(best):
            raise RunDirError(f"{self.best}: expected a finished run's best.json (theta, val, test, …), "
                              f"got {type(best).__name__ if not isinstance(best, dict) else sorted(best)[:4]}")
        return best
