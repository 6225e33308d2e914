"""Concept-conditioned pixel-space diffusion: the U-Net config and the conditioning it reads.

The noise math lives in diffusers' schedulers (training: `DDPMScheduler.add_noise`; sampling:
any scheduler's `step`), the sampler in `hf_textimg.pipelines.pipeline_diffusion`, training in
`training/train_diffusion.py`.
"""

from .unet import (
    DEFAULT_BLOCK_OUT_CHANNELS,
    SUPPORTED_RESOLUTIONS,
    ConceptPromptEmbeds,
    build_unet,
    coordinate_grid,
    downsample_factor,
    encode_concept,
    unet_config,
    unet_input,
)

__all__ = [
    "DEFAULT_BLOCK_OUT_CHANNELS",
    "SUPPORTED_RESOLUTIONS",
    "ConceptPromptEmbeds",
    "build_unet",
    "coordinate_grid",
    "downsample_factor",
    "encode_concept",
    "unet_config",
    "unet_input",
]
