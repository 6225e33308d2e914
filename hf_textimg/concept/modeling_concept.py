"""Concept encoders: a caption and an image map to the same unit-norm `projection_dim`-d vector (CLIP-style).

- [`ConceptTextModel`]: token embeddings -> transformer or 1-D conv encoder -> masked-mean pooling -> projection
  head -> `text_embeds`. It carries its own projection so a pipeline needs only this model at inference, and it
  returns the token states (`last_hidden_state`) for a diffusion U-Net to cross-attend to.
- [`ConceptVisionModel`]: a small GroupNorm/SiLU CNN -> global average pooling -> projection -> `image_embeds`.
- [`ConceptModel`]: both towers plus a learnable, clamped temperature; `CLIPModel`'s public API.

Two ways to train the text tower:

1. Contrastive (CLIP): `loss = model(input_ids, attention_mask, pixel_values, return_loss=True).loss`, then after
   each optimizer step `model.clamp_logit_scale_()`. Under `torch.distributed` the loss gathers features from all
   processes (with gradients), so every process sees the global batch as negatives.
2. Regression ("simpler route"): freeze an image encoder and teach the text tower (built with `head_layers=2`, a
   Linear-GELU-Linear head) to predict its codes:

       model.vision_model.requires_grad_(False)
       with torch.no_grad():
           target = model.get_image_features(pixel_values).pooler_output
       loss = regression_loss(model.get_text_features(input_ids, attention_mask).pooler_output, target, kind="cosine")

This file imports its configuration relatively and nothing else from `hf_textimg`: `save_pretrained` copies it next
to the weights (with `losses.py`), so a checkpoint loads with `AutoModel.from_pretrained(path, trust_remote_code=True)`
without the package installed.
"""

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import transformers.initialization as init
from torch import nn
from transformers import PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .configuration_concept import ConceptConfig, ConceptTextConfig, ConceptVisionConfig
from .losses import contrastive_loss
from .safe_loading import check_pretrained_folder, describe_size_mismatch


# -------------------------------------------------------------------------------------------------------------------
# Outputs


@dataclass
class ConceptTextOutput(ModelOutput):
    """Output of [`ConceptTextModel`].

    `last_hidden_state` is zero at padded positions; a cross-attending consumer should still pass the attention
    mask so padded keys get no weight.
    """

    last_hidden_state: torch.FloatTensor | None = None  # (B, L, hidden_size), after the final LayerNorm
    pooler_output: torch.FloatTensor | None = None  # (B, hidden_size), mean over non-padded tokens
    text_embeds: torch.FloatTensor | None = None  # (B, projection_dim), unit norm
    hidden_states: tuple[torch.FloatTensor, ...] | None = None  # num_layers + 1 of (B, L, hidden_size)
    attentions: tuple[torch.FloatTensor, ...] | None = None  # num_layers of (B, num_heads, L, L); eager attention only


@dataclass
class ConceptVisionOutput(ModelOutput):
    """Output of [`ConceptVisionModel`]."""

    # h = w = image_size / 2**(num_stages - 1)
    last_hidden_state: torch.FloatTensor | None = None  # (B, C, h, w), the final feature map
    pooler_output: torch.FloatTensor | None = None  # (B, C), global average of the feature map
    image_embeds: torch.FloatTensor | None = None  # (B, projection_dim), unit norm
    hidden_states: tuple[torch.FloatTensor, ...] | None = None  # stem output, then each stage's (B, C_i, h_i, w_i)


@dataclass
class ConceptOutput(ModelOutput):
    """Output of [`ConceptModel`]. Logits are only set when both captions and images are given."""

    loss: torch.FloatTensor | None = None  # (), contrastive loss when return_loss=True
    logits_per_image: torch.FloatTensor | None = None  # (B_image, B_text), scaled cosine similarities
    logits_per_text: torch.FloatTensor | None = None  # (B_text, B_image)
    text_embeds: torch.FloatTensor | None = None  # (B_text, projection_dim), unit norm
    image_embeds: torch.FloatTensor | None = None  # (B_image, projection_dim), unit norm
    logit_scale: torch.FloatTensor | None = None  # (), the multiplier used, <= config.max_logit_scale
    text_model_output: ConceptTextOutput | None = None
    vision_model_output: ConceptVisionOutput | None = None

    def to_tuple(self) -> tuple[Any]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


# -------------------------------------------------------------------------------------------------------------------
# Text tower


