"""Configurations for the concept encoders: a text tower and an image tower that map a caption and an image
to the same unit-norm vector (CLIP-style), and the dual model that holds both.

The configs follow `transformers.models.clip.configuration_clip` in transformers v5: fields are declared as
typed dataclass fields with defaults (so the constructor takes flat keyword arguments), `@strict` checks their
types, and unknown keyword arguments are passed on to `PreTrainedConfig`. Bad values raise `ValueError` from
`__post_init__` with the offending argument named.

This file must import nothing from `hf_textimg`: it is copied next to the weights by `save_pretrained` so the
checkpoint loads with `trust_remote_code=True` where the package is not installed.
"""

from huggingface_hub.dataclasses import strict
from transformers import PretrainedConfig


TEXT_ENCODER_TYPES = ("transformer", "conv")


@strict
class ConceptTextConfig(PretrainedConfig):
    r"""
    Configuration of [`ConceptTextModel`]: token + position embeddings, an encoder, masked-mean pooling and a
    projection head to the `projection_dim`-d concept space.

    Args:
        vocab_size (`int`, defaults to 4096): size of the token vocabulary.
        hidden_size (`int`, defaults to 256): width of the token states.
        num_layers (`int`, defaults to 4): number of encoder blocks (transformer layers or conv blocks).
        num_heads (`int`, defaults to 4): attention heads (transformer encoder only).
        intermediate_size (`int`, defaults to 1024): width of the MLP inside each transformer layer.
        max_position_embeddings (`int`, defaults to 64): longest token sequence the model accepts.
        encoder_type (`str`, defaults to `"transformer"`): `"transformer"` (bidirectional pre-LN self-attention)
            or `"conv"` (residual 1-D conv blocks over the sequence; cheaper, local context only).
        conv_kernel_size (`int`, defaults to 5): odd kernel size of the conv blocks (conv encoder only).
        dropout (`float`, defaults to 0.0): dropout on embeddings, attention probabilities and block outputs.
        layer_norm_eps (`float`, defaults to 1e-5): epsilon of the LayerNorms.
        projection_dim (`int`, defaults to 512): size of the concept vector (`text_embeds`).
        head_layers (`int`, defaults to 1): 1 = a linear projection (the contrastive route, as in CLIP);
            2 = a Linear-GELU-Linear head (the regression route, where the text tower learns to predict the codes
            of a frozen image encoder and a linear map is too weak).
        head_hidden_size (`int`, *optional*): hidden width of the 2-layer head; defaults to `hidden_size`.
        initializer_range (`float`, defaults to 0.02): std of the normal init of linear and embedding weights.
        pad_token_id, bos_token_id, eos_token_id (`int`): special token ids; keep them in sync with the tokenizer.
            Padding is read from `attention_mask`, never from `pad_token_id`.
    """

    model_type = "concept_text_model"
    base_config_key = "text_config"
    # Generic transformers utilities look for these names.
    attribute_map = {"num_hidden_layers": "num_layers", "num_attention_heads": "num_heads"}

    vocab_size: int = 4096
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 64
    encoder_type: str = "transformer"
    conv_kernel_size: int = 5
    dropout: float | int = 0.0
    layer_norm_eps: float = 1e-5
    projection_dim: int = 512
    head_layers: int = 1
    head_hidden_size: int | None = None
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2

    def __post_init__(self, **kwargs):
        if self.encoder_type not in TEXT_ENCODER_TYPES:
            raise ValueError(f"encoder_type must be one of {TEXT_ENCODER_TYPES}, got {self.encoder_type!r}.")
        if self.encoder_type == "transformer" and self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})."
            )
        if self.encoder_type == "conv" and self.conv_kernel_size % 2 != 1:
            raise ValueError(
                f"conv_kernel_size must be odd (to keep the sequence length), got {self.conv_kernel_size}."
            )
        if self.head_layers not in (1, 2):
            raise ValueError(f"head_layers must be 1 (linear projection) or 2 (MLP head), got {self.head_layers}.")
        if self.head_hidden_size is None:
            self.head_hidden_size = self.hidden_size
        super().__post_init__(**kwargs)


