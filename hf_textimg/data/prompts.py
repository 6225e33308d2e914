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


# ----------------------------------------------------------------------------- a class named in the prompt
# A decoder with class labels (ConceptDecoder's `num_class_embeds`, e.g. one per emoji style) reads the class apart
# from the caption's content. A pipeline that stores a `class_prompt_template` such as "{prompt}, {class_name} style"
# takes the class from a prompt written that way, so "crab, noto style" works as a prompt and the text tower reads
# only "crab". Written here because no tokenizer or pipeline API splits a prompt into parts.
CLASS_TEMPLATE_FIELDS = ("{prompt}", "{class_name}")


def check_class_prompt_template(template: str | None, argument: str = "class_prompt_template") -> None:
    if template is not None and (not isinstance(template, str) or any(template.count(f) != 1 for f in CLASS_TEMPLATE_FIELDS)):
        raise ValueError(f"`{argument}` must hold {{prompt}} and {{class_name}} once each (e.g. \"{{prompt}}, {{class_name}} style\"); got {template!r}.")


@functools.lru_cache(maxsize=32)
def _class_prompt_pattern(template: str, class_names: tuple[str, ...]):
    import re

    check_class_prompt_template(template)
    fields = {"{prompt}": "(?P<prompt>.+?)", "{class_name}": "(?P<class_name>" + "|".join(
        re.escape(name) for name in sorted(class_names, key=len, reverse=True)) + ")"}  # longest name first
    pieces = re.split(r"(\{prompt\}|\{class_name\})", template)  # text, field, text, field, text
    return re.compile("".join(fields.get(piece, re.escape(piece)) for piece in pieces), re.DOTALL)


def split_class_prompt(prompt: str, template: str, class_names) -> tuple[str, str | None]:
    """(the prompt part, the class name) of a `prompt` that `template` wrote with one of `class_names`; any other
    prompt is returned whole, with None:

        split_class_prompt("crab, noto style", "{prompt}, {class_name} style", ["noto", "fluent"]) == ("crab", "noto")
        split_class_prompt("crab", "{prompt}, {class_name} style", ["noto", "fluent"]) == ("crab", None)
    """
    match = _class_prompt_pattern(template, tuple(class_names)).fullmatch(prompt)
    return (match["prompt"], match["class_name"]) if match else (prompt, None)
