"""A small pixel-space `UNet2DConditionModel` conditioned on a caption's concept.

No custom U-Net: diffusers' `UNet2DConditionModel` already takes both conditionings we need.

- The pooled, unit-norm concept `(B, concept_dim)` goes in as `class_labels` through
  `class_embed_type="projection"` (a Linear-SiLU-Linear added to the timestep embedding), so
  every ResNet block sees *what* to draw.
- The text tower's token states `(B, L, cross_attention_dim)` go in as
  `encoder_hidden_states` (with `encoder_attention_mask`) to the cross-attention blocks, so
  each spatial position can attend to the words that concern it ("left of", "top right").

The model works on RGB pixels in [-1, 1] (no VAE: at 32/64 px a latent space buys nothing).

Where things are: convolutions are translation-equivariant and diffusers' attention blocks carry
no positional embedding, so a plain U-Net knows where it is only through zero padding, and it
learns "at the top left" or "left of" slowly. With `coordinate_channels=True` the U-Net takes two
extra input channels, the pixel's x and y in [-1, 1] ("CoordConv", https://arxiv.org/abs/1807.03247),
appended by `unet_input` in training and in the pipeline, as diffusers' inpainting U-Nets take mask
channels beside the latents: `in_channels = out_channels + 2` marks such a U-Net.

Self-conditioning (Chen et al., "Analog Bits", https://arxiv.org/abs/2208.04202): with
`self_conditioning=True` the U-Net also reads its own previous estimate of the clean image as three
more input channels, so a sampler step can keep (or correct) what earlier steps committed to: how
many objects, and where. In training half the batch gets the estimate of a first, gradient-free pass
and the other half zeros; in sampling each step gets the previous step's estimate (zeros at the
first). diffusers has no such option, so `unet_input` appends the channels, as it does the coordinates:
`in_channels = out_channels + 3` (+ 2 with coordinates) marks such a U-Net.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import get_timestep_embedding

from ..utils.resolution import check_resolution

IMAGE_CHANNELS = 3  # RGB pixels: what the U-Net denoises and predicts
COORDINATE_CHANNELS = 2  # x and y, appended to the input by `unet_input` when configured

# Width per level, one entry per level; each level after the first halves the resolution, so
# the lowest level is 8x8 at both sizes. Sized for 2 CPU cores: 3.3M parameters at 32 px,
# ~50 training images/s on one core in bf16 (twice the speed of (64, 128, 128) with attention at 16x16 and 8x8).
DEFAULT_BLOCK_OUT_CHANNELS = {32: (48, 96, 96), 64: (48, 96, 96, 144)}


def unet_config(
    resolution: int = 32,
    cross_attention_dim: int = 256,
    concept_dim: int = 512,
    block_out_channels: tuple[int, ...] | None = None,
    layers_per_block: int = 1,
    attention_levels: tuple[bool, ...] | None = None,
    attention_head_dim: int = 16,
    norm_num_groups: int = 16,
    coordinate_channels: bool = False,
    self_conditioning: bool = False,
) -> dict:
    """The config dict of a small pixel-space `UNet2DConditionModel`.

    Args:
        resolution: image side, a positive multiple of 2**(levels - 1) (`DEFAULT_BLOCK_OUT_CHANNELS` has widths for 32
            and 64; pass `block_out_channels` for another side).
        cross_attention_dim: width of the text tower's token states (`hidden_size`).
        concept_dim: size of the pooled concept fed to the class embedding (512).
        block_out_channels: width per level; default `DEFAULT_BLOCK_OUT_CHANNELS[resolution]`.
        layers_per_block: ResNet (+ attention) layers per down level (up levels get one more).
        attention_levels: which levels have (self + cross) attention blocks; default: the lowest
            resolution only (8x8). Attention at 16x16 halves CPU training speed; the mid block
            (also 8x8) always has attention.
        attention_head_dim: channels per attention head.
        norm_num_groups: GroupNorm groups; must divide every width.
        coordinate_channels: take the pixel coordinates as two extra input channels (see the module docstring).
        self_conditioning: take the previous clean-image estimate as three more input channels (module docstring).
    """
    if block_out_channels is None and resolution not in DEFAULT_BLOCK_OUT_CHANNELS:
        raise ValueError(f"No default block_out_channels for resolution {resolution!r} (defaults: {sorted(DEFAULT_BLOCK_OUT_CHANNELS)}); pass block_out_channels.")
    widths = tuple(block_out_channels or DEFAULT_BLOCK_OUT_CHANNELS[resolution])
    levels = tuple(attention_levels) if attention_levels is not None else (False,) * (len(widths) - 1) + (True,)
    if len(levels) != len(widths):
        raise ValueError(f"attention_levels has {len(levels)} entries but block_out_channels has {len(widths)}.")
    check_resolution(resolution, 2 ** (len(widths) - 1), "resolution", f" for {len(widths)} levels")
    for width in widths:
        if width % norm_num_groups or width % attention_head_dim:
            raise ValueError(f"every width in {widths} must be divisible by norm_num_groups ({norm_num_groups}) and attention_head_dim ({attention_head_dim}).")
    return dict(
        sample_size=resolution,
        in_channels=IMAGE_CHANNELS + (COORDINATE_CHANNELS if coordinate_channels else 0) + (IMAGE_CHANNELS if self_conditioning else 0),
        out_channels=IMAGE_CHANNELS,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in levels),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(levels)),
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=widths,
        layers_per_block=layers_per_block,
        norm_num_groups=norm_num_groups,
        cross_attention_dim=cross_attention_dim,
        # diffusers' historical naming: `attention_head_dim` is read as the number of heads.
        attention_head_dim=tuple(w // attention_head_dim for w in widths),
        class_embed_type="projection",
        projection_class_embeddings_input_dim=concept_dim,
    )


def build_unet(**kwargs) -> UNet2DConditionModel:
    """`UNet2DConditionModel(**unet_config(**kwargs))`."""
    return UNet2DConditionModel(**unet_config(**kwargs))


def coordinate_grid(batch_size: int, height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """(B, 2, H, W): x then y of each pixel centre, from -1 (left / top) to 1 (right / bottom)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, height, device=device, dtype=dtype), torch.linspace(-1, 1, width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([x, y]).expand(batch_size, -1, -1, -1)


def input_channels(unet: UNet2DConditionModel) -> tuple[bool, bool]:
    """(coordinate channels, self-conditioning channels): what the U-Net reads beside the noisy image, told by its
    channel counts (`in_channels - out_channels`: 0, 2 coordinates, `out_channels` self-conditioning, or both)."""
    out = unet.config.out_channels
    layouts = {0: (False, False), COORDINATE_CHANNELS: (True, False), out: (False, True), out + COORDINATE_CHANNELS: (True, True)}
    extra = unet.config.in_channels - out
    if extra not in layouts:
        raise ValueError(f"U-Net has in_channels {unet.config.in_channels} and out_channels {out}; expected equal, or {COORDINATE_CHANNELS} more "
                         f"inputs (coordinate channels), {out} more (self-conditioning) or {out + COORDINATE_CHANNELS} more (both).")
    return layouts[extra]


def is_self_conditioned(unet: UNet2DConditionModel) -> bool:
    """Whether the U-Net reads its previous clean-image estimate (see the module docstring)."""
    return input_channels(unet)[1]


def unet_input(unet: UNet2DConditionModel, sample: torch.Tensor, self_condition: torch.Tensor | None = None) -> torch.Tensor:
    """What the U-Net reads for a noisy image (B, 3, H, W): the image, plus the coordinate channels and the
    self-conditioning channels (`self_condition`, the previous clean-image estimate; zeros when None) when the U-Net
    was built with them."""
    coordinates, self_conditioned = input_channels(unet)
    parts = [sample]
    b, _, h, w = sample.shape
    if coordinates:
        parts.append(coordinate_grid(b, h, w, sample.device, sample.dtype))
    if self_conditioned:
        parts.append(torch.zeros_like(sample) if self_condition is None else self_condition.to(sample.dtype))
    elif self_condition is not None:
        raise ValueError("`self_condition` was given, but this U-Net was not built with self-conditioning channels.")
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def x0_and_eps(model_output: torch.Tensor, sample: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, prediction_type: str):
    """Clean image and noise implied by a U-Net output for a noisy `sample` at noise level (alpha, sigma) =
    (sqrt(alpha_bar), sqrt(1 - alpha_bar)), broadcastable to the sample. Written out because diffusers keeps these
    conversions inside each scheduler's `step`, for one timestep at a time."""
    if prediction_type == "v_prediction":
        return alpha * sample - sigma * model_output, sigma * sample + alpha * model_output
    if prediction_type == "epsilon":
        return (sample - sigma * model_output) / alpha, model_output
    if prediction_type == "sample":
        return model_output, (sample - alpha * model_output) / sigma
    raise ValueError(f"Unknown prediction_type {prediction_type!r}; expected epsilon, v_prediction or sample.")


def clean_estimate(scheduler, sample: torch.Tensor, model_output: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The clean image (B, 3, H, W) a model output implies for a (scaled) noisy sample at `timesteps` (a scalar or
    (B,)), by the scheduler's `prediction_type` and `alphas_cumprod`, clipped to [-1, 1]: what a self-conditioned
    U-Net reads at the next step."""
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "sample":
        return model_output.clamp(-1, 1)
    index = torch.as_tensor(timesteps, device=sample.device).round().long().clamp(0, len(scheduler.alphas_cumprod) - 1)
    alpha_bar = scheduler.alphas_cumprod.to(sample.device)[index].float().reshape(-1, 1, 1, 1)
    alpha, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        alpha = alpha.clamp(min=1e-4)  # the noisiest step divides by alpha
    x0, _ = x0_and_eps(model_output.float(), sample.float(), alpha, sigma, prediction_type)
    return x0.clamp(-1, 1).to(sample.dtype)


def downsample_factor(unet: UNet2DConditionModel) -> int:
    """Height and width must be multiples of this (one halving per level after the first)."""
    return 2 ** (len(unet.config.block_out_channels) - 1)


def guidance_scale_embedding(guidance_scale: torch.Tensor, embedding_dim: int) -> torch.Tensor:
    """(B, embedding_dim) sinusoidal embedding of classifier-free guidance scales (B,), the `timestep_cond` of a
    guidance-distilled U-Net. It embeds w = scale - 1 (so "no guidance" is w = 0), exactly as diffusers'
    `LatentConsistencyModelPipeline.get_guidance_scale_embedding` does (w * 1000, sin then cos)."""
    w = (guidance_scale.float() - 1.0) * 1000.0
    return get_timestep_embedding(w, embedding_dim, flip_sin_to_cos=False, downscale_freq_shift=1)