@strict
class ConceptVisionConfig(PretrainedConfig):
    r"""
    Configuration of [`ConceptVisionModel`]: a small CNN (conv stem, residual stages with GroupNorm and SiLU,
    stride-2 downsampling between stages), global average pooling and a linear projection.

    Args:
        image_size (`int`, defaults to 32): input resolution, at least `2**(num_stages - 1)` (global average pooling
            takes any feature-map size).
        num_channels (`int`, defaults to 3): input channels; pixel values are expected in [-1, 1].
        base_channels (`int`, defaults to 64): width of the stem and first stage.
        num_stages (`int`, defaults to 4): number of stages; each stage after the first halves the resolution,
            so the feature map is `image_size / 2**(num_stages - 1)` pixels on a side (4 for 32 px, 8 for 64 px).
        channel_multipliers (`list[int]`, *optional*): width of stage `i` is `base_channels * channel_multipliers[i]`;
            defaults to `[1, 2, 4, 4, ...]` (doubling, capped at 4).
        layers_per_stage (`int`, defaults to 2): residual blocks per stage.
        norm_num_groups (`int`, defaults to 32): GroupNorm groups; must divide every stage width. GroupNorm rather
            than BatchNorm so nothing depends on the per-device batch (and there are no running stats to sync).
        projection_dim (`int`, defaults to 512): size of the concept vector (`image_embeds`).
        initializer_range (`float`, defaults to 0.02): std of the normal init of the projection.
    """

    model_type = "concept_vision_model"
    base_config_key = "vision_config"
    # Generic transformers utilities (e.g. selecting hidden states by negative index) count layers by this name;
    # each stage gives one hidden state.
    attribute_map = {"num_hidden_layers": "num_stages"}

    image_size: int = 32
    num_channels: int = 3
    base_channels: int = 64
    num_stages: int = 4
    channel_multipliers: list[int] | None = None
    layers_per_stage: int = 2
    norm_num_groups: int = 32
    projection_dim: int = 512
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.num_stages < 1 or self.image_size // 2 ** (self.num_stages - 1) < 1:
            raise ValueError(f"num_stages={self.num_stages} is not possible for image_size={self.image_size}.")
        if self.layers_per_stage < 1:
            raise ValueError(f"layers_per_stage must be at least 1, got {self.layers_per_stage}.")
        if self.channel_multipliers is None:
            self.channel_multipliers = [min(2**i, 4) for i in range(self.num_stages)]
        if len(self.channel_multipliers) != self.num_stages:
            raise ValueError(
                f"channel_multipliers has {len(self.channel_multipliers)} entries but num_stages is {self.num_stages}."
            )
        for width in self.stage_channels:
            if width % self.norm_num_groups != 0:
                raise ValueError(
                    f"norm_num_groups ({self.norm_num_groups}) must divide every stage width {self.stage_channels}."
                )
        super().__post_init__(**kwargs)

    @property
    def stage_channels(self) -> list[int]:
        return [self.base_channels * m for m in self.channel_multipliers]


@strict
class ConceptConfig(PretrainedConfig):
    r"""
    Configuration of the dual [`ConceptModel`], nesting a [`ConceptTextConfig`] and a [`ConceptVisionConfig`] the way
    `CLIPConfig` does (`sub_configs_defaults`).

    Args:
        text_config (`dict` or `ConceptTextConfig`, *optional*): the text tower; defaults to `ConceptTextConfig()`.
        vision_config (`dict` or `ConceptVisionConfig`, *optional*): the image tower; defaults to
            `ConceptVisionConfig()`.
        projection_dim (`int`, defaults to 512): the shared concept size. Filled into a sub-config given as a dict
            (or `None`) that does not set its own; a sub-config that disagrees raises `ValueError`.
        logit_scale_init_value (`float`, defaults to 2.6592): initial log of the contrastive temperature
            multiplier, ln(1 / 0.07) as in CLIP.
        max_logit_scale (`float`, defaults to 100.0): the multiplier is clamped to at most this value (i.e. the
            parameter to at most ln(100)) so it cannot run away.
    """

    model_type = "concept"
    sub_configs_defaults = {"text_config": ConceptTextConfig, "vision_config": ConceptVisionConfig}

    text_config: dict | ConceptTextConfig | None = None
    vision_config: dict | ConceptVisionConfig | None = None
    projection_dim: int = 512
    logit_scale_init_value: float | int = 2.6592
    max_logit_scale: float | int = 100.0

    def __post_init__(self, **kwargs):
        if self.max_logit_scale <= 1.0:
            raise ValueError(f"max_logit_scale must be > 1, got {self.max_logit_scale}.")
        # Let the top-level projection_dim reach sub-configs that do not choose their own.
        for key in ("text_config", "vision_config"):
            sub = getattr(self, key)
            if sub is None or (isinstance(sub, dict) and "projection_dim" not in sub):
                setattr(self, key, {**(sub or {}), "projection_dim": self.projection_dim})
        super().__post_init__(**kwargs)  # builds the sub-configs (transformers >= 5.2x)
        for key, config_class in self.sub_configs_defaults.items():
            if isinstance(getattr(self, key), dict):  # earlier transformers 5.x leave them as dicts
                setattr(self, key, config_class(**getattr(self, key)))
        for key in ("text_config", "vision_config"):
            if getattr(self, key).projection_dim != self.projection_dim:
                raise ValueError(
                    f"{key}.projection_dim ({getattr(self, key).projection_dim}) must equal "
                    f"projection_dim ({self.projection_dim}): both towers map into the same concept space."
                )


ConceptTextConfig.register_for_auto_class()
ConceptVisionConfig.register_for_auto_class()
ConceptConfig.register_for_auto_class()

__all__ = ["TEXT_ENCODER_TYPES", "ConceptConfig", "ConceptTextConfig", "ConceptVisionConfig"]
