"""Loading captioned image sets (`loading`), prompt normalizations (`prompts`) and the Emoji builder (`emoji`).

The Shapes world has its own package, `hf_textimg.shapes` (`build_shapes_dataset`, `ShapesStream`, ...).
"""

from .emoji import (
    EmojiSourceError,
    base_sequence,
    build_emoji_dataset,
    emoji_caption,
)
