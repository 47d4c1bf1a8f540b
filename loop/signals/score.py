"""The real-val score of a model trained on the candidate's images (the loop's usual reward)."""

from __future__ import annotations

from typing import ClassVar

from .base import Signal


class Score(Signal):
    name: ClassVar[str] = "score"
    per_image: ClassVar[bool] = False
    in_training: ClassVar[bool] = True
    real_val_score: ClassVar[bool] = True
    doc: ClassVar[str] = "the real-val score of a model trained on the candidate's images"
