"""A rendered dataset left where it was rendered.

Render actors keep each chunk of images in the Ray object store of their own node and return
only its size; the driver holds a :class:`RemoteDataset` (the chunks' object references, in
image order), and the evaluation task that trains on it fetches the chunks straight from the
nodes that rendered them. So the driver carries θs, scores and per-image signals, never the
images (docs/howto/cluster.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generator.base import Sample, samples_to_dataset
from generator.dataset import Dataset


def pack(samples: list[Sample]) -> tuple:
    """A chunk column-wise (stacked images, stacked depths, annotation lists): a few arrays cross
    Ray far faster than many small objects."""
    depths = [s.depth for s in samples]
    stacked_depth = np.stack(depths) if samples and all(d is not None for d in depths) else None
    return np.stack([s.image for s in samples]), stacked_depth, [s.annotations for s in samples]


def unpack(packed: tuple) -> list[Sample]:
    images, depths, anns = packed
    return [Sample(images[i], anns[i], None if depths is None else depths[i]) for i in range(len(anns))]


@dataclass
class RemoteDataset:
    chunks: list[Any]
    """Object references of the packed chunks, in image order."""
    sizes: list[int]
    categories: list[str]
    info: dict[str, Any]
    recipe: list[tuple[dict[str, np.ndarray], int]] = field(default_factory=list)
    """How to render it again (each part's drawn parameter columns and seed): when a node is lost
    with chunks no task had fetched yet, the engine renders them again, the same bytes."""

    def __len__(self) -> int:
        return sum(self.sizes)

    def fetch(self) -> Dataset:
        import ray

        return samples_to_dataset([s for packed in ray.get(self.chunks) for s in unpack(packed)],
                                  self.categories, self.info)


def local(dataset: Dataset | RemoteDataset) -> Dataset:
    """The images of ``dataset`` in this process (fetched when they are remote)."""
    return dataset.fetch() if isinstance(dataset, RemoteDataset) else dataset


def concat(datasets: list) -> Dataset | RemoteDataset:
    """One dataset from several (the first one's info kept), remote when they all are."""
    from generator.dataset import concat_datasets

    if datasets and all(isinstance(d, RemoteDataset) for d in datasets):
        first = datasets[0]
        return RemoteDataset([c for d in datasets for c in d.chunks], [k for d in datasets for k in d.sizes],
                             list(first.categories), dict(first.info), [r for d in datasets for r in d.recipe])
    return concat_datasets([local(d) for d in datasets])


__all__ = ["RemoteDataset", "concat", "local", "pack", "unpack"]
