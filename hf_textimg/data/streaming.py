"""Streaming training data (`--streaming`): image sets read while training runs, never whole in memory.

Sources, each a `datasets.IterableDataset` of raw rows (undecoded image bytes):
- a Hub id or a local folder of parquet / arrow / webdataset shards: `datasets.load_dataset(..., streaming=True)`;
- `--train_data_dir`, an imagefolder: `load_dataset("imagefolder", data_dir=..., streaming=True)`;
- a `save_to_disk` folder: `load_from_disk(...).to_iterable_dataset(num_shards)`;
- a built-in set that renders itself while read (Shapes: `ShapesDataArguments.streaming_dataset`).

Per process: the shards are divided among processes (`datasets.distributed.split_dataset_by_node`), then among
DataLoader workers (datasets does that inside each worker); each worker reads raw rows, shuffles them in blocks
of `--shuffle_buffer_size`, decodes and resizes each image (a corrupt one is skipped and counted), and torchdata's
`StatefulDataLoader` batches them. Its `state_dict()` (every worker's position) goes into each checkpoint, so a run
resumed mid-epoch sees exactly the batches an uninterrupted run would have seen.

Why the block shuffle is written here rather than taken from `IterableDataset.shuffle(buffer_size)`: datasets'
running buffer loses its contents when iteration restarts from a `state_dict` (its docs say so; with DataLoader
workers datasets 5.2 also fails to reload it), so a resumed run would see other data. A buffer filled and emptied
whole restarts exactly: its state is datasets' position at the block's first row plus the rows used since.
"""

from __future__ import annotations

import logging
import os
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from .loading import BUILTIN_DATASETS, _is_saved_dataset, decode_image_value, open_source, select_split

logger = logging.getLogger(__name__)

SAVED_DATASET_SHARDS = 64  # a save_to_disk set streams in this many shards (processes x workers share them out)


# ---- sources -----------------------------------------------------------------------------------------------------
def load_streaming_dataset(
    dataset_name: str | None = None,
    train_data_dir: str | os.PathLike | None = None,
    split: str = "train",
    image_column: str = "image",
    caption_column: str | None = "text",
    dataset_config_name: str | None = None,
    max_samples: int | None = None,
    builtin=None,
):
    """One split as a `datasets.IterableDataset` of raw rows (arguments as `load_image_text_dataset`).

    `builtin`: for a built-in data set name, a callable returning its stream (None: the set has no streaming mode,
    a ValueError). Image columns stay undecoded ({"bytes", "path"}): the DataLoader workers decode them. With
    `max_samples` the first rows are kept (`take`): a stream cannot draw a random subset without reading it all.
    """
    import datasets

    if (dataset_name is None) == (train_data_dir is None):
        raise ValueError("Pass exactly one of `dataset_name` (built-in name, saved folder or Hub id) and `train_data_dir` (imagefolder).")
    if dataset_name in BUILTIN_DATASETS:
        if builtin is None:
            raise ValueError(f"--streaming: the built-in data set {dataset_name!r} has no streaming mode (it is built whole, and fits in "
                             "memory); drop --streaming, or export it (save_to_disk / imagefolder) and stream that folder.")
        data, source = builtin(), f"built-in data set {dataset_name!r}"
    else:
        data, source = open_source(dataset_name, train_data_dir, caption_column, dataset_config_name, split=split, streaming=True)
        if not isinstance(data, datasets.IterableDataset):  # a save_to_disk folder: on disk already, read in shards
            data = select_split(data, split, source)
            data = data.to_iterable_dataset(num_shards=max(1, min(SAVED_DATASET_SHARDS, len(data))))
    data = _check_stream_columns(data, image_column, caption_column, source)
    return data.take(max_samples) if max_samples is not None else data


def _check_stream_columns(data, image_column: str, caption_column: str | None, source: str):
    """The named columns exist (when the stream declares its columns); the image column is left undecoded."""
    import datasets

    columns = data.column_names
    for role, column in (("image_column", image_column), ("caption_column", caption_column)):
        if column is not None and columns is not None and column not in columns:
            raise ValueError(f"{role}={column!r} is not a column of {source}; its columns are {columns}. Pass --{role} with one of them.")
    feature = (data.features or {}).get(image_column)
    if isinstance(feature, datasets.Image) and feature.decode:
        data = data.cast_column(image_column, datasets.Image(decode=False))
    return data


def caption_sample(data, caption_column: str, max_rows: int = 20000) -> list:
    """Captions to train a tokenizer on: the whole column of an in-memory set, the first `max_rows` of a stream."""
    import datasets

    if isinstance(data, datasets.IterableDataset):
        return [row[caption_column] for row in data.select_columns([caption_column]).take(max_rows)]
    return data[caption_column]


