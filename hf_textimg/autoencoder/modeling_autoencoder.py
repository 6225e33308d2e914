"""Image <-> 512-d code: a convolutional encoder, a transposed-convolution decoder, and the auto-encoder holding both.

- [`ConceptImageEncoder`]: image (B, 3, S, S) in [-1, 1] -> code (B, code_dim), unit norm by default. Residual
  GroupNorm/SiLU stages with stride-2 down-sampling, then the final feature map is flattened (not pooled: a
  reconstruction needs to know *where* things are) and projected to the code.
- [`ConceptDecoder`] (its own module, `hf_textimg.decoder`): code (B, code_dim) [+ noise (B, noise_dim)] -> image
  (B, 3, S, S) in [-1, 1]. A linear projection to a small feature map, then ConvTranspose2d up-sampling blocks, a 3x3
  conv to RGB and tanh. It takes *any* `code_dim`-vector, so it decodes the auto-encoder's codes as well as concept
  codes from a text tower.
- [`ConceptAutoencoder`]: `encoder` + `decoder`, with `encode`, `decode` and `forward`.
- `reconstruction_loss`: the pixel loss both training scripts use (MSE, optionally + L1).

All three are diffusers models (`ModelMixin`, `ConfigMixin`): `save_pretrained` writes `config.json` and
`diffusion_pytorch_model.safetensors`, `from_pretrained` reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..decoder.modeling_decoder import ConceptDecoder, ConceptDecoderOutput, ResnetBlock, _check_widths
from ..utils.safe_loading import SafeLoadingMixin


@dataclass
class ConceptAutoencoderOutput(BaseOutput):
    """Output of [`ConceptAutoencoder.forward`].

    Args:
        sample (`torch.Tensor` of shape `(batch_size, 3, image_size, image_size)`): the reconstruction, in [-1, 1].
        code (`torch.Tensor` of shape `(batch_size, code_dim)`): the encoder's code (unit norm when
            `normalize_code=True`).
    """

    sample: torch.Tensor
    code: torch.Tensor


@dataclass
class ConceptImageEncoderOutput(BaseOutput):
    """Output of [`ConceptImageEncoder.forward`].

    Args:
        code (`torch.Tensor` of shape `(batch_size, code_dim)`): the image's code (unit norm when `normalize_code=True`).
    """

    code: torch.Tensor


def reconstruction_loss(
    sample: torch.Tensor,
    target: torch.Tensor,
    l1_weight: float = 0.0,
    reduce: bool = True,
    foreground_weight: float = 0.0,
    shift_tolerance: int = 0,
) -> torch.Tensor:
    """Pixel loss: MSE + l1_weight * L1, averaged over pixels; `reduce=False` keeps one value per image (B,).

    `foreground_weight` w > 0 weighs pixels that are not white in the target (1 + w) times: small
    objects on a white canvas cover a few percent of the pixels, so a plain mean learns the
    background long before the objects' colours and shapes.

    `shift_tolerance` t > 0: each image's loss is the smallest over the target moved by up to t pixels
    each way (the canvas edge filled with white), so a drawing that is right but t pixels off costs nothing.
    Shapes jitters every object by up to 1 px (2 at 64 px) around its cell centre, which no caption says:
    with an exact loss a one-shot decoder draws the average of those positions, a blur that rounds a
    square's corners into a circle; with t = the jitter it draws one sharp object.
    """
    if shift_tolerance < 0:
        raise ValueError(f"shift_tolerance must be >= 0, got {shift_tolerance}.")
    if shift_tolerance:
        t, side = shift_tolerance, target.shape[-1]
        padded = F.pad(target, (t, t, t, t), value=1.0)  # white, the canvas colour in [-1, 1]
        losses = [
            reconstruction_loss(sample, padded[..., dy : dy + side, dx : dx + side], l1_weight, False, foreground_weight)
            for dy in range(2 * t + 1)
            for dx in range(2 * t + 1)
        ]
        loss = torch.stack(losses).min(dim=0).values  # (B,): only the best-aligned shift gets a gradient
        return loss.mean() if reduce else loss
    weight = 1.0
    if foreground_weight:
        weight = 1.0 + foreground_weight * (target < 0.95).any(dim=1, keepdim=True).to(target.dtype)  # (B, 1, H, W)
    error = (sample - target).pow(2)
    if l1_weight:
        error = error + l1_weight * (sample - target).abs()
    loss = (weight * error).mean(dim=(1, 2, 3))
    return loss.mean() if reduce else loss


class ConceptImageEncoder(SafeLoadingMixin, ModelMixin, ConfigMixin):
    r"""Image in [-1, 1] -> a `code_dim`-d code.

    Args:
        image_size (`int`, defaults to 32): input side in pixels; a multiple of `2**(len(block_out_channels) - 1)`.
        in_channels (`int`, defaults to 3): image channels.
        code_dim (`int`, defaults to 512): size of the code.
        block_out_channels (`tuple[int]`, defaults to `(32, 64, 128, 128)`): width per level, from full resolution
            down; each level after the first halves the resolution, so 4 levels end at 4x4 for 32 px (8x8 for 64 px).
        layers_per_block (`int`, defaults to 1): residual blocks per level.
        norm_num_groups (`int`, defaults to 8): GroupNorm groups; must divide every width.
        normalize_code (`bool`, defaults to `True`): L2-normalise the code, like the concept encoders' codes.
    """

    @register_to_config
    def __init__(
        self,
        image_size: int = 32,
        in_channels: int = 3,
        code_dim: int = 512,
        block_out_channels: tuple[int, ...] = (32, 64, 128, 128),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        normalize_code: bool = True,
    ):
        super().__init__()
        _check_widths("block_out_channels", block_out_channels, norm_num_groups, image_size)
        widths = list(block_out_channels)
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        for level, width in enumerate(widths):
            in_width = widths[max(level - 1, 0)]
            blocks = [nn.Conv2d(in_width, in_width, 3, stride=2, padding=1)] if level > 0 else []
            blocks += [ResnetBlock(in_width if i == 0 else width, width, norm_num_groups) for i in range(layers_per_block)]
            self.down_blocks.append(nn.Sequential(*blocks))
        self.norm_out = nn.GroupNorm(norm_num_groups, widths[-1])
        side = image_size // 2 ** (len(widths) - 1)
        self.proj_out = nn.Linear(widths[-1] * side * side, code_dim)

    def forward(self, pixel_values: torch.Tensor, return_dict: bool = True) -> ConceptImageEncoderOutput | tuple:
        """`pixel_values` (B, in_channels, image_size, image_size) in [-1, 1] -> code (B, code_dim), in a
        [`ConceptImageEncoderOutput`] (or a 1-tuple with `return_dict=False`)."""
        size, channels = self.config.image_size, self.config.in_channels
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (channels, size, size):
            raise ValueError(
                f"pixel_values must have shape (B, {channels}, {size}, {size}) for this encoder (config.image_size={size}), "
                f"got {tuple(pixel_values.shape)}."
            )
        hidden_states = self.conv_in(pixel_values)  # (B, C0, S, S)
        for block in self.down_blocks:
            hidden_states = block(hidden_states)  # (B, C_i, S / 2**i, S / 2**i)
        hidden_states = F.silu(self.norm_out(hidden_states))
        code = self.proj_out(hidden_states.flatten(1))  # (B, code_dim)
        code = F.normalize(code, dim=-1) if self.config.normalize_code else code
        if not return_dict:
            return (code,)
        return ConceptImageEncoderOutput(code=code)

    def get_image_features(self, pixel_values: torch.Tensor) -> BaseModelOutputWithPooling:
        """The code as `pooler_output`: the output of `ConceptVisionModel.get_image_features`, so either model can be
        the frozen image encoder of decoder training."""
        return BaseModelOutputWithPooling(pooler_output=self(pixel_values).code)


class ConceptAutoencoder(SafeLoadingMixin, ModelMixin, ConfigMixin):
    r"""[`ConceptImageEncoder`] + [`ConceptDecoder`] sharing `image_size` and `code_dim`.

    Args:
        image_size (`int`, defaults to 32): image side; a multiple of what both halves' levels halve it by.
        code_dim (`int`, defaults to 512): size of the code between them.
        encoder_block_out_channels (`tuple[int]`, defaults to `(32, 64, 128, 128)`): see [`ConceptImageEncoder`].
        decoder_block_out_channels (`tuple[int]`, defaults to `(128, 64, 32, 16)`): see [`ConceptDecoder`].
        layers_per_block (`int`, defaults to 1): residual blocks per level, in both halves.
        norm_num_groups (`int`, defaults to 8): GroupNorm groups, in both halves.
        normalize_code (`bool`, defaults to `True`): unit-norm codes, like the concept encoders'.

    The halves are full models: `autoencoder.decoder.save_pretrained(path)` saves a decoder alone.
    """

    @register_to_config
    def __init__(
        self,
        image_size: int = 32,
        code_dim: int = 512,
        encoder_block_out_channels: tuple[int, ...] = (32, 64, 128, 128),
        decoder_block_out_channels: tuple[int, ...] = (128, 64, 32, 16),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        normalize_code: bool = True,
    ):
        super().__init__()
        self.encoder = ConceptImageEncoder(
            image_size=image_size,
            code_dim=code_dim,
            block_out_channels=encoder_block_out_channels,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            normalize_code=normalize_code,
        )
        self.decoder = ConceptDecoder(
            image_size=image_size,
            code_dim=code_dim,
            block_out_channels=decoder_block_out_channels,
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
        )

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> (B, code_dim)."""
        return self.encoder(pixel_values).code

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(B, code_dim) -> (B, 3, S, S) in [-1, 1]."""
        return self.decoder(code).sample

    def forward(self, pixel_values: torch.Tensor, return_dict: bool = True) -> ConceptAutoencoderOutput | tuple:
        code = self.encode(pixel_values)
        sample = self.decode(code)
        if not return_dict:
            return (sample, code)
        return ConceptAutoencoderOutput(sample=sample, code=code)


__all__ = [
    "ConceptAutoencoder",
    "ConceptAutoencoderOutput",
    "ConceptDecoder",
    "ConceptDecoderOutput",
    "ConceptImageEncoder",
    "ConceptImageEncoderOutput",
    "reconstruction_loss",
]
