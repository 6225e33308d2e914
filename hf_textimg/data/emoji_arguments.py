"""The built-in Emoji set's training options, parsed by `HfArgumentParser` beside a script's own config
(as `hf_textimg.shapes.ShapesDataArguments` is for the Shapes world):

    cfg = parse_args(DiffusionTrainConfig, argv, ShapesDataArguments, EmojiDataArguments)

They apply when the script trains on the built-in Emoji set (`--dataset_name emoji`); `cfg.dataset_args` is then
this object. Kept apart from `emoji.py` so parsing flags does not import `datasets` or the renderers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .emoji_sources import STYLES  # stdlib + PIL only

CAPTION_STYLES = ("always", "sometimes", "never")  # --emoji_caption_style (hf_textimg.data.emoji.caption_alternatives)


@dataclass
class EmojiDataArguments:
    dataset_name: ClassVar[str] = "emoji"  # the built-in data set these options build (hf_textimg.data.loading)

    emoji_styles: list[str] = field(
        default_factory=lambda: ["noto"],
        metadata={"help": "Built-in emoji set: artwork styles, any of noto twemoji openmoji fluent (hf_textimg.data.emoji; "
                  "a missing npm package is an error naming the command that fetches it)."},
    )
    emoji_caption_style: Literal["always", "sometimes", "never"] = field(
        default="always", metadata={"help": "Built-in emoji set, train split: captions 'crab, noto style' (always), the name alone "
                                    "'crab' (never: the prompt then means any style), or either at random each time (sometimes)."},
    )
    emoji_dev_style: str | None = field(
        default=None, metadata={"help": "Built-in emoji set: hold this style's images of a tenth of the train emoji out of training "
                                "(hf_textimg.data.emoji.with_dev_style_split; not a spec split) and score them in-run as the "
                                "`dev_style` prompt set: heldout_style's question on other emoji, to choose settings on."},
    )

    def validate(self, resolution: int | None = None) -> None:
        if not self.emoji_styles or set(self.emoji_styles) - set(STYLES):
            raise ValueError(f"--emoji_styles must be one or more of {' '.join(STYLES)}, got {' '.join(self.emoji_styles) or 'nothing'}.")
        if self.emoji_caption_style not in CAPTION_STYLES:
            raise ValueError(f"--emoji_caption_style must be one of {CAPTION_STYLES}, got {self.emoji_caption_style!r}.")
        if self.emoji_dev_style is not None and self.emoji_dev_style not in self.emoji_styles:
            raise ValueError(f"--emoji_dev_style {self.emoji_dev_style} is not among --emoji_styles ({' '.join(self.emoji_styles)}): "
                             "the development split holds out one of the trained styles; add it or pick one of those.")

    def builder_kwargs(self, seed: int) -> dict:
        """Keyword arguments of `build_emoji_dataset`. A training run gets exactly the styles it asked for: a missing
        package is an error, not a smaller set. (`seed` is unused: the splits are fixed by the spec's hash rules.)"""
        return {"styles": tuple(self.emoji_styles), "on_missing": "error"}

    def train_rewrites(self) -> list[str]:
        """The options set here that `prepare_split` applies to the train split (which `--streaming` cannot)."""
        return ([f"--emoji_caption_style {self.emoji_caption_style}"] if self.emoji_caption_style != "always" else []) + (
            [f"--emoji_dev_style {self.emoji_dev_style}"] if self.emoji_dev_style is not None else [])

    def prepare_split(self, data, split: str, caption_column: str | None):
        """The train split without `--emoji_dev_style`'s development rows, its captions per `--emoji_caption_style`
        (the style suffix kept, dropped, or either)."""
        if split != "train":
            return data
        from .emoji import drop_dev_style_rows, with_caption_style

        if self.emoji_dev_style is not None:
            data = drop_dev_style_rows(data, self.emoji_dev_style)
        return with_caption_style(data, self.emoji_caption_style, caption_column) if caption_column else data
