"""A super-resolution stage: a diffusion U-Net that draws a 2x or 4x larger image from a small one.

The second stage of a cascade (DALL-E 2, Imagen, DeepFloyd IF), in IF's shape:

- The low-resolution image (B, 3, h, w) is upsampled to the output size (`upsample`), noised to a
  *noise level* with the stage's `image_noising_scheduler` (`noise_augment`: "noise conditioning
  augmentation", so the stage learns to ignore the small flaws of the stage before it), and
  concatenated channel-wise with the noisy sample: the U-Net reads 6 channels and predicts 3.
- The noise level reaches the U-Net beside the caption's concept, through diffusers' own
  SDXL "micro-conditioning" (`addition_embed_type="text_time"`): the U-Net embeds the level
  sinusoidally (`add_time_proj`, `addition_time_embed_dim` wide), concatenates it to the pooled
  concept passed as `text_embeds`, and adds a Linear-SiLU-Linear of the pair to the timestep
  embedding. IF gives `noise_level` as `class_labels` (`class_embed_type="timestep"`), but then
  the class embedding has no room for the concept; `class_embed_type="projection"` over
  [concept, sinusoid(level)] would work too, with the sinusoid computed outside the model. The
  "text_time" route keeps the whole conditioning inside a stock `UNet2DConditionModel`, so the
  saved stage loads in diffusers with no custom code.
- Token states go to cross-attention only where `attention_levels` asks (default: nowhere), and
  that attention is cross-attention only (`only_cross_attention=True`, no self-attention): every
  output pixel then depends on a fixed neighbourhood of the input and on the caption, never on
  the image size. There are no coordinate channels for the same reason (a crop's corner is not the
  image's corner). One part of a stock U-Net still sees the whole input: GroupNorm's statistics. A stage
  trained on crops of mostly-white Shapes images and run on a whole image draws grey fields where no
  object or border is near (docs/superres.md has the measurement), so a stage trained on crops runs on
  crop-sized tiles of the image (`tile_size`; overlapping tiles averaged, as MultiDiffusion blends
  windows), which is what it saw in training.

Pairs for training come from any image set: a high-resolution image, its box-filtered copy
(`downsample`: the mean of each factor x factor block, which is how the Shapes renderer's
anti-aliasing makes a small image from coverage, and what `square_image` uses to shrink any data
set), and its caption.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from ..utils.resolution import check_resolution
from .unet import IMAGE_CHANNELS, downsample_factor

if TYPE_CHECKING:  # the pipelines' type; this module only reads its three tensors
    from ..pipelines.prompt_embeds import ConceptPromptEmbeds

NOISE_LEVEL_EMBED_DIM = 64  # sinusoid width of the noise level (addition_time_embed_dim)

# Width per level. Three levels (factor 4): at a 128 px output the lowest level is 32x32, so each
# output pixel sees a ~40 px neighbourhood, wider than any Shapes object at 128 px; 1.0M parameters.
DEFAULT_SUPERRES_BLOCK_OUT_CHANNELS = (32, 64, 96)


def superres_unet_config(
    resolution: int = 128,
    cross_attention_dim: int = 128,
    concept_dim: int = 512,
    block_out_channels: tuple[int, ...] = DEFAULT_SUPERRES_BLOCK_OUT_CHANNELS,
    layers_per_block: int = 1,
    attention_levels: tuple[bool, ...] | None = None,
    attention_head_dim: int = 16,
    norm_num_groups: int = 16,
    noise_level_embed_dim: int = NOISE_LEVEL_EMBED_DIM,
) -> dict:
    """The config dict of a fully convolutional super-resolution `UNet2DConditionModel`.

    Args:
        resolution: output image side the stage is made for (`sample_size`); any multiple of
            2 ** (levels - 1) works at inference.
        cross_attention_dim: width of the text tower's token states (`hidden_size`).
        concept_dim: size of the pooled concept (`projection_dim`).
        block_out_channels: width per level, full resolution first.
        layers_per_block: ResNet layers per down level (up levels get one more).
        attention_levels: which levels cross-attend to the token states (no self-attention); default none.
        attention_head_dim: channels per attention head.
        norm_num_groups: GroupNorm groups; must divide every width.
        noise_level_embed_dim: width of the noise level's sinusoidal embedding.
    """
    widths = tuple(block_out_channels)
    levels = tuple(attention_levels) if attention_levels is not None else (False,) * len(widths)
    if len(levels) != len(widths):
        raise ValueError(f"attention_levels has {len(levels)} entries but block_out_channels has {len(widths)}.")
    check_unet_size(resolution, 2 ** (len(widths) - 1), "resolution")
    for width in widths:
        if width % norm_num_groups or (any(levels) and width % attention_head_dim):
            raise ValueError(f"every width in {widths} must be divisible by norm_num_groups ({norm_num_groups}) and, with attention, attention_head_dim ({attention_head_dim}).")
    return dict(
        sample_size=resolution,
        in_channels=2 * IMAGE_CHANNELS,  # noisy sample + noise-augmented upsampled low-resolution image
        out_channels=IMAGE_CHANNELS,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in levels),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(levels)),
        mid_block_type="UNetMidBlock2D",  # one ResNet, no attention (diffusers builds it with add_attention=False)
        only_cross_attention=True,
        block_out_channels=widths,
        layers_per_block=layers_per_block,
        norm_num_groups=norm_num_groups,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=tuple(max(w // attention_head_dim, 1) for w in widths),  # read by diffusers as heads
        addition_embed_type="text_time",
        addition_time_embed_dim=noise_level_embed_dim,
        projection_class_embeddings_input_dim=concept_dim + noise_level_embed_dim,
    )


def build_superres_unet(**kwargs) -> UNet2DConditionModel:
    """`UNet2DConditionModel(**superres_unet_config(**kwargs))`."""
    return UNet2DConditionModel(**superres_unet_config(**kwargs))


def is_superres_unet(unet: UNet2DConditionModel) -> bool:
    """A U-Net laid out by `superres_unet_config`: 6 input channels, noise level through "text_time"."""
    config = unet.config
    return config.addition_embed_type == "text_time" and config.in_channels == 2 * config.out_channels


def superres_concept_dim(unet: UNet2DConditionModel) -> int:
    """Size of the concept a super-resolution U-Net reads: its "text_time" projection takes the concept and the
    noise level's embedding concatenated."""
    return unet.config.projection_class_embeddings_input_dim - unet.config.addition_time_embed_dim


