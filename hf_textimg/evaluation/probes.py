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

from ..diffusion.unet import unet_input, x0_and_eps


@dataclass
class PromptSensitivity:
    concept_distance: float  # || concept(A) - concept(B) ||, the pooled 512-d conditioning
    x0_difference: dict[int, float]  # timestep -> max |x0_hat(A) - x0_hat(B)| over pixels and images


def predicted_x0(scheduler_config, model_output: torch.Tensor, noisy: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The clean-image estimate from a model output of the scheduler's prediction type."""
    return x0_and_eps(model_output, noisy, alpha_bar.sqrt(), (1 - alpha_bar).sqrt(), scheduler_config.prediction_type)[0]


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


_FIRST_RELATIONS = ("left of", "above")  # "a {relation} b": a goes to the smaller column / row


def relation_side_probe(pipe, num_train: int = 3000, num_test: int = 1000, seed: int = 0, steps: int = 500) -> float:
    """Held-out accuracy of a linear read-out of the text tower's token states (what the U-Net cross-attends to)
    that says, for each object of a Shapes relation caption, whether it goes to the first cell (left / top).

    The label is the caption's meaning: in "a {relation} b", a goes first for "left of" / "above", b for
    "right of" / "below". The read-out sees the token state at each object's colour word after the pipeline's
    own tokenization (so after its `prompt_normalization`). 0.5 = chance: the token states do not say which
    object goes where, and the U-Net must work it out from the relation word itself. A logistic regression
    fitted here in a few lines of torch (no scikit-learn dependency for one probe).
    """
    import numpy as np

    from ..data.prompts import normalize_prompts
    from ..shapes.language import ObjectQuery, ShapesQuery, caption_query, parse_prompt
    from ..shapes.vocab import COLORS, RELATIONS, TRAIN_COMBOS

    rng = np.random.default_rng(seed)
    colour_ids = set(pipe.tokenizer.convert_tokens_to_ids(list(COLORS)))

    @torch.no_grad()
    def features(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        captions = []
        for _ in range(n):
            a, b = rng.choice(len(TRAIN_COMBOS), size=2, replace=False)
            query = ShapesQuery("relation", (ObjectQuery(*TRAIN_COMBOS[a]), ObjectQuery(*TRAIN_COMBOS[b])), relation=str(rng.choice(RELATIONS)))
            captions.append(caption_query(query, rng))
        # Labels come from the text the tower reads; tokenize_prompt's own rewrite is then a no-op.
        captions = normalize_prompts(captions, getattr(pipe.config, "prompt_normalization", None))
        inputs = pipe.tokenize_prompt(captions)
        states = pipe.text_encoder(**inputs).last_hidden_state.float()  # (n, L, H)
        rows, labels = [], []
        for i, caption in enumerate(captions):
            positions = [j for j, token in enumerate(inputs["input_ids"][i].tolist()) if token in colour_ids]
            if len(positions) != 2:  # a colour word split into pieces: not this probe's vocabulary
                raise ValueError(f"relation_side_probe needs a tokenizer with whole colour words; {caption!r} gave {len(positions)}.")
            first_goes_first = parse_prompt(caption).relation in _FIRST_RELATIONS
            rows += [states[i, positions[0]], states[i, positions[1]]]
            labels += [float(first_goes_first), float(not first_goes_first)]
        return torch.stack(rows), torch.tensor(labels)

    x_train, y_train = features(num_train)
    x_test, y_test = features(num_test)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    weight = torch.zeros(x_train.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x_train @ weight + bias, y_train) + 1e-3 * weight.square().sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return ((x_test @ weight + bias > 0).float() == y_test).float().mean().item()
