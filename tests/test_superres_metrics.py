"""The super-resolution benchmark's figures on known images: PSNR / SSIM, and the off-palette ink share of true
Shapes renders (sharp, ~0.12) against 32 px renders upscaled bicubically (blurred, ~0.53)."""

import numpy as np
import pytest
import torch

from hf_textimg.shapes import render_batch, sample_scene
from hf_textimg.diffusion.superres import downsample
from hf_textimg.evaluation.image_metrics import INK_TOLERANCE, bicubic_upscale, off_palette_ink_share, psnr, ssim


@pytest.fixture(scope="module")
def renders():
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(100)]
    return tuple(torch.from_numpy(render_batch(scenes, size)).permute(0, 3, 1, 2).float() / 255 for size in (32, 128))


def test_ink_share_separates_true_renders_from_bicubic_upsampling(renders):
    small, large = renders
    assert INK_TOLERANCE == 20
    assert 0.09 <= off_palette_ink_share(large) <= 0.16  # true 128 px renders: anti-aliased edges only
    assert 0.45 <= off_palette_ink_share(bicubic_upscale(small, 4)) <= 0.62  # 32 px renders, bicubic x4: blurred edges
    blank = torch.ones(1, 3, 16, 16)
    assert off_palette_ink_share(blank) == 0.0  # no ink at all


def test_box_filter_of_a_render_is_the_smaller_render(renders):
    """Training pairs come from `downsample` (block means); the Shapes renderer's coverage anti-aliasing gives the
    same small image to within 1.5 levels of 255, so pairs made from 128 px renders match the 32 px world."""
    small, large = renders
    assert (downsample(large, 4) - small).abs().max() * 255 < 1.5


def test_psnr_and_ssim(renders):
    _, large = renders
    assert ssim(large, large) == pytest.approx(1.0, abs=1e-5) and psnr(large, large) > 90
    noisy = (large + 0.05 * torch.randn(large.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert 20 < psnr(noisy, large) < 30  # noise of std 0.05: about 26 dB
    assert ssim(noisy, large) < 0.9
    blurred = bicubic_upscale(downsample(large, 4), 4)
    assert blurred.shape == large.shape and ssim(blurred, large) > ssim(noisy, large) - 0.5