def check_superres_unet(unet: UNet2DConditionModel, text_encoder) -> None:
    """ValueError unless `unet` is a super-resolution U-Net that reads `text_encoder`'s outputs."""
    if not is_superres_unet(unet):
        raise ValueError(
            "`unet` is not a super-resolution U-Net: it needs in_channels == 2 * out_channels and addition_embed_type='text_time' "
            f"(build it with hf_textimg.diffusion.build_superres_unet); got in_channels {unet.config.in_channels}, "
            f"out_channels {unet.config.out_channels}, addition_embed_type {unet.config.addition_embed_type!r}."
        )
    concept_dim = superres_concept_dim(unet)
    if text_encoder.config.hidden_size != unet.config.cross_attention_dim or text_encoder.config.projection_dim != concept_dim:
        raise ValueError(
            f"The text tower gives token states of width {text_encoder.config.hidden_size} and a {text_encoder.config.projection_dim}-d "
            f"concept, but the U-Net reads width {unet.config.cross_attention_dim} and a {concept_dim}-d concept."
        )


def check_unet_size(value, factor: int, name: str = "height") -> None:
    """`check_resolution`, its ValueError naming the allowed sizes (and the nearest two) for a U-Net of this factor."""
    nearest = ""
    if isinstance(value, int) and not isinstance(value, bool) and value > factor and value % factor:
        low = value // factor * factor
        nearest = f"; the nearest are {low} and {low + factor}"
    sizes = ", ".join(str(factor * k) for k in range(1, 5))
    check_resolution(value, factor, f"`{name}`", f" (a U-Net of {factor.bit_length()} levels: {sizes}, ...{nearest})")


# ---- pairs and conditioning (training and the pipeline both use these) -------------------------------
def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H / factor, W / factor): the mean of each factor x factor block (box filter)."""
    return F.avg_pool2d(images, factor)


def random_crop(images: torch.Tensor, size: int, multiple: int = 1) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), one random window per image (torch's global RNG), at offsets that are
    multiples of `multiple`, so the box-filtered copy of a crop is the same window of the image's box-filtered copy."""
    height, width = images.shape[-2:]
    if size > min(height, width) or size % multiple:
        raise ValueError(f"crop size {size} must be a multiple of {multiple} and at most the image size {height}x{width}.")
    ys = torch.randint(0, (height - size) // multiple + 1, (len(images),)) * multiple
    xs = torch.randint(0, (width - size) // multiple + 1, (len(images),)) * multiple
    return torch.stack([image[:, y : y + size, x : x + size] for image, y, x in zip(images, ys.tolist(), xs.tolist())])


def tile_origins(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of `tile`-long windows covering [0, size), consecutive windows overlapping by at least `overlap`."""
    if tile >= size:
        return [0]
    return list(range(0, size - tile, tile - overlap)) + [size - tile]


def upsample(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, *size), bilinear. align_corners=False keeps pixel centres where the box filter put
    them (IF's align_corners=True would shift the image by up to half a low-resolution pixel)."""
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def noise_augment(images: torch.Tensor, noise_level: torch.Tensor, noising_scheduler, generator=None) -> torch.Tensor:
    """`noising_scheduler.add_noise` at timestep `noise_level` (B,) per row; rows at level 0 stay exactly clean
    (the scheduler's timestep 0 still adds noise of std ~0.006, so level 0 is defined as "no augmentation")."""
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    noisy = noising_scheduler.add_noise(images, noise, noise_level.to(images.device))
    return torch.where((noise_level == 0).to(images.device)[:, None, None, None], images, noisy)


def superres_unet_input(sample: torch.Tensor, image_condition: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) noisy sample + (B, 3, H, W) augmented upsampled image -> (B, 6, H, W)."""
    return torch.cat([sample, image_condition], dim=1)


def superres_unet_kwargs(prompt_embeds: ConceptPromptEmbeds, noise_level: torch.Tensor) -> dict:
    """Keyword arguments of `UNet2DConditionModel.forward` for a super-resolution U-Net: token states for
    cross-attention, and the concept (B, concept_dim) with the noise level (B,) for the "text_time" embedding."""
    return {
        "encoder_hidden_states": prompt_embeds.token_states,
        "encoder_attention_mask": prompt_embeds.attention_mask,
        "added_cond_kwargs": {"text_embeds": prompt_embeds.concept, "time_ids": noise_level.to(prompt_embeds.concept.device)[:, None]},
    }


__all__ = [
    "DEFAULT_SUPERRES_BLOCK_OUT_CHANNELS",
    "build_superres_unet",
    "check_unet_size",
    "check_superres_unet",
    "downsample",
    "downsample_factor",
    "is_superres_unet",
    "noise_augment",
    "random_crop",
    "superres_unet_config",
    "superres_unet_input",
    "superres_unet_kwargs",
    "tile_origins",
    "upsample",
]