# ---- in memory or streaming ---------------------------------------------------------------------------------------
# The in-memory path decodes the whole split once per process into a uint8 array (N, R, R, 3) before the first step,
# which is the fastest way to feed a step while the array is small. Above this size (or a quarter of the free RAM,
# whichever is less) `--streaming auto` streams instead: the up-front decode then takes minutes (at ~5k images/s per
# core, 4 GiB of 32 px images is 1.4M images) and the array competes with the model for memory.
IN_MEMORY_MAX_BYTES = 4 * 2**30
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def count_rows(dataset_name: str | None, train_data_dir: str | None, split: str = "train", dataset_config_name: str | None = None) -> int | None:
    """Rows of a source's split without reading its images, or None when that cannot be known cheaply (a Hub data
    set whose card lists no split sizes, a folder of webdataset tars)."""
    import datasets

    if train_data_dir is not None:
        return sum(name.lower().endswith(IMAGE_SUFFIXES) for _, _, names in os.walk(train_data_dir) for name in names)
    path = Path(dataset_name)
    if _is_saved_dataset(path):
        data = datasets.load_from_disk(dataset_name)  # memory-mapped: nothing is read
        return len(data[split]) if isinstance(data, datasets.DatasetDict) and split in data else (None if isinstance(data, datasets.DatasetDict) else len(data))
    try:
        builder = datasets.load_dataset_builder(dataset_name, dataset_config_name)
    except Exception:  # offline, no such repo, a loading script: the size stays unknown
        return None
    splits = builder.info.splits
    if splits and split in splits and splits[split].num_examples:
        return splits[split].num_examples
    files = [str(f) for f in (builder.config.data_files or {}).get(split, [])]
    if files and all(f.endswith(".parquet") and Path(f).is_file() for f in files):  # local parquet shards: their footers say
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(f).num_rows for f in files)
    return None


def choose_streaming(requested: bool | None, num_rows: int | None, resolution: int, processes_per_machine: int = 1) -> tuple[bool, str]:
    """`--streaming` true / false as asked; unset (auto): in memory while the decoded split fits (see
    IN_MEMORY_MAX_BYTES), else streaming. Returns the choice and the reason, for the log."""
    if requested is not None:
        return requested, f"--streaming {str(requested).lower()}"
    if num_rows is None:
        return False, "--streaming not given and the split's size is unknown: in memory, as before (pass --streaming for a large set)"
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else IN_MEMORY_MAX_BYTES * 4
    limit = min(IN_MEMORY_MAX_BYTES, available // 4)
    needed = num_rows * 3 * resolution**2 * processes_per_machine  # every process holds its own decoded copy
    verdict = "fits" if needed <= limit else "does not fit"
    return needed > limit, (f"auto: {num_rows} images at {resolution} px decode to {needed / 2**30:.2f} GiB on this machine, which {verdict} "
                            f"in {limit / 2**30:.2f} GiB (min of {IN_MEMORY_MAX_BYTES / 2**30:.0f} GiB and a quarter of the free memory)")


# ---- decoding in the DataLoader workers ----------------------------------------------------------------------------
class StreamingImageTextDataset(torch.utils.data.IterableDataset):
    """Decoded training samples from a `datasets.IterableDataset` of raw rows (this process's part of the split):
    {"pixel_values": (3, R, R) float32 in [-1, 1], "text": str, "num_skipped": rows skipped just before this one}.

    Rows are shuffled in blocks of `shuffle_buffer_size` (see the module docstring), with a generator seeded by
    (seed, epoch, rank, worker, block); a list of captions gives one drawn from the same generator. A row whose
    image does not decode is skipped, counted, and the first few are logged. `state_dict()` is the position after
    the last sample yielded; `StatefulDataLoader` collects it from every worker.
    """

    def __init__(self, data, resolution: int, image_column: str = "image", caption_column: str | None = "text",
                 shuffle_buffer_size: int = 1000, seed: int = 0, rank: int = 0, id_column: str | None = None):
        import datasets

        super().__init__()
        self.data, self.resolution = data, resolution
        self.image_column, self.caption_column, self.id_column = image_column, caption_column, id_column
        self.shuffle_buffer_size, self.seed, self.rank = shuffle_buffer_size, seed, rank
        feature = (data.features or {}).get(image_column)
        self.decode = datasets.Image().decode_example if isinstance(feature, datasets.Image) else None
        self.epoch, self._resume = 0, None
        self._state = self._position(None, 0, 0, 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.data.set_epoch(epoch)  # datasets reorders the shards per epoch (the same on every process)

    def _position(self, block_start, block: int, offset: int, num_skipped: int) -> dict:
        return {"epoch": self.epoch, "block_start": block_start, "block": block, "offset": offset, "num_skipped": num_skipped}

    def state_dict(self) -> dict:
        return dict(self._state)

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)
        self.set_epoch(state["epoch"])

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        start, self._resume = self._resume or self._position(None, 0, 0, 0), None
        self.data.load_state_dict(start["block_start"])  # None: from the first row
        rows = iter(self.data)
        block_start, block, offset, num_skipped = start["block_start"], start["block"], start["offset"], start["num_skipped"]
        while chunk := list(islice(rows, self.shuffle_buffer_size)):
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, block])
            order, draws = rng.permutation(len(chunk)), rng.random(len(chunk))
            pending = 0
            for j in range(offset, len(chunk)):
                sample = self._sample(chunk[order[j]], draws[j])
                if sample is None:
                    pending += 1
                    num_skipped += 1
                    continue
                self._state = self._position(block_start, block, j + 1, num_skipped)
                yield {**sample, "num_skipped": pending}
                pending = 0
            block_start, block, offset = self.data.state_dict(), block + 1, 0

    def _sample(self, row: dict, draw: float) -> dict | None:
        try:
            pixels = decode_image_value(row[self.image_column], self.resolution, self.decode)  # (R, R, 3) uint8
        except Exception as error:  # PIL raises several types (UnidentifiedImageError, OSError, SyntaxError, ...)
            logger.warning("Skipped an image of column %r that could not be decoded (%s: %s).", self.image_column, type(error).__name__,
                           str(error)[:200])
            return None
        sample = {"pixel_values": torch.from_numpy(np.array(pixels)).permute(2, 0, 1).float().div_(127.5).sub_(1.0)}  # (3, R, R)
        if self.caption_column is not None:
            caption = row[self.caption_column]
            sample["text"] = caption if isinstance(caption, str) else caption[int(draw * len(caption))]
        if self.id_column is not None:
            sample["id"] = row[self.id_column]
        return sample


