"""Does a diffusion pipeline listen to a word? Compare its predictions for two prompts from the same noise.

Scores tell *that* a category fails; this probe tells *where*. From one noisy image at a few timesteps, the
U-Net predicts the clean image (x0) for prompt A and for prompt B that differ in one word ("... at the top
left" / "... at the bottom right"). If the two predictions are nearly equal at high noise, where the layout
of the image is decided, the model ignores the word, and no sampler or guidance scale will bring it back.
The pooled concepts of the two prompts are compared too: if they are already nearly equal, the text tower
dropped the word before the U-Net saw it.

    from hf_textimg.evaluation.probes import prompt_sensitivity
    probe = prompt_sensitivity(pipe, "a red circle at the top left", "a red circle at the bottom right")
    probe.x0_difference  # {950: ..., 800: ..., 500: ...}: max |x0(A) - x0(B)| per timestep, pixels in [-1, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diffusion.unet import unet_input


@dataclass
class PromptSensitivity:
    concept_distance: float  # || concept(A) - concept(B) ||, the pooled 512-d conditioning
    x0_difference: dict[int, float]  # timestep -> max |x0_hat(A) - x0_hat(B)| over pixels and images


def predicted_x0(scheduler_config, model_output: torch.Tensor, noisy: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The clean-image estimate from a model output of the scheduler's prediction type."""
    prediction_type = scheduler_config.prediction_type
    if prediction_type == "epsilon":
        return (noisy - (1 - alpha_bar).sqrt() * model_output) / alpha_bar.sqrt()
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * noisy - (1 - alpha_bar).sqrt() * model_output
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"Unknown prediction_type {prediction_type!r}; expected epsilon, v_prediction or sample.")


@torch.no_grad()
def prompt_sensitivity(
    pipe, prompt: str, other_prompt: str, timesteps: tuple[int, ...] = (950, 800, 500), num_images: int = 8, seed: int = 0
) -> PromptSensitivity:
    """Compare the conditional x0 predictions of `pipe` (a `ConceptDiffusionPipeline`) for two prompts, from the
    same `num_images` clean-noise draws at each of `timesteps` (training timesteps, 0..num_train_timesteps-1).
    Unguided: the conditional branch alone, as trained."""
    alphas_cumprod = getattr(pipe.scheduler, "alphas_cumprod", None)
    if alphas_cumprod is None:
        raise ValueError(f"{type(pipe.scheduler).__name__} has no alphas_cumprod; load the pipeline with a DDPM-family scheduler.")
    if max(timesteps) >= len(alphas_cumprod) or min(timesteps) < 0:
        raise ValueError(f"timesteps must lie in [0, {len(alphas_cumprod) - 1}], got {timesteps}.")
    embeds, _ = pipe.encode_prompt([prompt, other_prompt], num_images_per_prompt=num_images, do_classifier_free_guidance=False)
    pooled = embeds.concept.float()  # (2 * num_images, D): rows 0..n-1 are `prompt`
    concept_distance = (pooled[0] - pooled[num_images]).norm().item()
    size = pipe.unet.config.sample_size
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((num_images, pipe.unet.config.out_channels, size, size), generator=generator)
    device, dtype = pipe._execution_device, pipe.unet.dtype
    x0_difference = {}
    for t in timesteps:
        alpha_bar = alphas_cumprod[t].to(torch.float32)
        # Start from pure noise pushed to level t (no clean image involved): what the sampler sees at that step.
        noisy = noise.repeat(2, 1, 1, 1).to(device, dtype)
        timestep = torch.full((len(noisy),), t, device=device, dtype=torch.long)
        output = pipe.unet(unet_input(pipe.unet, noisy), timestep, **embeds.unet_kwargs()).sample.float()
        x0 = predicted_x0(pipe.scheduler.config, output, noisy.float(), alpha_bar)
        x0_difference[t] = (x0[:num_images] - x0[num_images:]).abs().max().item()
    return PromptSensitivity(concept_distance=concept_distance, x0_difference=x0_difference)
