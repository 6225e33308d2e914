"""The Shapes data: `build_shapes_dataset` (a `datasets.DatasetDict` with train / validation / heldout),
`shapes_iterable_dataset` (a train split of any size as a `datasets.IterableDataset`, rendered on the fly) and
`ShapesStream` (infinite on-the-fly training samples), all drawn with `sample_scene` and `render_batch`.

Same seed, same data: each split (and each stream rank and worker) has its own seeded generator.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import datasets
from datasets.utils import tqdm as hf_tqdm
import numpy as np
import torch
from PIL import Image

from .language import caption_scene
from .layout import ShapesLayout
from .render import render_batch
from .sampling import check_kind_probs, check_layout, sample_scene
from .vocab import BASE_SIZE, SPLITS

_SPLIT_STREAMS = {"train": 0, "validation": 1, "heldout": 2}  # seed stream id per split

SHAPES_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "text": datasets.Value("string"),
        "kind": datasets.Value("string"),
        "objects": datasets.List(
            {
                "color": datasets.Value("string"),
                "shape": datasets.Value("string"),
                "size": datasets.Value("string"),
                "cell": datasets.List(datasets.Value("int32")),
                "center": datasets.List(datasets.Value("float32")),
            }
        ),
    }
)


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _build_split(num: int, split: str, size: int, seed: int, kind_probs: tuple | None, layout: ShapesLayout) -> datasets.Dataset:
    rng = np.random.default_rng([seed, _SPLIT_STREAMS[split]])
    scenes = [sample_scene(rng, split=split, size=size, kind_probs=kind_probs, layout=layout) for _ in range(num)]
    texts = [caption_scene(scene, rng) for scene in scenes]
    images = render_batch(scenes, size) if scenes else np.zeros((0, size, size, 3), np.uint8)
    columns = {
        # datasets' own tqdm: `datasets.disable_progress_bars()` (`--quiet`) silences it with datasets' bars
        "image": [{"bytes": _png_bytes(img), "path": None} for img in hf_tqdm(images, desc=f"Shapes {split} ({size} px)", unit="img", leave=False)],
        "text": texts,
        "kind": [scene.kind for scene in scenes],
        "objects": [[obj.to_dict() for obj in scene.objects] for scene in scenes],
    }
    return datasets.Dataset.from_dict(columns, features=SHAPES_FEATURES, split=split)


def build_shapes_dataset(
    size: int = BASE_SIZE,
    num_train: int = 20000,
    num_validation: int = 2000,
    num_heldout: int = 2000,
    seed: int = 0,
    kind_probs: Sequence[float] | None = None,
    layout: ShapesLayout | None = None,
) -> datasets.DatasetDict:
    """Build the Shapes `DatasetDict` with splits train / validation / heldout.

    Columns: image (PNG), text (a random paraphrase), kind, objects (list of
    {color, shape, size, cell: [col, row], center: [x, y]}). Same seed, same data.
    `kind_probs` and `layout` (None: the spec's) as in `sample_scene`.
    """
    kind_probs, layout = check_kind_probs(kind_probs), check_layout(layout)
    counts = {"train": num_train, "validation": num_validation, "heldout": num_heldout}
    return datasets.DatasetDict({split: _build_split(n, split, size, seed, kind_probs, layout) for split, n in counts.items()})


def _render_shards(shards: list[int], rows: list[int], size: int, seed: int, kind_probs, layout) -> Iterator[dict]:
    """`datasets.IterableDataset.from_generator` body: shard i holds rows[i] scenes drawn from its own generator
    (seed, train, shard), so a shard's rows are the same whichever worker or process renders it."""
    for shard, num in zip(shards, rows):
        rng = np.random.default_rng([seed, _SPLIT_STREAMS["train"], 1 << 20, shard])  # 1 << 20: apart from ShapesStream's ranks
        for start in range(0, num, 256):  # render in chunks: stamps make a chunk far cheaper than one-by-one
            scenes = [sample_scene(rng, split="train", size=size, kind_probs=kind_probs, layout=layout) for _ in range(min(256, num - start))]
            texts = [caption_scene(scene, rng) for scene in scenes]
            for i, (image, text) in enumerate(zip(render_batch(scenes, size), texts)):  # image: (H, W, 3) uint8
                yield {"image": image, "text": text, "id": f"{shard}-{start + i}"}


def shapes_iterable_dataset(
    num_train: int = 20000,
    size: int = BASE_SIZE,
    seed: int = 0,
    num_shards: int = 64,
    kind_probs: Sequence[float] | None = None,
    layout: ShapesLayout | None = None,
) -> datasets.IterableDataset:
    """A Shapes train split of `num_train` rows as a `datasets.IterableDataset` in `num_shards` shards, rendered
    while it is read: a million-image run needs no disk and no memory for the set. Columns: image ((H, W, 3) uint8
    array), text, id ("<shard>-<row>"). Same seed, same rows (not the rows of `build_shapes_dataset`'s train split,
    which draws from one generator)."""
    kind_probs, layout = check_kind_probs(kind_probs), check_layout(layout)
    num_shards = max(1, min(num_shards, num_train))
    rows = [num_train // num_shards + (i < num_train % num_shards) for i in range(num_shards)]
    kwargs = {"shards": list(range(num_shards)), "rows": rows, "size": size, "seed": seed, "kind_probs": kind_probs, "layout": layout}
    return datasets.IterableDataset.from_generator(_render_shards, gen_kwargs=kwargs)


class ShapesStream(torch.utils.data.IterableDataset):
    """Infinite on-the-fly Shapes samples: {"pixel_values": (3, H, W) float32 in [-1, 1], "text": str}.

    The stream is seeded by (seed, rank, dataloader worker id), so data-parallel processes
    (give rank / world_size) and workers see different data, and a given seed always
    replays the same data. `kind_probs` and `layout` (None: the spec's) as in `sample_scene`.
    """

    def __init__(
        self,
        size: int = BASE_SIZE,
        seed: int = 0,
        split: str = "train",
        rank: int = 0,
        world_size: int = 1,
        paraphrase: bool = True,
        chunk_size: int = 256,
        kind_probs: Sequence[float] | None = None,
        layout: ShapesLayout | None = None,
    ):
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.scene_kwargs = {"kind_probs": check_kind_probs(kind_probs), "layout": check_layout(layout)}
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size); got rank={rank}, world_size={world_size}")
        self.size, self.seed, self.split = size, seed, split
        self.rank, self.world_size = rank, world_size
        self.paraphrase, self.chunk_size = paraphrase, chunk_size

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, _SPLIT_STREAMS[self.split], self.rank, worker])
        while True:  # render in chunks: stamps make a chunk far cheaper than one-by-one
            scenes = [sample_scene(rng, split=self.split, size=self.size, **self.scene_kwargs) for _ in range(self.chunk_size)]
            texts = [caption_scene(scene, rng if self.paraphrase else None) for scene in scenes]
            images = render_batch(scenes, self.size)  # (N, H, W, 3) uint8
            for image, text in zip(images, texts):
                # one fresh tensor per sample: a view would ship the whole chunk to the main process
                pixels = torch.from_numpy(image).permute(2, 0, 1).float().div_(127.5).sub_(1.0)  # (3, H, W)
                yield {"pixel_values": pixels, "text": text}
