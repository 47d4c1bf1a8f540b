"""Each image's TracIn credit: how much training on it lowered the real-val loss."""

from __future__ import annotations

from typing import ClassVar

from .base import Signal


class Credit(Signal):
    name: ClassVar[str] = "credit"
    per_image: ClassVar[bool] = True
    in_training: ClassVar[bool] = True
    doc: ClassVar[str] = "each image's TracIn credit: how much training on it lowered the real-val loss"
