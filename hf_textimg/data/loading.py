"""One way to load any captioned image set, used by every training script.

The arguments mirror diffusers' text-to-image example (`--dataset_name`,
`--train_data_dir`, `--image_column`, `--caption_column`, `--resolution`), so a user can
point our scripts at the same data they would give that example:

- ``dataset_name="shapes"`` / ``"emoji"``: the built-in sets, generated locally.
- ``dataset_name=<folder written by save_to_disk>``: loaded with `datasets.load_from_disk`.
- ``dataset_name=<Hub id or local loading script>``: `datasets.load_dataset`.
- ``train_data_dir=<folder>``: the standard `imagefolder` layout (images + metadata.jsonl).

Images become float tensors (3, R, R) in [-1, 1]. Random horizontal flip is off by
default because captions talk about left and right.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .prompts import check_prompt_normalization, normalize_prompts
from .validation import check_caption_column, check_imagefolder_metadata

BUILTIN_DATASETS = ("shapes", "emoji")


@functools.lru_cache(maxsize=4)
def _builtin_dataset(name: str, resolution: int, cache_dir: str | None, kwargs: tuple):
    # Cached: a training run asks for its train and evaluation splits separately, and the
    # builders make every split at once (Shapes at 50k images takes seconds). The returned
    # DatasetDict is Arrow-backed and never modified in place, so sharing it is safe.
    if name == "shapes":
        from ..shapes.dataset import build_shapes_dataset

        return build_shapes_dataset(size=resolution, **dict(kwargs))
    from .emoji import build_emoji_dataset

    return build_emoji_dataset(size=resolution, cache_dir=cache_dir, **dict(kwargs))


def _is_saved_dataset(path: Path) -> bool:
    # `save_to_disk` writes dataset_dict.json (DatasetDict) or dataset_info.json + state.json (Dataset).
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def load_image_text_dataset(
    dataset_name: str | None = None,
    train_data_dir: str | os.PathLike | None = None,
    split: str = "train",
    image_column: str = "image",
    caption_column: str | None = "text",
    resolution: int = 32,
    dataset_config_name: str | None = None,
    cache_dir: str | None = None,
    max_samples: int | None = None,
    builtin_kwargs: dict | None = None,
    seed: int = 0,
):
    """Load one split of a captioned image set and check its columns.

    Args:
        dataset_name: "shapes", "emoji", a folder written by `save_to_disk`, a name
            for `datasets.load_dataset`, or an in-memory `Dataset`/`DatasetDict`.
        train_data_dir: an `imagefolder` directory (alternative to `dataset_name`).
        split: the split to return.
        image_column / caption_column: column names; `caption_column=None` for image-only
            training (the auto-encoder).
        resolution: image size the built-in sets are rendered at.
        max_samples: keep N rows drawn at random with `seed` (as diffusers' text-to-image example does with
            `shuffle(seed).select(range(N))`): the first N rows of a sorted set (the Emoji set is sorted by style)
            would be a biased sample.
        builtin_kwargs: extra arguments for the built-in builders (e.g. `num_train`).

    Returns:
        A `datasets.Dataset`.

    Raises:
        ValueError: no source given, unknown split, missing column (the message lists the
            columns that exist) or an empty data set.
    """
    import datasets

    if (dataset_name is None) == (train_data_dir is None):
        raise ValueError("Pass exactly one of `dataset_name` (built-in name, saved folder or Hub id) and `train_data_dir` (imagefolder).")

    if isinstance(dataset_name, (datasets.Dataset, datasets.DatasetDict)):
        data, source = dataset_name, "the given data set"
    elif dataset_name in BUILTIN_DATASETS:
        data = _builtin_dataset(dataset_name, resolution, cache_dir, tuple(sorted((builtin_kwargs or {}).items())))
        source = f"built-in data set {dataset_name!r}"
    else:
        data, source = open_source(dataset_name, train_data_dir, caption_column, dataset_config_name, cache_dir=cache_dir)
    data = select_split(data, split, source)

    required = [image_column] + ([caption_column] if caption_column else [])
    for role, column in zip(("image_column", "caption_column"), required):
        if column not in data.column_names:
            raise ValueError(
                f"{role}={column!r} is not a column of {source}; its columns are {data.column_names}. "
                f"Pass --{role} with one of them."
            )
    if len(data) == 0:
        raise ValueError(f"{source} split {split!r} is empty; there is nothing to train or evaluate on.")
    if max_samples is not None and max_samples < len(data):
        data = data.shuffle(seed=seed).select(range(max_samples))
    if caption_column:
        check_caption_column(data, caption_column, f"{source} split {split!r}")
    return data


def open_source(dataset_name, train_data_dir, caption_column: str | None, dataset_config_name: str | None = None, **load_kwargs):
    """(data, a description for messages) of a source that is not built in: an imagefolder (`train_data_dir`), a
    `save_to_disk` folder, or a `datasets.load_dataset` name (Hub id, folder of shards); `load_kwargs` go to
    `load_dataset` (`cache_dir`; `split` and `streaming=True` for `hf_textimg.data.streaming`)."""
    import datasets

    if train_data_dir is not None:
        if not Path(train_data_dir).is_dir():
            raise ValueError(f"train_data_dir={str(train_data_dir)!r} is not a directory.")
        check_imagefolder_metadata(train_data_dir, caption_column)  # a bad line named, not an ArrowInvalid from arrow
        with _load_errors_named("train_data_dir", train_data_dir):
            return datasets.load_dataset("imagefolder", data_dir=str(train_data_dir), **load_kwargs), f"imagefolder {train_data_dir}"
    if _is_saved_dataset(Path(dataset_name)):
        return datasets.load_from_disk(dataset_name), f"saved data set {dataset_name}"
    with _load_errors_named("dataset_name", dataset_name):
        return datasets.load_dataset(dataset_name, dataset_config_name, **load_kwargs), f"data set {dataset_name!r}"


def select_split(data, split: str, source: str):
    """`data[split]` of a `DatasetDict` (a ValueError listing the splits when it has none such); a split as it is."""
    import datasets

    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ValueError(f"Split {split!r} not found in {source}; available splits: {sorted(data)}.")
        return data[split]
    return data


@contextlib.contextmanager
def _load_errors_named(flag: str, value):
    """`datasets.load_dataset` failures (no such Hub repo or folder, offline, no data files) as one ValueError naming
    the flag, rather than a DatasetNotFoundError / ConnectionError / EmptyDatasetError traceback."""
    try:
        yield
    except (OSError, ValueError, ImportError) as error:  # ConnectionError and datasets' own errors derive from these
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        kinds = f"{', '.join(BUILTIN_DATASETS)}, a save_to_disk folder or a Hub data set" if flag == "dataset_name" else "a folder of images"
        raise ValueError(f"{flag}={str(value)!r} could not be loaded as {kinds} ({type(error).__name__}: {reason}).") from error


def square_image(image: Image.Image, resolution: int) -> Image.Image:
    """RGB, centre-cropped to a square and resized to `resolution` (box filter when shrinking,
    bicubic when enlarging). Written with PIL rather than torchvision, which is not a
    dependency (and has no CPU wheel on some platforms)."""
    image = image.convert("RGB")
    w, h = image.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size[0] != resolution:
        resample = Image.Resampling.BOX if image.size[0] > resolution else Image.Resampling.BICUBIC
        image = image.resize((resolution, resolution), resample=resample)
    return image


def decode_images(data, image_column: str, resolution: int) -> tuple[np.ndarray, list[int], str | None]:
    """Decode every image of `image_column` to a (N_ok, R, R, 3) uint8 array (see `square_image`).

    Rows whose image cannot be decoded (a corrupt or truncated file, or a value that is not an image) are skipped
    rather than stopping the run: returns the array, the skipped row numbers and the first error (for the caller's
    warning). Decoding happens here, row by row, not inside `datasets`, so one bad file costs one row.
    """
    import datasets

    feature = data.features.get(image_column)
    if isinstance(feature, datasets.Image) and feature.decode:
        raw = data.cast_column(image_column, datasets.Image(decode=False))[image_column]  # {"bytes", "path"} per row
        decode = feature.decode_example
    else:
        raw, decode = data[image_column], None
    images = np.empty((len(data), resolution, resolution, 3), dtype=np.uint8)  # (N, R, R, 3)
    skipped, first_error, n = [], None, 0
    for i, value in enumerate(raw):
        try:
            images[n] = decode_image_value(value, resolution, decode)
            n += 1
        except Exception as error:  # PIL raises several types (UnidentifiedImageError, OSError, SyntaxError, ...)
            skipped.append(i)
            first_error = first_error or f"row {i}: {type(error).__name__}: {error}"
    return images[:n], skipped, first_error


def decode_image_value(value, resolution: int, decode: Callable | None = None) -> np.ndarray:
    """One image cell -> (R, R, 3) uint8 (see `square_image`): a PIL image, an (R, R, 3) uint8 array (kept as is), or
    with `decode` (e.g. `datasets.Image().decode_example`) an undecoded {"bytes", "path"} cell. Raises on anything else
    and on a corrupt file; callers skip and count such rows."""
    if isinstance(value, np.ndarray) and value.shape == (resolution, resolution, 3) and value.dtype == np.uint8:
        return value  # already pixels (a rendered stream, e.g. hf_textimg.shapes.shapes_iterable_dataset)
    image = decode(value) if decode is not None else value
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"a {type(image).__name__}, not an image")
    return np.asarray(square_image(image, resolution))


def image_to_tensor(image: Image.Image, resolution: int, random_flip: bool = False, rng: random.Random | None = None) -> torch.Tensor:
    """PIL image -> (3, resolution, resolution) float tensor in [-1, 1] (see `square_image`)."""
    image = square_image(image, resolution)
    if random_flip and (rng or random).random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    array = np.asarray(image, dtype=np.float32)  # (H, W, 3) in [0, 255]
    return torch.from_numpy(array).permute(2, 0, 1).div(127.5).sub(1.0)


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) tensor in [-1, 1] -> list of PIL images."""
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]


