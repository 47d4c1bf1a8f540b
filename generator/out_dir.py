"""Folders a command writes whole: a COCO set (``render``, ``export``) or a target (``make-target``).

A folder is written beside its destination and renamed into place, so it never holds a mix of
an old and a new set, and a kill leaves the old one whole. ``--overwrite`` replaces only what
the same command writes (:class:`Layout`): never a run folder, a real set made by another
command, or a folder holding anything else. A symbolic link is followed: the folder it points
to is replaced and the link stays. The hidden folders of a killed writer are removed by the
next writer.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .dataset import DatasetError


@dataclass(frozen=True)
class Layout:
    """What a command writes into its folder: ``marker`` always, ``extra`` entries maybe."""

    what: str
    marker: str
    extra: frozenset[str] = frozenset()

    def holds(self, folder: Path) -> bool:
        names = {p.name for p in folder.iterdir()}
        return self.marker in names and names <= {self.marker, *self.extra}


COCO_SET = Layout("a COCO set dropt wrote (annotations.json, images/)", "annotations.json",
                  frozenset({"images", "depth"}))
TARGET = Layout("a target made by dropt make-target (target.json, val/, test/)", "target.json",
                frozenset({"val", "test", "preview.png"}))


def check_out_dir(out: Path, *, overwrite: bool = False, layout: Layout = COCO_SET, key: str = "--out") -> Path:
    """The folder a whole set may be written to (a link resolved): new, empty, or, with
    ``overwrite``, one holding what ``layout`` describes."""
    out = Path(out)
    if str(out) in ("", "."):
        raise DatasetError(f"{key}: expected a folder to write, got {str(out)!r}")
    if out.is_symlink():
        out = out.resolve()
    if out.parent.is_dir():
        remove_stale(out)           # a killed writer's leftovers first: its old set may come back
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{key}: expected a directory, {out} is a file")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(f"{key}: expected a new or empty directory, {out} is not empty "
                               f"(pass --overwrite to replace it)")
        if not layout.holds(out):
            listed = ", ".join(sorted(p.name for p in out.iterdir())[:4])
            raise DatasetError(f"{key}: --overwrite replaces only {layout.what}, {out} holds {listed}; "
                               f"nothing was changed")
    return out


def write_folder(out: Path, write: Callable[[Path], None], *, overwrite: bool = False,
                 layout: Layout = COCO_SET, key: str = "--out") -> Path:
    """Run ``write(folder)`` on a hidden folder beside ``out``, then put it in ``out``'s place."""
    out = check_out_dir(out, overwrite=overwrite, layout=layout, key=key)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise DatasetError(f"{key}: expected a folder dropt can write, {out.parent}: {e.strerror or e}") from None
    try:
        write(tmp)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{key}: could not write {out} ({e.strerror or e}); nothing was changed there") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def remove_stale(out: Path) -> None:
    """Remove the hidden folders a killed writer of ``out`` left beside it (its process is gone)."""
    for p in out.parent.glob(f".{out.name}.*-*"):
        kind, _, pid = p.name[len(out.name) + 2:].rpartition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or _alive(int(pid)) or not p.is_dir():
            continue
        if kind == "old" and not out.exists():     # killed between its two renames: the old set is back
            os.replace(p, out)
        else:
            shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["COCO_SET", "TARGET", "Layout", "check_out_dir", "remove_stale", "write_folder"]
