"""Image <-> 512-d code: a convolutional encoder, a transposed-convolution decoder, and the auto-encoder holding both.

- [`ConceptImageEncoder`]: image (B, 3, S, S) in [-1, 1] -> code (B, code_dim), unit norm by default. Residual
  GroupNorm/SiLU stages with stride-2 down-sampling, then the final feature map is flattened (not pooled: a
  reconstruction needs to know *where* things are) and projected to the code.
- [`ConceptDecoder`]: code (B, code_dim) [+ noise (B, noise_dim)] -> image (B, 3, S, S) in [-1, 1]. A linear projection
  to a small feature map, then ConvTranspose2d up-sampling blocks, a 3x3 conv to RGB and tanh. It takes *any*
  `code_dim`-vector, so it decodes the auto-encoder's codes as well as concept codes from a text tower.
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
from diffusers.models.resnet import ResnetBlock2D
from diffusers.utils import BaseOutput
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..concept.safe_loading import check_pretrained_folder

SUPPORTED_IMAGE_SIZES = (32, 64)


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


@dataclass
class ConceptDecoderOutput(BaseOutput):
    """Output of [`ConceptDecoder.forward`].

    Args:
        sample (`torch.Tensor` of shape `(batch_size, out_channels, image_size, image_size)`): the image, in [-1, 1].
    """

    sample: torch.Tensor


CODE_CONDITIONINGS = ("input", "scale_shift")  # see ConceptDecoder's `code_conditioning`


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


def _check_image_size(image_size: int) -> None:
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(f"image_size={image_size} is not supported; supported sizes are {SUPPORTED_IMAGE_SIZES}.")


def _check_widths(name: str, widths, norm_num_groups: int, image_size: int) -> None:
    if len(widths) < 1:
        raise ValueError(f"{name} must name at least one width.")
    if image_size % 2 ** (len(widths) - 1) != 0:
        raise ValueError(f"{name} has {len(widths)} levels: too many halvings for image_size={image_size}.")
    for width in widths:
        if width % norm_num_groups != 0:
            raise ValueError(f"norm_num_groups ({norm_num_groups}) must divide every width in {name} {tuple(widths)}.")


class ResnetBlock(ResnetBlock2D):
    """diffusers' pre-activation residual block (GroupNorm -> SiLU -> Conv3x3, twice, 1x1 shortcut when
    widths differ). Without `cond_channels` it has no embedding input and fits in `nn.Sequential`; with it, a
    (B, cond_channels) vector scales and shifts its second GroupNorm, the way a diffusers U-Net block reads
    its time embedding (`time_embedding_norm="scale_shift"`)."""

    def __init__(self, in_channels: int, out_channels: int, norm_num_groups: int, cond_channels: int | None = None):
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, temb_channels=cond_channels, groups=norm_num_groups, eps=1e-5,
            time_embedding_norm="scale_shift" if cond_channels else "default",
        )

    def forward(self, hidden_states: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(hidden_states, cond)  # (B, out_channels, H, W)


class SafeLoadingMixin:
    """`from_pretrained` after checking a local folder (`hf_textimg.concept.safe_loading`): its config must be this
    class's (`_class_name`) and its weights complete safetensors; pickle weights are refused, never unpickled."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        check_pretrained_folder(pretrained_model_name_or_path, cls.__name__, "_class_name", (cls.__name__,), kwargs.get("subfolder") or "")
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)


