"""Bring your own CLIP: a transformers `CLIPModel` or `CLIPTextModelWithProjection` (folder or Hub id) as the text
tower, in place of a trained `ConceptTextModel`.

    text_encoder = load_text_tower("openai/clip-vit-base-patch32")   # -> CLIPTextModelWithProjection

It is read the same way (`hf_textimg.pipelines.prompt_embeds.text_features`): its `last_hidden_state` (B, L, H) is what
the U-Net cross-attends to and its projected `text_embeds`, unit-normalised, the concept (B, projection_dim); its
config names both widths as ours does (`hidden_size`, `projection_dim`). A `CLIPModel` checkpoint loads as its text
half (transformers reads the `text_config` and the `text_model.*` / `text_projection` weights).
"""

from __future__ import annotations

import os

from transformers import CLIPTextModelWithProjection, PretrainedConfig, PreTrainedModel

CLIP_MODEL_TYPES = ("clip", "clip_text_model")


def is_clip_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` (a folder or Hub id) holds a transformers CLIP model, from its config.json alone."""
    config, _ = PretrainedConfig.get_config_dict(str(path))
    return config.get("model_type") in CLIP_MODEL_TYPES


def load_text_tower(path: str | os.PathLike, **kwargs) -> PreTrainedModel:
    """The text tower at `path`: a CLIP's text half with its projection, or a `ConceptTextModel` (also from a
    `ConceptModel` folder)."""
    if is_clip_checkpoint(path):
        return CLIPTextModelWithProjection.from_pretrained(str(path), **kwargs)
    from .modeling_concept import ConceptTextModel

    return ConceptTextModel.from_pretrained(path, **kwargs)