class ConceptTextEmbeddings(nn.Module):
    def __init__(self, config: ConceptTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.LongTensor) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        if seq_len > self.position_embedding.num_embeddings:
            max_len = self.position_embedding.num_embeddings
            raise ValueError(f"input_ids has {seq_len} tokens but max_position_embeddings is {max_len}.")
        positions = torch.arange(seq_len, device=input_ids.device)
        return self.dropout(self.token_embedding(input_ids) + self.position_embedding(positions))  # (B, L, D)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out, the one implementation that returns its weights. Every transformers model defines
    its own (there is no shared one); this is CLIP's. query/key/value (B, heads, L, head_dim); attention_mask the
    additive (B, 1, L, L) mask `create_bidirectional_mask` makes for "eager"."""
    attn_weights = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, heads, L, L)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = F.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (B, L, heads, head_dim)
    return attn_output, attn_weights


class ConceptAttention(nn.Module):
    """Bidirectional multi-head self-attention, run by the implementation `config._attn_implementation` names
    through transformers' attention interface: "sdpa" (the default), "eager" (which also returns the weights for
    `output_attentions`), or any other registered one."""

    def __init__(self, config: ConceptTextConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_heads
        self.head_dim = config.hidden_size // config.num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = config.dropout
        self.is_causal = False  # read by the attention functions: every token sees the whole caption
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # hidden_states (B, L, D); attention_mask as `create_bidirectional_mask` made it for this implementation
        batch, seq_len, dim = hidden_states.shape
        qkv = self.qkv_proj(hidden_states).view(batch, seq_len, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, head_dim)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self, query, key, value, attention_mask, scaling=self.scaling,
            dropout=self.dropout if self.training else 0.0, **kwargs,
        )  # (B, L, heads, head_dim), (B, heads, L, L) or None
        return self.out_proj(attn_output.reshape(batch, seq_len, dim)), attn_weights  # (B, L, D)


class ConceptTextBlock(GradientCheckpointingLayer):
    """What both text encoders are made of: a block mapping token states (B, L, D) to (B, L, D). The text model
    records `hidden_states` at the output of each."""


class ConceptTextLayer(ConceptTextBlock):
    """Pre-LN transformer layer."""

    def __init__(self, config: ConceptTextConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = ConceptAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.GELU(),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, **kwargs: Unpack[TransformersKwargs]
    ) -> torch.Tensor:
        attn_output, _ = self.self_attn(self.norm1(hidden_states), attention_mask, **kwargs)
        hidden_states = hidden_states + self.dropout(attn_output)
        return hidden_states + self.dropout(self.mlp(self.norm2(hidden_states)))


class ConceptConvBlock(ConceptTextBlock):
    """Residual 1-D conv block over the sequence: LayerNorm -> Conv1d -> GELU -> Conv1d, plus the input.

    Padded positions are zeroed before each conv, so pad tokens never leak into real ones.
    """

    def __init__(self, config: ConceptTextConfig):
        super().__init__()
        k = config.conv_kernel_size
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.conv1 = nn.Conv1d(config.hidden_size, config.hidden_size, k, padding=k // 2)
        self.conv2 = nn.Conv1d(config.hidden_size, config.hidden_size, k, padding=k // 2)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        # hidden_states (B, L, D); token_mask (B, L, 1), 1 for real tokens; kwargs (output flags) are not used
        mask = token_mask.transpose(1, 2)  # (B, 1, L)
        h = (self.norm(hidden_states) * token_mask).transpose(1, 2)  # (B, D, L)
        h = self.conv2(self.act(self.conv1(h)) * mask)
        return hidden_states + self.dropout(h.transpose(1, 2))  # (B, L, D)


class ConceptProjectionHead(nn.Module):
    """Maps pooled token states to the concept space: a bias-free linear map (`head_layers=1`, as in CLIP) or a
    Linear-GELU-Linear MLP (`head_layers=2`, for regressing onto a frozen image encoder's codes)."""

    def __init__(self, config: ConceptTextConfig):
        super().__init__()
        if config.head_layers == 1:
            self.layers = nn.Sequential(nn.Linear(config.hidden_size, config.projection_dim, bias=False))
        else:
            self.layers = nn.Sequential(
                nn.Linear(config.hidden_size, config.head_hidden_size),
                nn.GELU(),
                nn.Linear(config.head_hidden_size, config.projection_dim),
            )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.layers(pooled)  # (B, projection_dim), not yet normalised


# -------------------------------------------------------------------------------------------------------------------
# Vision tower


class ConceptResBlock(GradientCheckpointingLayer):
    """Pre-activation residual block: GroupNorm -> SiLU -> Conv3x3, twice, plus a (1x1 if widths differ) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, norm_num_groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(norm_num_groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.act = nn.SiLU()
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(hidden_states)))
        h = self.conv2(self.act(self.norm2(h)))
        return self.shortcut(hidden_states) + h  # (B, out_channels, H, W)


class ConceptVisionStage(nn.Module):
    """Optional stride-2 downsampling conv, then `layers_per_stage` residual blocks."""

    def __init__(self, config: ConceptVisionConfig, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        self.downsample = nn.Conv2d(in_channels, in_channels, 3, stride=2, padding=1) if downsample else nn.Identity()
        self.blocks = nn.ModuleList(
            ConceptResBlock(in_channels if i == 0 else out_channels, out_channels, config.norm_num_groups)
            for i in range(config.layers_per_stage)
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.downsample(hidden_states)  # (B, C_in, H/2, W/2) when downsampling
        for block in self.blocks:
            hidden_states = block(hidden_states)
        return hidden_states  # (B, C_out, H', W')


# -------------------------------------------------------------------------------------------------------------------
# Models


class ConceptPreTrainedModel(PreTrainedModel):
    config_class = ConceptConfig
    base_model_prefix = "concept"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["ConceptTextLayer", "ConceptConvBlock", "ConceptResBlock"]
    # Attention runs through transformers' attention interface (see ConceptAttention): "sdpa" is the default,
    # "eager" returns the weights, and any function registered there (`_supports_attention_backend`) can run it.
    _supports_sdpa = True
    _supports_attention_backend = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, after checking a local folder (see `safe_loading.py`): it must hold a
        config of this model (a tower also loads its half of a `ConceptModel` folder) and complete safetensors
        weights. Pickle weights (`pytorch_model.bin`) are refused, never unpickled."""
        allowed = tuple(dict.fromkeys((cls.config_class.model_type, ConceptConfig.model_type)))
        check_pretrained_folder(pretrained_model_name_or_path, cls.__name__, "model_type", allowed, kwargs.get("subfolder", ""))
        kwargs.setdefault("use_safetensors", True)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except RuntimeError as error:  # transformers: "ignore_mismatched_sizes ... look at the above report"
            if "mismatched" not in str(error) or not os.path.isdir(str(pretrained_model_name_or_path)):
                raise
            config = cls.config_class.from_pretrained(pretrained_model_name_or_path, subfolder=kwargs.get("subfolder", ""))
            raise ValueError(describe_size_mismatch(pretrained_model_name_or_path, kwargs.get("subfolder", ""), cls, config)) from None

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """All initialisation: normal(0, initializer_range) for linear and embedding weights, Kaiming-normal for convs,
        zero biases, unit norms, and the temperature from `config.logit_scale_init_value`.

        Uses `transformers.initialization`, whose functions skip tensors already loaded from a checkpoint.
        """
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
        elif isinstance(module, ConceptModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LayerNorm, nn.GroupNorm)):
            if module.bias is not None:
                init.zeros_(module.bias)


