"""What `ConceptDiffusionPipeline` conditions its U-Net on: `ConceptPromptEmbeds`, and `encode_concept`, which
makes it from tokenized captions (the pipeline's `encode_prompt` and training's loss both call it)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ConceptPromptEmbeds:
    """The two conditionings of a batch of prompts, as the U-Net reads them.

    This is what `ConceptDiffusionPipeline` takes as `prompt_embeds` / `negative_prompt_embeds`
    and what `encode_prompt` returns. The "empty" condition (classifier-free guidance's
    unconditional branch, and condition dropout in training) is the encoding of the empty
    caption `""`, so a negative prompt is simply another caption.
    """

    token_states: torch.Tensor  # (B, L, H) text tower's last_hidden_state, zero at padding -> cross-attention
    attention_mask: torch.Tensor  # (B, L) 1 for real tokens, 0 for padding -> encoder_attention_mask
    concept: torch.Tensor  # (B, concept_dim) pooled unit-norm concept -> class embedding

    def __post_init__(self):
        states, mask, concept = self.token_states, self.attention_mask, self.concept
        if states.ndim != 3 or tuple(mask.shape) != tuple(states.shape[:2]) or concept.ndim != 2 or len(concept) != len(states):
            raise ValueError(
                "ConceptPromptEmbeds needs token_states (B, L, H), attention_mask (B, L) and concept (B, D); got "
                f"{tuple(self.token_states.shape)}, {tuple(self.attention_mask.shape)}, {tuple(self.concept.shape)}."
            )

    def __len__(self) -> int:
        return len(self.concept)

    def map(self, fn) -> ConceptPromptEmbeds:
        """Apply `fn` to each of the three tensors."""
        return ConceptPromptEmbeds(fn(self.token_states), fn(self.attention_mask), fn(self.concept))

    def to(self, device=None, dtype=None) -> ConceptPromptEmbeds:
        """Move to `device`; cast the two float tensors (not the mask) to `dtype`."""
        return ConceptPromptEmbeds(
            self.token_states.to(device=device, dtype=dtype), self.attention_mask.to(device), self.concept.to(device=device, dtype=dtype)
        )

    def repeat_interleave(self, n: int) -> ConceptPromptEmbeds:
        """Each row repeated `n` times in place (prompt 0's copies first)."""
        return self.map(lambda x: x.repeat_interleave(n, dim=0))

    @classmethod
    def cat(cls, embeds: list[ConceptPromptEmbeds]) -> ConceptPromptEmbeds:
        if len({e.token_states.shape[1:] for e in embeds}) != 1:
            raise ValueError(f"Cannot batch prompt embeddings of token shapes {[tuple(e.token_states.shape) for e in embeds]}; L and H must match.")
        return cls(*(torch.cat(parts) for parts in zip(*(e._tensors() for e in embeds))))

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.token_states, self.attention_mask, self.concept

    def unet_kwargs(self) -> dict:
        """Keyword arguments for `UNet2DConditionModel.forward`."""
        return {"encoder_hidden_states": self.token_states, "encoder_attention_mask": self.attention_mask, "class_labels": self.concept}


def text_features(text_encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states (B, L, H) and unit-norm concept (B, D) of tokenized captions (B, L), from a [`ConceptTextModel`] or
    a transformers CLIP text tower with projection (`CLIPTextModelWithProjection`, see `hf_textimg.concept.clip`)."""
    out = text_encoder(input_ids, attention_mask=attention_mask, return_dict=True)
    concept = out.text_embeds
    model = getattr(text_encoder, "module", text_encoder)  # under accelerate's DistributedDataParallel in training
    if not str(getattr(model.config, "model_type", "")).startswith("concept"):
        concept = F.normalize(concept, dim=-1)  # CLIP's projection is not normalised (ours is, and stays bit-exact)
    return out.last_hidden_state, concept


def encode_concept(text_encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ConceptPromptEmbeds:
    """Run the text tower on tokenized captions (B, L) (see `text_features`)."""
    token_states, concept = text_features(text_encoder, input_ids, attention_mask)
    return ConceptPromptEmbeds(token_states, attention_mask, concept)
