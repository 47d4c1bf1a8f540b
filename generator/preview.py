"""Image grids with boxes and class names (PNG), for previews and reports."""

from __future__ import annotations

import math
import os


from generator.dataset import Dataset


def save_grid(dataset: Dataset, path: str | os.PathLike, *, n: int = 16, title: str | None = None,
              cell_inches: float = 1.8) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = min(n, len(dataset))
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell_inches, rows * cell_inches), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k >= n:
            continue
        im = dataset.images[k]
        ax.imshow(im, cmap="gray" if im.ndim == 2 else None, interpolation="nearest")
        for ann in dataset.annotations[k]:
            x, y, w, h = ann.bbox
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, lw=1.0, ec="yellow"))
            ax.text(x - 0.5, y - 1.0, dataset.categories[ann.category_id - 1], color="black", fontsize=6,
                    va="bottom", bbox={"facecolor": "yellow", "edgecolor": "none", "pad": 0.5, "alpha": 0.8})
    return _save(fig, path, title, fontsize=9, pad=0.3, dpi=110)


def save_style_grid(generator, path: str | os.PathLike, *, per_style: int = 12, seed: int = 0,
                    title: str | None = None) -> str:
    """One row per (digit, style) of a generator with style templates: ``per_style`` draws of
    its default distribution in that style, the 32×32 pen bitmaps then the 8×8 images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from generator.base import rows_of

    pairs = generator.styles()
    draws = rows_of(generator.scene_draws(generator.space.to_vector(), per_style * len(pairs), seed))
    fig, axes = plt.subplots(len(pairs), per_style, figsize=(per_style * 0.62, len(pairs) * 0.68), squeeze=False)
    for r, (digit, style) in enumerate(pairs):
        for c in range(per_style):
            k = r * per_style + c
            row = generator.styled(draws[k], digit, style)
            image = generator.bitmap(row, k) if c < per_style // 2 else generator.render(row, k).image
            axes[r, c].imshow(image, cmap="gray_r", interpolation="nearest")
            axes[r, c].set_axis_off()
        axes[r, 0].set_title(f"{digit} {style}", fontsize=6, loc="left", pad=1)
    return _save(fig, path, title, fontsize=8, pad=0.2, dpi=90)


def _save(fig, path, title: str | None, *, fontsize: int, pad: float, dpi: int) -> str:
    """Title, lay out, write and close a figure; the path written."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout(pad=pad)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)
