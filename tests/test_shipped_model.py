"""The shipped model (`hf_textimg/pretrained/shapes-diffusion-32`) keeps drawing exactly what it drew.

`tests/data/shipped_model_images.npy` holds the images (float32, (8, 32, 32, 3) in [0, 1], `output_type="np"`) that
the code before the issue-18 restructuring generated with the settings below (fp32 on the CPU, torch 2.13, diffusers
0.42.1; bit-identical with 1 or 2 threads). Any change to the text tower, the U-Net's conditioning, the prompt
normalisation or the pipeline's sampling loop shows up here. Tolerance: 1e-5, not bit equality, so a CPU with other
vector instructions does not fail on float rounding (the images matched bit for bit when the file was made).
"""

from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline

import hf_textimg  # noqa: F401  (registers the pipeline)
from hf_textimg.pretrained import pretrained_path

REFERENCE = Path(__file__).parent / "data" / "shipped_model_images.npy"
# a relation the prompt normalisation rewrites, a count, a named size and position, a held-out colour-shape pair
PROMPTS = ["a blue square right of a red circle", "three green triangles", "a small orange plus at the top left", "a blue circle"]


def test_shipped_model_images_unchanged():
    pipe = DiffusionPipeline.from_pretrained(pretrained_path())
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    images = pipe(PROMPTS, num_images_per_prompt=2, num_inference_steps=5, generator=generator, output_type="np").images
    np.testing.assert_allclose(images, np.load(REFERENCE), rtol=0, atol=1e-5)
