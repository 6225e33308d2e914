"""The concept decoder: a `code_dim`-d code (+ optional noise) -> image in [-1, 1], one forward pass.

It decodes any code of its size: a concept code from a text tower (the one-shot `DecoderPipeline`), or an image
code from `ConceptImageEncoder` (the auto-encoder, `hf_textimg.autoencoder`, pairs the two). The residual block and
the size checks the auto-encoder's encoder shares live here with it.

A diffusers model (`ModelMixin`, `ConfigMixin`): `save_pretrained` writes `config.json` and
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

from ..utils.resolution import check_resolution
from ..utils.safe_loading import SafeLoadingMixin

CODE_CONDITIONINGS = ("input", "scale_shift")  # see ConceptDecoder's `code_conditioning`
CLASS_CONDITIONINGS = ("code", "scale_shift")  # see ConceptDecoder's `class_conditioning`


@dataclass
class ConceptDecoderOutput(BaseOutput):
    """Output of [`ConceptDecoder.forward`].

    Args:
        sample (`torch.Tensor` of shape `(batch_size, out_channels, image_size, image_size)`): the image, in [-1, 1].
    """

    sample: torch.Tensor


def _check_widths(name: str, widths, norm_num_groups: int, image_size: int) -> None:
    """`widths` (one per level, each after the first halving or doubling the side) fit `image_size` and the groups."""
    if len(widths) < 1:
        raise ValueError(f"{name} must name at least one width.")
    check_resolution(image_size, 2 ** (len(widths) - 1), "image_size", f" for {name} of {len(widths)} levels")
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


class ConceptDecoder(SafeLoadingMixin, ModelMixin, ConfigMixin):
    r"""A `code_dim`-d code (and optional noise) -> image in [-1, 1].

    Args:
        image_size (`int`, defaults to 32): output side in pixels; a multiple of `2**(len(block_out_channels) - 1)`.
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
        num_class_embeds (`int`, *optional*): with a number, the decoder also reads a class label per image (diffusers'
            `UNet2DModel` name): a learned `class_embed_dim`-d vector, concatenated to the code wherever the code
            enters. Label -1 (or `class_labels=None`) is "no class", a learned vector of its own. Used to give a style
            (an artist, a source) its own input apart from the caption's content, so either can change alone.
        class_embed_dim (`int`, defaults to 64): size of the class vectors (with `num_class_embeds`).
        class_conditioning (`str`, defaults to `"code"`): where the class vector enters. `"code"`: wherever the code
            does. `"scale_shift"`: only the residual blocks' scale and shift, never the first feature map, where the
            layout is laid down; with `code_conditioning="input"` the code then sets the layout alone and the class
            only modulates features channel by channel (as AdaIN / StyleGAN give a style), so it cannot pick out
            one memorised image.
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
        num_class_embeds: int | None = None,
        class_embed_dim: int = 64,
        class_conditioning: str = "code",
    ):
        super().__init__()
        if code_conditioning not in CODE_CONDITIONINGS:
            raise ValueError(f"code_conditioning must be one of {CODE_CONDITIONINGS}, got {code_conditioning!r}.")
        _check_widths("block_out_channels", block_out_channels, norm_num_groups, image_size)
        if noise_dim < 0:
            raise ValueError(f"noise_dim must be >= 0, got {noise_dim}.")
        if class_conditioning not in CLASS_CONDITIONINGS:
            raise ValueError(f"class_conditioning must be one of {CLASS_CONDITIONINGS}, got {class_conditioning!r}.")
        if num_class_embeds is not None and (num_class_embeds < 1 or class_embed_dim < 1):
            raise ValueError(f"num_class_embeds and class_embed_dim must be >= 1, got {num_class_embeds} and {class_embed_dim}.")
        widths = list(block_out_channels)
        self.base_size = image_size // 2 ** (len(widths) - 1)
        class_dim = class_embed_dim if num_class_embeds else 0
        in_code = class_conditioning == "code"
        input_dim = code_dim + noise_dim + (class_dim if in_code else 0)  # what the projection reads: code [+ noise] [+ class vector]
        # the last row is "no class" (label -1), as DiT keeps a null class for dropped labels
        self.class_embedding = nn.Embedding(num_class_embeds + 1, class_embed_dim) if num_class_embeds else None
        if self.class_embedding is not None:  # unit-norm vectors on average, the scale of the unit-norm code beside them
            nn.init.normal_(self.class_embedding.weight, std=class_embed_dim**-0.5)
        self.proj_in = nn.Linear(input_dim, widths[0] * self.base_size**2)
        self.up_blocks = nn.ModuleList()
        # what the blocks read: code [+ noise] with scale_shift code conditioning, and the class vector where it goes
        code_in_blocks = code_conditioning == "scale_shift"
        class_in_blocks = not in_code or code_in_blocks
        cond_channels = (code_dim + noise_dim) * code_in_blocks + class_dim * class_in_blocks or None
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
        self, code: torch.Tensor, noise: torch.Tensor | None = None, class_labels: torch.Tensor | None = None, return_dict: bool = True
    ) -> ConceptDecoderOutput | tuple:
        """`code` (B, code_dim); `noise` (B, noise_dim) or None (= zeros, the decoder's "typical" image); `class_labels`
        (B,) integers in [-1, num_class_embeds) or None (= all -1, "no class"), only with `num_class_embeds` -> image
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
        classes = None  # (B, class_embed_dim) when the blocks alone read it
        if self.class_embedding is not None:
            classes = self.embed_classes(class_labels, code.shape[0], code.device).to(code.dtype)
            if self.config.class_conditioning == "code":  # the class goes wherever the code goes
                code, classes = torch.cat([code, classes], dim=1), None
        elif class_labels is not None:
            raise ValueError("This decoder was built without num_class_embeds and takes no class labels; pass class_labels=None.")
        hidden_states = self.proj_in(code).unflatten(1, (-1, self.base_size, self.base_size))  # (B, C0, b, b)
        parts = ([code] if self.config.code_conditioning == "scale_shift" else []) + ([classes] if classes is not None else [])
        cond = torch.cat(parts, dim=1) if parts else None  # what the blocks' scale/shift read
        for block in self.up_blocks:
            for layer in block:  # (B, C_i, b * 2**i, b * 2**i) after level i
                hidden_states = layer(hidden_states, cond) if isinstance(layer, ResnetBlock) else layer(hidden_states)
        sample = torch.tanh(self.conv_out(F.silu(self.norm_out(hidden_states))))  # (B, out_channels, S, S)
        if not return_dict:
            return (sample,)
        return ConceptDecoderOutput(sample=sample)

    def embed_classes(self, class_labels: torch.Tensor | None, batch_size: int, device) -> torch.Tensor:
        """(B, class_embed_dim) class vectors of `class_labels` (-1 or None: the "no class" row)."""
        num_classes = self.config.num_class_embeds
        if class_labels is None:
            class_labels = torch.full((batch_size,), -1, dtype=torch.long, device=device)
        if not isinstance(class_labels, torch.Tensor) or class_labels.shape != (batch_size,) or class_labels.is_floating_point():
            shape = tuple(class_labels.shape) if isinstance(class_labels, torch.Tensor) else type(class_labels).__name__
            raise ValueError(f"class_labels must be an integer tensor of shape ({batch_size},), one label per code; got {shape}.")
        if ((class_labels < -1) | (class_labels >= num_classes)).any():
            raise ValueError(f"class_labels must lie in [-1, {num_classes}) (-1: no class); got {class_labels.tolist()}.")
        rows = torch.where(class_labels < 0, num_classes, class_labels).to(device)  # -1 -> the "no class" row
        return self.class_embedding(rows)

    def decode(self, code: torch.Tensor, noise: torch.Tensor | None = None, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The image tensor `forward` returns as `sample`."""
        return self(code, noise, class_labels).sample


__all__ = ["CODE_CONDITIONINGS", "ConceptDecoder", "ConceptDecoderOutput", "ResnetBlock"]
