"""The Shapes world's training options, parsed by `HfArgumentParser` beside a script's own config:

    cfg = parse_args(DiffusionTrainConfig, argv, ShapesDataArguments)   # cfg.dataset_args is the ShapesDataArguments

They apply when the script trains on the built-in Shapes world (`--dataset_name shapes`, the default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .layout import ShapesLayout
from .sampling import check_kind_probs
from .vocab import IMAGE_SIZES, SCENE_KINDS


@dataclass
class ShapesDataArguments:
    dataset_name: ClassVar[str] = "shapes"  # the built-in data set these options build (hf_textimg.data.loading)

    num_shapes_train: int = field(default=50000, metadata={"help": "Size of the generated Shapes train split."})
    num_shapes_eval: int = field(default=2000, metadata={"help": "Size of the generated Shapes validation and heldout splits."})
    shapes_kind_probs: list[float] | None = field(
        default=None, metadata={"help": "Shapes train/validation mix: weights of single, count, pair, relation scenes (default 0.4 0.2 0.2 0.2)."}
    )
    shapes_canonical_layouts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Scene kinds drawn in one canonical layout per caption instead of the spec's random cells, e.g. "
            "`count relation` (default: none, the spec). single: an unnamed size is large, an unnamed position the centre; "
            "count: one layout per count; pair: the middle row's outer cells; relation: the middle line's outer cells "
            "(hf_textimg.shapes.ShapesLayout).",
            "choices": SCENE_KINDS,
        },
    )

    @property
    def layout(self) -> ShapesLayout:
        return ShapesLayout.canonical(*self.shapes_canonical_layouts) if self.shapes_canonical_layouts else ShapesLayout.spec()

    def validate(self, resolution: int | None = None) -> None:
        """Raise a ValueError naming the flag for settings that cannot work; `resolution`: the run's image side."""
        try:
            check_kind_probs(self.shapes_kind_probs)
        except ValueError as err:
            raise ValueError(f"--shapes_kind_probs: {err}") from None
        try:
            ShapesLayout.canonical(*self.shapes_canonical_layouts)
        except ValueError as err:
            raise ValueError(f"--shapes_canonical_layouts: {err}") from None
        if resolution is not None and resolution not in IMAGE_SIZES:
            raise ValueError(f"--resolution {resolution} is not a size the Shapes world is drawn at; use one of {IMAGE_SIZES}.")
        for name in ("num_shapes_train", "num_shapes_eval"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}.")

    def builder_kwargs(self, seed: int) -> dict:
        """Keyword arguments of `build_shapes_dataset` (hashable values: the built data set is cached on them)."""
        kind_probs = None if self.shapes_kind_probs is None else tuple(self.shapes_kind_probs)
        return {"num_train": self.num_shapes_train, "num_validation": self.num_shapes_eval, "num_heldout": self.num_shapes_eval,
                "seed": seed, "kind_probs": kind_probs, "layout": self.layout}

    @property
    def num_train_rows(self) -> int:
        """Rows of the train split (for `--streaming` unset: in memory or streamed, by size)."""
        return self.num_shapes_train

    def streaming_dataset(self, resolution: int, seed: int):
        """The train split for `--streaming`: `num_shapes_train` rows rendered while training reads them
        (`shapes_iterable_dataset`), so a million-image run needs neither disk nor memory for the set."""
        from .dataset import shapes_iterable_dataset

        return shapes_iterable_dataset(self.num_shapes_train, resolution, seed, kind_probs=self.shapes_kind_probs, layout=self.layout)