class ImageTextTransform:
    """`datasets.Dataset.with_transform` function: decode, resize and normalise images and
    pick one caption per example (a column may hold a list of alternative captions).

    Output keys: ``pixel_values`` (list of (3, R, R) tensors) and ``text`` (list of str).
    """

    def __init__(
        self,
        resolution: int,
        image_column: str = "image",
        caption_column: str | None = "text",
        random_flip: bool = False,
        caption_fn: Callable[[dict, random.Random], str] | None = None,
        seed: int | None = None,
    ):
        self.resolution = resolution
        self.image_column, self.caption_column = image_column, caption_column
        self.random_flip = random_flip
        self.caption_fn = caption_fn
        self.rng = random.Random(seed)

    def _caption(self, examples: dict, i: int) -> str:
        if self.caption_fn is not None:
            return self.caption_fn({k: v[i] for k, v in examples.items()}, self.rng)
        caption = examples[self.caption_column][i]
        if isinstance(caption, str):
            return caption
        if isinstance(caption, (list, tuple)) and caption and all(isinstance(c, str) for c in caption):
            return self.rng.choice(caption)
        raise ValueError(
            f"Caption column {self.caption_column!r} must hold strings or lists of strings; got {type(caption).__name__} in row {i}."
        )

    def __call__(self, examples: dict) -> dict:
        images = examples[self.image_column]
        out = {"pixel_values": []}
        for i, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise ValueError(
                    f"Column {self.image_column!r} row {i} is a {type(image).__name__}, not an image; "
                    "cast it with datasets.Image() or pass the right --image_column."
                )
            out["pixel_values"].append(image_to_tensor(image, self.resolution, self.random_flip, self.rng))
        if self.caption_column or self.caption_fn:
            out["text"] = [self._caption(examples, i) for i in range(len(images))]
        return out


