"""Prompt normalizations: a rewrite applied to every caption in training and to every prompt (and negative
prompt) in the pipeline, so the text tower only ever reads one way of saying a thing.

A pipeline stores the name in its `model_index.json` (`prompt_normalization`, like Stable Diffusion's
`requires_safety_checker`), so a saved or Hub pipeline applies the rewrite it was trained with.

- `"shapes_relations"`: Shapes relation captions with "right of" / "below" become the same ask with
  "left of" / "above" and the objects swapped (`hf_textimg.shapes.canonical_relation_prompt`); other text is
  unchanged.

Each rewrite is named by "module:function" and imported on first use, so this module (and the pipelines, which
check the name on construction) import no data world's code. Written here because neither `tokenizers`
normalizers (character-level rewrites, no reordering) nor the transformers tokenizer API can swap two phrases of a
caption.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

PROMPT_NORMALIZATIONS: dict[str, str] = {"shapes_relations": "hf_textimg.shapes.language:canonical_relation_prompt"}


def check_prompt_normalization(name: str | None, argument: str = "prompt_normalization") -> None:
    if name is not None and name not in PROMPT_NORMALIZATIONS:
        raise ValueError(f"`{argument}` must be None or one of {sorted(PROMPT_NORMALIZATIONS)}, got {name!r}.")


@functools.cache
def prompt_normalization_fn(name: str) -> Callable[[str], str]:
    """The rewrite registered as `name`, imported on first use."""
    check_prompt_normalization(name)
    module, function = PROMPT_NORMALIZATIONS[name].split(":")
    if function in globals():  # the pipelines' generated code file (hf_textimg.remote_code) defines it beside this one
        return globals()[function]
    return getattr(importlib.import_module(module), function)


def normalize_prompts(prompts: list[str], name: str | None) -> list[str]:
    """`prompts` rewritten by the normalization `name` (None: unchanged)."""
    if name is None:
        return prompts
    rewrite = prompt_normalization_fn(name)
    return [rewrite(prompt) for prompt in prompts]