class ConceptImageEncoder(SafeLoadingMixin, ModelMixin, ConfigMixin):
    r"""Image in [-1, 1] -> a `code_dim`-d code.

    Args:
        image_size (`int`, defaults to 32): input side in pixels; one of `SUPPORTED_IMAGE_SIZES` (32, 64).
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
        _check_image_size(image_size)
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
                f"pixel_values must have shape (B, {channels}, {size}, {size}) for this encoder "
                f"(supported image sizes are {SUPPORTED_IMAGE_SIZES}), got {tuple(pixel_values.shape)}."
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


class ConceptDecoder(SafeLoadingMixin, ModelMixin, ConfigMixin):
    r"""A `code_dim`-d code (and optional noise) -> image in [-1, 1].

    Args:
        image_size (`int`, defaults to 32): output side in pixels; one of `SUPPORTED_IMAGE_SIZES` (32, 64).
        out_channels (`int`, defaults to 3): image channels.
        code_dim (`int`, defaults to 512): size of the code it decodes.
        noise_dim (`int`, defaults to 0): size of an extra standard-normal input concatenated to the code, so one
            code can give varied images (e.g. where an object goes when the caption does not say). 0: the output is a
            deterministic function of the code.
        block_out_channels (`tuple[int]`, defaults to `(128, 64, 32, 16)`): width per level, from the projected
            feature map up; each level after the first doubles the resolution with a ConvTranspose2d, so the
            projection is `image_size / 2**(len - 1)` px on a side (4x4 for 32 px with 4 levels).
        layers_per_block (`int`, defaults to 1): residual blocks per level, after its up-sampling.
        norm_num_groups (`int`, defaults to 8): GroupNorm groups; must divide every width.
        code_conditioning (`str`, defaults to `"input"`): where the code (and noise) enters. `"input"`: only the
            projection to the first feature map. `"scale_shift"`: also every residual block, which scales and
            shifts its features by a linear map of it (as a diffusers U-Net block reads its time embedding), so
            the code reaches the high-resolution levels directly instead of only through the 4x4 map.
    """

    @register_to_config
    def __init__(
        self,
        image_size: int = 32,
        out_channels: int = 3,
        code_dim: int = 512,
        noise_dim: int = 0,
        block_out_channels: tuple[int, ...] = (128, 64, 32, 16),
        layers_per_block: int = 1,
        norm_num_groups: int = 8,
        code_conditioning: str = "input",
    ):
        super().__init__()
        _check_image_size(image_size)
        if code_conditioning not in CODE_CONDITIONINGS:
            raise ValueError(f"code_conditioning must be one of {CODE_CONDITIONINGS}, got {code_conditioning!r}.")
        _check_widths("block_out_channels", block_out_channels, norm_num_groups, image_size)
        if noise_dim < 0:
            raise ValueError(f"noise_dim must be >= 0, got {noise_dim}.")
        widths = list(block_out_channels)
        self.base_size = image_size // 2 ** (len(widths) - 1)
        self.proj_in = nn.Linear(code_dim + noise_dim, widths[0] * self.base_size**2)
        self.up_blocks = nn.ModuleList()
        cond_channels = code_dim + noise_dim if code_conditioning == "scale_shift" else None  # what the blocks read
        for level, width in enumerate(widths):
            in_width = widths[max(level - 1, 0)]
            blocks = []
            if level > 0:  # kernel 4, stride 2, padding 1: exactly doubles the side
                blocks += [nn.ConvTranspose2d(in_width, width, 4, stride=2, padding=1), nn.GroupNorm(norm_num_groups, width), nn.SiLU()]
            elif layers_per_block == 0:
                blocks += [nn.GroupNorm(norm_num_groups, width), nn.SiLU()]
            blocks += [ResnetBlock(width, width, norm_num_groups, cond_channels) for _ in range(layers_per_block)]
            self.up_blocks.append(nn.Sequential(*blocks))
        self.norm_out = nn.GroupNorm(norm_num_groups, widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    def forward(
        self, code: torch.Tensor, noise: torch.Tensor | None = None, return_dict: bool = True
    ) -> ConceptDecoderOutput | tuple:
        """`code` (B, code_dim); `noise` (B, noise_dim) or None (= zeros, the decoder's "typical" image) -> image
        (B, out_channels, image_size, image_size) in [-1, 1], as the `sample` of a [`ConceptDecoderOutput`] (or a
        1-tuple with `return_dict=False`)."""
        if code.ndim != 2 or code.shape[1] != self.config.code_dim:
            raise ValueError(f"code must have shape (B, {self.config.code_dim}), got {tuple(code.shape)}.")
        noise_dim = self.config.noise_dim
        if noise is not None and noise_dim == 0:
            raise ValueError("This decoder was built with noise_dim=0 and takes no noise; pass noise=None.")
        if noise_dim > 0:
            if noise is None:
                noise = code.new_zeros(code.shape[0], noise_dim)
            elif tuple(noise.shape) != (code.shape[0], noise_dim):
                raise ValueError(f"noise must have shape ({code.shape[0]}, {noise_dim}), got {tuple(noise.shape)}.")
            code = torch.cat([code, noise.to(code.dtype)], dim=1)  # (B, code_dim + noise_dim)
        hidden_states = self.proj_in(code).unflatten(1, (-1, self.base_size, self.base_size))  # (B, C0, b, b)
        cond = code if self.config.code_conditioning == "scale_shift" else None
        for block in self.up_blocks:
            for layer in block:  # (B, C_i, b * 2**i, b * 2**i) after level i
                hidden_states = layer(hidden_states, cond) if isinstance(layer, ResnetBlock) else layer(hidden_states)
        sample = torch.tanh(self.conv_out(F.silu(self.norm_out(hidden_states))))  # (B, out_channels, S, S)
        if not return_dict:
            return (sample,)
        return ConceptDecoderOutput(sample=sample)

    def decode(self, code: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The image tensor `forward` returns as `sample`."""
        return self(code, noise).sample


class ConceptAutoencoder(SafeLoadingMixin, ModelMixin, ConfigMixin):
    r"""[`ConceptImageEncoder`] + [`ConceptDecoder`] sharing `image_size` and `code_dim`.

    Args:
        image_size (`int`, defaults to 32): one of `SUPPORTED_IMAGE_SIZES` (32, 64).
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
    "SUPPORTED_IMAGE_SIZES",
    "ConceptAutoencoder",
    "ConceptAutoencoderOutput",
    "ConceptDecoder",
    "ConceptDecoderOutput",
    "ConceptImageEncoder",
    "ConceptImageEncoderOutput",
    "reconstruction_loss",
]
