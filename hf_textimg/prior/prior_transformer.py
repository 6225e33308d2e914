"""The unCLIP prior: a caption's text-tower outputs -> an *image* concept, as diffusers' `PriorTransformer` does it.

No custom model: diffusers' `PriorTransformer` (the prior of Karlo's unCLIP and of Kandinsky 2.1 / 2.2) already
denoises one embedding conditioned on a caption's token states and pooled embedding, at any size. This module is
the glue between it and our text tower, the same three choices upstream made:

- **Inputs.** The noisy image embedding `(B, D)` is `hidden_states`; the pooled, unit-norm concept `(B, P)` is
  `proj_embedding` (its width is `embedding_proj_dim`, so it may differ from D); the token states `(B, L, H)` are
  `encoder_hidden_states` with their `attention_mask`. `PriorTransformer` projects the token states with
  `Linear(embedding_dim, inner_dim)`, i.e. it expects them as wide as the image embedding (true of CLIP, whose text
  width is its embedding width). Our towers are narrower (H = 128-256 against D = 512), so `prior_kwargs` pads them
  with zeros to D: a linear map of zero-padded inputs is exactly a `Linear(H, inner_dim)` (the extra columns only
  ever see zeros), and the saved prior stays diffusers' own class, loadable without this package. A tower wider
  than the image embedding is refused with a ValueError.
- **Target and normalisation.** The model predicts the clean embedding (`prediction_type="sample"`, as DALL-E 2 and
  Kandinsky do), in a space standardised per dimension with the mean and standard deviation of the training
  images' embeddings: Kandinsky 2.2's `clip_mean` / `clip_std`, which `PriorTransformer` already stores beside its
  weights and undoes in `post_process_latents`. Chosen over DALLE2-pytorch's "unit norm times sqrt(D)" because
  the image codes of one small world need not be centred (contrastive codes share directions; an auto-encoder's
  codes use some coordinates far more than others): scaling alone keeps each coordinate's offset and uneven
  spread, standardising gives every coordinate mean 0 and variance 1, the scale the noise schedule assumes, and
  the statistics travel in the prior's own weights file. Samples are put back on the unit sphere afterwards when the image encoder's codes are unit-norm (the
  pipelines' `normalize_image_embeds`), as DALLE2-pytorch re-normalises its samples.
- **Noise math.** diffusers' `DDPMScheduler` with the squared-cosine betas, `prediction_type="sample"` and trailing
  timesteps, for training (`add_noise`) and sampling (`step`, a few tens of steps): diffusers deprecates the
  `UnCLIPScheduler` Karlo and Kandinsky shipped in favour of it. Classifier-free guidance drops the caption to the
  empty caption in training (`--cond_dropout`) and guides against it in the pipeline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, PriorTransformer

# Kandinsky 2.2's prior scheduler clips its x0 estimates at +-10 in the standardised space: far outside the data
# (almost every standardised coordinate lies within +-4), so it only catches a diverging estimate.
CLIP_SAMPLE_RANGE = 10.0


def build_prior(
    embedding_dim: int = 512,
    text_embed_dim: int = 512,
    text_hidden_size: int = 256,
    max_length: int = 32,
    num_layers: int = 4,
    num_attention_heads: int = 4,
    attention_head_dim: int = 32,
    dropout: float = 0.0,
) -> PriorTransformer:
    """A small `PriorTransformer` for image embeddings of `embedding_dim`, read from a text tower that makes
    `text_embed_dim`-d concepts and `text_hidden_size`-wide token states for `max_length` tokens.

    Layer norms on the input sequence and on the pooled concept (`norm_in_type`, `embedding_proj_norm_type`) put the
    unit-norm concept (coordinates near 1/sqrt(P)) on the scale of the other tokens. The normalisation statistics
    start as the identity (mean 0, std 1) until `set_embedding_stats`; they are buffers in all but name (diffusers
    made them parameters), so they are frozen here: no optimizer moves them and DDP expects no gradient for them.
    """
    check_text_width(text_hidden_size, embedding_dim)
    prior = PriorTransformer(
        num_attention_heads=num_attention_heads,
        attention_head_dim=attention_head_dim,
        num_layers=num_layers,
        embedding_dim=embedding_dim,
        num_embeddings=max_length,
        additional_embeddings=4,  # the pooled concept, the timestep, the noisy embedding, the read-out ("prd") token
        dropout=dropout,
        norm_in_type="layer",
        embedding_proj_norm_type="layer",
        encoder_hid_proj_type="linear",
        added_emb_type="prd",
        embedding_proj_dim=text_embed_dim,
        clip_embed_dim=embedding_dim,
    )
    set_embedding_stats(prior, torch.zeros(embedding_dim), torch.ones(embedding_dim))
    return prior


def check_text_width(text_hidden_size: int, embedding_dim: int) -> None:
    if text_hidden_size > embedding_dim:
        raise ValueError(
            f"The text tower's token states are {text_hidden_size} wide but the image embeddings {embedding_dim}: "
            "PriorTransformer reads token states at most as wide as the embedding it denoises (they are zero-padded to "
            "it); use a text tower with hidden_size <= the image code size."
        )


@torch.no_grad()
def set_embedding_stats(prior: PriorTransformer, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Store the per-dimension mean and std (each (D,)) of the training image embeddings as `clip_mean` / `clip_std`,
    frozen. A std of 0 (a coordinate every image shares) is raised to 1e-6 of the mean std, so it cannot divide by 0."""
    std = std.clamp_min(1e-6 * float(std.mean().clamp_min(1e-12)))
    prior.clip_mean.copy_(mean.reshape(1, -1))
    prior.clip_std.copy_(std.reshape(1, -1))
    prior.clip_mean.requires_grad_(False)
    prior.clip_std.requires_grad_(False)


