"""Bounded memory for the pipelines: images are generated in chunks, and a chunk's randomness does not depend
on which chunk it is in.

Memory: one denoising pass costs memory in proportion to images x pixels (about 5.6 MB per 32-px image on the
shipped model, classifier-free guidance included), so `pipe([...] * 10000)` in one pass needs ~56 GB. The
pipelines run at most `max_batch_size` images per pass; its default, `default_max_batch_size`, keeps a pass
under `MAX_PIXELS_PER_BATCH` pixels: 128 images at 32x32 (~0.7 GB on the shipped model), 32 at 64x64. 128 is
also the batch the training evaluation and `hf-textimg evaluate` use, so their numbers are unchanged.

Randomness, so that the chunk size never changes an image (up to float rounding of different batch sizes):
- the starting noise of every image is drawn first, exactly as one batch draws it (N x 3 x H x W floats,
  12 KB per 32-px image; the only part of the work that grows with N besides the outputs);
- a stochastic sampler (DDPM, ancestral and SDE solvers) draws its per-step noise from one generator per image.
  With a list of generators those are the user's own, as before. With a single generator, one seed per image is
  drawn from a copy of it (its state after the starting noise), and image i's step noise comes from a generator
  seeded with seed i. (Without this, chunk 2 would see a generator already advanced by chunk 1's steps.) The
  user's generator itself advances by the starting noise only, so a deterministic sampler (DPM-Solver++, DDIM,
  UniPC: the defaults) gives exactly the images it gave before chunking existed, call after call with one
  generator (as `hf-textimg evaluate` and training's evaluation do). Stochastic samplers with one generator give
  other (equally random) images than before.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_PIXELS_PER_BATCH = 128 * 32 * 32


def default_max_batch_size(height: int, width: int) -> int:
    """Images per denoising pass when `max_batch_size` is None: MAX_PIXELS_PER_BATCH // (height * width), at least 1."""
    return max(1, MAX_PIXELS_PER_BATCH // (height * width))


def image_chunks(num_images: int, max_batch_size: int) -> list[tuple[int, int]]:
    """[(start, end), ...] covering range(num_images) in order, each at most `max_batch_size` long."""
    return [(start, min(start + max_batch_size, num_images)) for start in range(0, num_images, max_batch_size)]


def step_generators(generator, num_images: int) -> list[torch.Generator] | None:
    """One generator per image for a stochastic sampler's per-step noise (see the module docstring).

    `generator` is None (the global RNG, as diffusers does: nothing to split), one `torch.Generator` (one seed per
    image is drawn from it, on its device) or a list of one per image (returned as it is)."""
    if generator is None or isinstance(generator, (list, tuple)):
        return None if generator is None else list(generator)
    copy = torch.Generator(generator.device)
    copy.set_state(generator.get_state())  # the user's generator is not advanced
    seeds = torch.randint(0, 2**62, (num_images,), generator=copy, device=generator.device).tolist()
    return [torch.Generator(generator.device).manual_seed(seed) for seed in seeds]


def concat_outputs(parts: list, output_type: str):
    """Join the chunks' post-processed images: lists of PIL images, (B, H, W, 3) arrays or (B, 3, H, W) tensors ("pt", "latent")."""
    if output_type == "np":
        return np.concatenate(parts)
    if output_type in ("pt", "latent"):
        return torch.cat(parts)
    return [image for part in parts for image in part]