# ---- batches, epoch after epoch -----------------------------------------------------------------------------------
class StreamingDataLoader:
    """Endless batches of a `StreamingImageTextDataset`, moved to `device`: when this process's part of the split
    runs out, the next epoch starts (processes may change epoch at different steps; each runs the same number of
    steps, so none waits for another). `state_dict()` / `load_state_dict()` hold the epoch, torchdata's loader
    state (every worker's position) and the count of skipped images.

    Deliberately not a `torch.utils.data.DataLoader`: `accelerator.prepare` passes it through unchanged. It would
    otherwise wrap an iterable data set so that every process reads the whole stream (`IterableDatasetShard`) or
    the main process reads it for all (`dispatch_batches`), while here each process reads only its own shards.
    """

    is_streaming = True

    def __init__(self, dataset: StreamingImageTextDataset, batch_size: int, collate_fn, num_workers: int = 0, device=None):
        from torchdata.stateful_dataloader import StatefulDataLoader

        self.dataset, self.batch_size, self.device = dataset, batch_size, device
        self.loader = StatefulDataLoader(dataset, batch_size=batch_size, drop_last=True, num_workers=num_workers, collate_fn=collate_fn,
                                         persistent_workers=False)
        self.epoch, self.num_skipped, self._resumed = 0, 0, False

    def __iter__(self):
        from accelerate.utils import send_to_device

        while True:
            self.dataset.set_epoch(self.epoch)
            yielded, resumed, self._resumed = False, self._resumed, False
            for batch in self.loader:
                yielded = True
                self._count_skipped(batch.pop("num_skipped", 0))
                yield send_to_device(batch, self.device) if self.device is not None else batch
            if not yielded and not resumed:
                raise ValueError(f"The training stream holds fewer images than one batch of --train_batch_size {self.batch_size} per process "
                                 "and DataLoader worker; lower --train_batch_size or --dataloader_num_workers, or add data.")
            self.epoch += 1

    def _count_skipped(self, new: int) -> None:
        if new and (self.num_skipped == 0 or (self.num_skipped + new).bit_length() > self.num_skipped.bit_length()):
            logger.warning("Skipped %d images of the training stream so far that could not be decoded (each is logged where it is read).",
                           self.num_skipped + new)
        self.num_skipped += new

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "num_skipped": self.num_skipped, "loader": self.loader.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.num_skipped, self._resumed = state["epoch"], state["num_skipped"], True
        self.dataset.set_epoch(self.epoch)
        self.loader.load_state_dict(state["loader"])


def build_streaming_dataloader(data, resolution: int, batch_size: int, collate_fn, image_column: str = "image",
                               caption_column: str | None = "text", num_workers: int = 0, shuffle_buffer_size: int = 1000,
                               seed: int = 0, rank: int = 0, world_size: int = 1, device=None, id_column: str | None = None):
    """This process's `StreamingDataLoader` over the stream `data`: its shards (or, when the shards do not divide
    among the processes, every world_size-th row) via `split_dataset_by_node`, decoded in `num_workers` workers."""
    from datasets.distributed import split_dataset_by_node

    if world_size > 1:
        data = split_dataset_by_node(data, rank=rank, world_size=world_size)
    dataset = StreamingImageTextDataset(data, resolution, image_column, caption_column, shuffle_buffer_size, seed, rank, id_column)
    return StreamingDataLoader(dataset, batch_size, collate_fn, num_workers, device)
