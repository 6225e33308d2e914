"""The one way a text-to-image pipeline is scored on the Shapes benchmark: training's periodic evaluation, the
upstream baseline, the benchmarks and `hf-textimg evaluate` all call `evaluate_shapes` (and `evaluate_shapes_variety`
for layout variety), so their figures agree."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .scorer import ShapesReport, ShapesScorer
from .variety import ShapesVarietyReport, measure_variety


def _seeded_generate(pipeline, seed: int, on_batch: Callable[[int], None] | None, call_kwargs: dict) -> Callable:
    """prompts -> (B, H, W, 3) floats in [0, 1] from `pipeline`, one CPU generator seeded with `seed` drawing the
    noise of every batch in turn (so the same settings, batch size included, give the same images on any device)."""
    generator = torch.Generator().manual_seed(seed)

    def generate(prompts: list[str]):
        images = pipeline(prompts, generator=generator, output_type="np", **call_kwargs).images  # (B, H, W, 3) in [0, 1]
        if on_batch is not None:
            on_batch(len(prompts))
        return images

    return generate


def evaluate_shapes(
    pipeline,
    prompts_per_category: int = 40,
    seed: int = 0,
    batch_size: int = 128,
    prompt_set: str = "benchmark",
    on_batch: Callable[[int], None] | None = None,
    **call_kwargs,
) -> ShapesReport:
    """Generate one image per prompt of `benchmark_prompts(prompts_per_category, prompt_set=prompt_set)` with
    `pipeline` and score them (accuracy and exactness) with the default `ShapesScorer`.

    One CPU generator seeded with `seed` draws the noise of every batch in turn, so the same settings (batch size
    included) give the same report on any device. `call_kwargs` go to every pipeline call (e.g.
    `num_inference_steps`, `guidance_scale`); `on_batch(n)` is called after each batch of n images.
    """
    generate = _seeded_generate(pipeline, seed, on_batch, call_kwargs)
    return ShapesScorer().evaluate_pipeline(generate, n_per_category=prompts_per_category, batch_size=batch_size, prompt_set=prompt_set)


def evaluate_shapes_variety(
    pipeline,
    images_per_prompt: int = 8,
    prompts_per_category: int = 10,
    seed: int = 0,
    batch_size: int = 128,
    prompt_set: str = "benchmark",
    on_batch: Callable[[int], None] | None = None,
    **call_kwargs,
) -> ShapesVarietyReport:
    """Layout variety of `pipeline` (see `hf_textimg.shapes.variety`): `images_per_prompt` images of each of the first
    `prompts_per_category` open-layout prompts of every category, against the spec sampler's count for the same
    prompts. Noise as in `evaluate_shapes` (its own generator, seeded with `seed`)."""
    generate = _seeded_generate(pipeline, seed, on_batch, call_kwargs)
    return measure_variety(generate, images_per_prompt, prompts_per_category, prompt_set=prompt_set, batch_size=batch_size)