class ImageTextCollator:
    """DataLoader `collate_fn`: stacks pixel values (B, 3, R, R) and, with a tokenizer,
    tokenizes the captions into fixed-length `input_ids`/`attention_mask` (B, L), after the
    `prompt_normalization` rewrite (hf_textimg.data.prompts) when one is named."""

    def __init__(self, tokenizer=None, max_length: int | None = None, prompt_normalization: str | None = None):
        check_prompt_normalization(prompt_normalization)
        self.tokenizer, self.max_length, self.prompt_normalization = tokenizer, max_length, prompt_normalization

    def __call__(self, examples: list[dict]) -> dict:
        batch = {"pixel_values": torch.stack([e["pixel_values"] for e in examples]).contiguous()}
        for key, value in examples[0].items():  # other per-row tensors (TensorImageTextDataset's extras), stacked alike
            if key != "pixel_values" and isinstance(value, torch.Tensor):
                batch[key] = torch.stack([e[key] for e in examples])
        if "num_skipped" in examples[0]:  # a stream's undecodable rows before these samples (hf_textimg.data.streaming)
            batch["num_skipped"] = sum(e["num_skipped"] for e in examples)
        if "id" in examples[0]:
            batch["id"] = [e["id"] for e in examples]
        if "text" in examples[0]:
            batch["text"] = [e["text"] for e in examples]
            if self.tokenizer is not None:
                from ..tokenization import tokenize_captions

                captions = normalize_prompts(batch["text"], self.prompt_normalization)
                batch.update(tokenize_captions(self.tokenizer, captions, self.max_length))
        return batch


def save_as_imagefolder(dataset_dict, out_dir: str | os.PathLike, image_column: str = "image") -> list[Path]:
    """Export each split to ``out_dir/<split>/`` in the standard `imagefolder` layout:
    PNG files plus a ``metadata.jsonl`` whose rows hold ``file_name`` and every other column.

    Load a split back with ``load_dataset("imagefolder", data_dir=out_dir/<split>)`` or
    ``--train_data_dir out_dir/<split>``. Splits get their own folders because imagefolder
    only recognises train/validation/test directory names, not e.g. ``heldout``.
    """
    import json

    written = []
    for split, data in dataset_dict.items():
        folder = Path(out_dir) / split
        folder.mkdir(parents=True, exist_ok=True)
        width = len(str(max(len(data) - 1, 0)))
        with open(folder / "metadata.jsonl", "w") as f:
            for i, row in enumerate(data):
                name = f"{i:0{width}d}.png"
                row.pop(image_column).save(folder / name)
                f.write(json.dumps({"file_name": name, **row}) + "\n")
        written.append(folder)
    return written
