"""Concept-conditioned pixel-space diffusion: the U-Net config and the extra channels it reads (coordinates,
self-conditioning).

The noise math lives in diffusers' schedulers (training: `DDPMScheduler.add_noise`; sampling:
any scheduler's `step`), the sampler and its conditioning (`ConceptPromptEmbeds`, `encode_concept`) in
`hf_textimg.pipelines`, training in `training/train_diffusion.py`.
"""

from .superres import build_superres_unet, superres_unet_config
from .unet import (
    DEFAULT_BLOCK_OUT_CHANNELS,
    build_unet,
    clean_estimate,
    coordinate_grid,
    downsample_factor,
    guidance_scale_embedding,
    is_self_conditioned,
    unet_config,
    unet_input,
    x0_and_eps,
)

__all__ = [
    "DEFAULT_BLOCK_OUT_CHANNELS",
    "ConceptPromptEmbeds",
    "build_superres_unet",
    "build_unet",
    "clean_estimate",
    "coordinate_grid",
    "downsample_factor",
    "encode_concept",
    "guidance_scale_embedding",
    "is_self_conditioned",
    "superres_unet_config",
    "unet_config",
    "unet_input",
    "x0_and_eps",
]


def __getattr__(name: str):
    # The conditioning lives with the pipeline that reads it; imported on first use, as the pipelines import this package.
    if name in ("ConceptPromptEmbeds", "encode_concept"):
        from ..pipelines import prompt_embeds

        return getattr(prompt_embeds, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