@torch.no_grad()
def embedding_stats(embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std (each (D,)) of image embeddings (N, D)."""
    embeds = embeds.double()
    return embeds.mean(0).float(), embeds.std(0, unbiased=False).float()


def normalize_embeds(prior: PriorTransformer, image_embeds: torch.Tensor) -> torch.Tensor:
    """Image embeddings (B, D) -> the standardised space the prior denoises in (`post_process_latents` inverts it)."""
    return (image_embeds - prior.clip_mean.to(image_embeds)) / prior.clip_std.to(image_embeds)


def prior_noise_scheduler(num_train_timesteps: int = 1000) -> DDPMScheduler:
    """The noise schedule of training and (as shipped) sampling: see the module docstring."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps, beta_schedule="squaredcos_cap_v2", prediction_type="sample",
        clip_sample=True, clip_sample_range=CLIP_SAMPLE_RANGE, timestep_spacing="trailing",
    )


def prior_kwargs(prior: PriorTransformer, token_states: torch.Tensor, attention_mask: torch.Tensor, concept: torch.Tensor) -> dict:
    """Keyword arguments for `PriorTransformer.forward` from the text tower's outputs: token states (B, L, H) zero-padded
    to (B, L, D), their mask (B, L), the concept (B, P) as `proj_embedding`."""
    embedding_dim, length = prior.config.embedding_dim, prior.config.num_embeddings
    if token_states.shape[1] != length:
        raise ValueError(
            f"The prior was built for captions of {length} tokens but got {token_states.shape[1]}; tokenize to "
            f"max_length={length} (the tokenizer's model_max_length in a pipeline)."
        )
    check_text_width(token_states.shape[-1], embedding_dim)
    states = F.pad(token_states, (0, embedding_dim - token_states.shape[-1]))  # (B, L, D)
    return {"encoder_hidden_states": states.to(prior.dtype), "attention_mask": attention_mask.bool(), "proj_embedding": concept.to(prior.dtype)}


def prior_loss(prior, noise_scheduler: DDPMScheduler, target: torch.Tensor, text_kwargs: dict) -> torch.Tensor:
    """The training loss: MSE between the clean standardised embeddings `target` (B, D) and the prior's prediction of
    them from a noised copy at a random timestep (one per row)."""
    noise = torch.randn_like(target)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(target),), device=target.device)
    noisy = noise_scheduler.add_noise(target, noise, timesteps)  # (B, D)
    prediction = prior(noisy, timestep=timesteps, **text_kwargs).predicted_image_embedding  # (B, D)
    return F.mse_loss(prediction.float(), target.float())


__all__ = [
    "CLIP_SAMPLE_RANGE",
    "build_prior",
    "check_text_width",
    "embedding_stats",
    "normalize_embeds",
    "prior_kwargs",
    "prior_loss",
    "prior_noise_scheduler",
    "set_embedding_stats",
]
