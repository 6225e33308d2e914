"""The unCLIP prior (caption -> image concept): diffusers' `PriorTransformer` and the glue to our text towers.

The pipelines that sample it live in `hf_textimg.pipelines` (`ConceptPriorPipeline`, and `ConceptUnCLIPPipeline`,
prior + one-shot decoder); training in `training/train_prior.py`.
"""

from .prior_transformer import (
    CLIP_SAMPLE_RANGE,
    build_prior,
    check_text_width,
    embedding_stats,
    normalize_embeds,
    prior_kwargs,
    prior_loss,
    prior_noise_scheduler,
    set_embedding_stats,
)

__all__ = [
    "CLIP_SAMPLE_RANGE",
    "build_prior",
    "check_text_width",
    "embedding_stats",
    "normalize_embeds",
    "prior_kwargs",
    "prior_loss",
    "prior_noise_scheduler",
    "set_embedding_stats",
]
