"""Each image's exact metagradient: −d(real-val loss)/d(its loss weight) through the whole run."""

from __future__ import annotations

from typing import ClassVar

from .base import Signal


class Metagrad(Signal):
    name: ClassVar[str] = "metagrad"
    per_image: ClassVar[bool] = True
    in_training: ClassVar[bool] = True
    doc: ClassVar[str] = ("each image's exact metagradient: how much up-weighting it in the whole training run "
                          "lowers the real-val loss (about four training runs' cost)")