class ConceptTextModel(ConceptPreTrainedModel):
    """Caption -> token states and a unit-norm concept vector.

    Pooling is the mean of the final token states over non-padded positions (`attention_mask`), not an EOS token:
    the encoder is bidirectional, so every token sees the whole caption, and the mean does not depend on where (or
    whether) the tokenizer puts an EOS. With `attention_mask=None` every position counts as a real token.
    """

    config_class = ConceptTextConfig
    base_model_prefix = "text_model"  # lets this model load the text half of a ConceptModel checkpoint
    main_input_name = "input_ids"
    input_modalities = ("text",)
    _input_embed_layer = "token_embedding"
    _keys_to_ignore_on_load_unexpected = [r"^vision_model\.", r"^logit_scale$"]
    # `capture_outputs` collects these with hooks: the input of the first block, then each block's output; and
    # the weights each attention returns.
    _can_record_outputs = {"hidden_states": ConceptTextBlock, "attentions": ConceptAttention}

    def __init__(self, config: ConceptTextConfig):
        super().__init__(config)
        self.embeddings = ConceptTextEmbeddings(config)
        layer_cls = ConceptTextLayer if config.encoder_type == "transformer" else ConceptConvBlock
        self.layers = nn.ModuleList(layer_cls(config) for _ in range(config.num_layers))
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.head = ConceptProjectionHead(config)
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ConceptTextOutput:
        """`input_ids` (B, L); `attention_mask` (B, L), 1 for real tokens and 0 for padding.

        `output_hidden_states=True` adds the embeddings and each block's output (before the final LayerNorm);
        `output_attentions=True` each layer's attention weights (eager attention only); `return_dict=False`
        returns a tuple (these three default to the config's values)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)

        hidden_states = self.embeddings(input_ids)  # (B, L, D)
        token_mask = attention_mask.to(hidden_states.dtype).unsqueeze(-1)  # (B, L, 1)
        if self.config.encoder_type == "transformer":
            # keys at padded positions get no weight, in the form the attention implementation reads
            layer_mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask)
        else:
            layer_mask = token_mask  # conv blocks zero the padded positions
        for layer in self.layers:
            hidden_states = layer(hidden_states, layer_mask, **kwargs)

        last_hidden_state = self.final_layer_norm(hidden_states) * token_mask  # (B, L, D), zero at padding
        pooled = last_hidden_state.sum(dim=1) / token_mask.sum(dim=1).clamp(min=1.0)  # (B, D)
        text_embeds = F.normalize(self.head(pooled), dim=-1)  # (B, projection_dim)
        return ConceptTextOutput(last_hidden_state=last_hidden_state, pooler_output=pooled, text_embeds=text_embeds)

    @can_return_tuple
    def get_text_features(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPooling | tuple:
        """`CLIPModel.get_text_features`' output: the concept `(B, projection_dim)` as `pooler_output`, here unit
        norm (CLIP's is not normalised), with the token states and, on request, hidden states and attentions."""
        outputs = self(input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
        return BaseModelOutputWithPooling(
            last_hidden_state=outputs.last_hidden_state,
            pooler_output=outputs.text_embeds,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class ConceptVisionModel(ConceptPreTrainedModel):
    """Image in [-1, 1] -> feature map and a unit-norm concept vector."""

    config_class = ConceptVisionConfig
    base_model_prefix = "vision_model"  # lets this model load the image half of a ConceptModel checkpoint
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _keys_to_ignore_on_load_unexpected = [r"^text_model\.", r"^logit_scale$"]
    # hidden_states: the stem's output (the first stage's input), then each stage's output
    _can_record_outputs = {"hidden_states": ConceptVisionStage}

    def __init__(self, config: ConceptVisionConfig):
        super().__init__(config)
        widths = config.stage_channels
        self.stem = nn.Conv2d(config.num_channels, config.base_channels, 3, padding=1)
        in_widths = [config.base_channels] + widths[:-1]
        self.stages = nn.ModuleList(
            ConceptVisionStage(config, c_in, c_out, downsample=i > 0)
            for i, (c_in, c_out) in enumerate(zip(in_widths, widths))
        )
        self.final_norm = nn.GroupNorm(config.norm_num_groups, widths[-1])
        self.act = nn.SiLU()
        self.projection = nn.Linear(widths[-1], config.projection_dim, bias=False)
        self.post_init()

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        size, channels = self.config.image_size, self.config.num_channels
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != (channels, size, size):
            raise ValueError(
                f"pixel_values must have shape (B, {channels}, {size}, {size}) for this model (config.image_size={size}), "
                f"got {tuple(pixel_values.shape)}."
            )

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> ConceptVisionOutput:
        """`pixel_values` (B, num_channels, image_size, image_size) in [-1, 1]. `output_hidden_states=True` adds
        the stem's and each stage's feature map; `return_dict=False` returns a tuple."""
        self._check_pixel_values(pixel_values)
        hidden_states = self.stem(pixel_values)  # (B, base_channels, H, W)
        for stage in self.stages:
            hidden_states = stage(hidden_states)  # (B, C_i, H / 2**i, W / 2**i)

        last_hidden_state = self.act(self.final_norm(hidden_states))  # (B, C, h, w)
        pooled = last_hidden_state.mean(dim=(2, 3))  # (B, C)
        image_embeds = F.normalize(self.projection(pooled), dim=-1)  # (B, projection_dim)
        return ConceptVisionOutput(last_hidden_state=last_hidden_state, pooler_output=pooled, image_embeds=image_embeds)

    @can_return_tuple
    def get_image_features(
        self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPooling | tuple:
        """`CLIPModel.get_image_features`' output: the concept `(B, projection_dim)` as `pooler_output`, here unit
        norm, with the final feature map `(B, C, h, w)` and, on request, the hidden states."""
        outputs = self(pixel_values, return_dict=True, **kwargs)
        return BaseModelOutputWithPooling(
            last_hidden_state=outputs.last_hidden_state, pooler_output=outputs.image_embeds, hidden_states=outputs.hidden_states
        )


class ConceptModel(ConceptPreTrainedModel):
    """The dual encoder: `text_model` and `vision_model` (each a full model that can be saved or used alone, e.g.
    `model.text_model.save_pretrained(path)`) and a learnable temperature `logit_scale` (log of the multiplier)."""

    config_class = ConceptConfig

    def __init__(self, config: ConceptConfig):
        super().__init__(config)
        self.text_model = ConceptTextModel._from_config(config.text_config)
        self.vision_model = ConceptVisionModel._from_config(config.vision_config)
        self.logit_scale = nn.Parameter(torch.empty(()))  # value set in _init_weights
        self.post_init()

    def get_logit_scale(self) -> torch.Tensor:
        """The multiplier on cosine similarities: `exp(logit_scale)` clamped to [1, max_logit_scale] (differentiable
        inside that range)."""
        return self.logit_scale.clamp(0.0, math.log(self.config.max_logit_scale)).exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the parameter itself in place; call after each optimizer step so it can never run away."""
        self.logit_scale.clamp_(0.0, math.log(self.config.max_logit_scale))

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_model.set_input_embeddings(value)

    @can_return_tuple
    def get_text_features(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPooling | tuple:
        """The text tower's [`ConceptTextModel.get_text_features`]: unit-norm concepts `(B, projection_dim)` as
        `pooler_output`."""
        return self.text_model.get_text_features(input_ids, attention_mask, return_dict=True, **kwargs)

    @can_return_tuple
    def get_image_features(
        self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPooling | tuple:
        """The image tower's [`ConceptVisionModel.get_image_features`]: unit-norm concepts `(B, projection_dim)` as
        `pooler_output`."""
        return self.vision_model.get_image_features(pixel_values, return_dict=True, **kwargs)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        return_loss: bool | None = None,
        gather_negatives: bool = True,
        negative_input_ids: torch.LongTensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ConceptOutput:
        """Encode captions and/or images; with both, return scaled similarities and (`return_loss=True`) the
        contrastive loss. `gather_negatives` is passed to [`contrastive_loss`] as `gather`: under
        `torch.distributed` every process must then call forward with `return_loss=True` in step.
        `negative_input_ids` (`(N, L)`, with `return_loss=True`): hard-negative captions, extra wrong answers for
        every image in the loss (NegCLIP); they change nothing else in the output. `output_hidden_states` /
        `output_attentions` reach the towers, whose outputs are `text_model_output` and `vision_model_output`."""
        if input_ids is None and pixel_values is None:
            raise ValueError("Pass input_ids, pixel_values or both.")
        if return_loss and (input_ids is None or pixel_values is None):
            raise ValueError("return_loss=True needs both input_ids and pixel_values.")
        if negative_input_ids is not None and not return_loss:
            raise ValueError("negative_input_ids only enter the contrastive loss; pass return_loss=True with them.")

        text_outputs = vision_outputs = text_embeds = image_embeds = None
        if input_ids is not None:
            text_outputs = self.text_model(input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
            text_embeds = text_outputs.text_embeds  # (B_text, P)
        if pixel_values is not None:
            vision_outputs = self.vision_model(pixel_values, return_dict=True, **kwargs)
            image_embeds = vision_outputs.image_embeds  # (B_image, P)

        logits_per_text = logits_per_image = logit_scale = loss = None
        if text_embeds is not None and image_embeds is not None:
            logit_scale = self.get_logit_scale()
            logits_per_text = logit_scale * text_embeds @ image_embeds.t()  # (B_text, B_image)
            logits_per_image = logits_per_text.t()
            if return_loss:
                negative_embeds = None
                if negative_input_ids is not None:
                    negative_embeds = self.text_model(negative_input_ids, attention_mask=negative_attention_mask, return_dict=True).text_embeds
                loss = contrastive_loss(text_embeds, image_embeds, logit_scale, gather=gather_negatives, negative_text_embeds=negative_embeds)

        return ConceptOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            logit_scale=logit_scale,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


# `save_pretrained` then writes `auto_map` and copies this file and the configuration beside the weights.
ConceptTextModel.register_for_auto_class("AutoModel")
ConceptVisionModel.register_for_auto_class("AutoModel")
ConceptModel.register_for_auto_class("AutoModel")

__all__ = [
    "ConceptModel",
    "ConceptOutput",
    "ConceptPreTrainedModel",
    "ConceptProjectionHead",
    "ConceptTextModel",
    "ConceptTextOutput",
    "ConceptVisionModel",
    "ConceptVisionOutput",
]
