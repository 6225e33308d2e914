"""Image-quality figures for super-resolution: PSNR, SSIM, the bicubic baseline, and the Shapes edge check.

Images are float tensors (B, 3, H, W) in [0, 1] (what the pipelines return with `output_type="pt"`).
PSNR and SSIM are written here in a few lines of torch: the package's dependencies (torch, scipy,
PIL) have no SSIM, and torchmetrics / scikit-image would be a new dependency for two formulas.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# Off-palette ink: a pixel is background when every channel is within this many 8-bit levels of white,
# and a palette colour when within it of that colour. On true Shapes renders at 128 px ~12% of the
# ink pixels are neither (anti-aliased edges); on 32 px renders upscaled bicubically ~53% (measured
# in tests/test_superres_metrics.py).
INK_TOLERANCE = 20


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over images of 10 log10(1 / MSE), for (B, C, H, W) in [0, 1]."""
    mse = (images.float() - reference.float()).pow(2).mean(dim=(1, 2, 3)).clamp_min(1e-10)  # (B,)
    return (10 * torch.log10(1 / mse)).mean().item()


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1),
    per channel over the window positions inside the image, then averaged over channels and images."""
    x, y = images.float(), reference.float()
    channels = x.shape[1]
    g = _gaussian_window()
    window = (g[:, None] * g[None, :]).expand(channels, 1, -1, -1)  # (C, 1, 11, 11), one per channel

    def blur(t):
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean().item()


def bicubic_upscale(images: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 3, h, w) in [0, 1] -> (B, 3, h * factor, w * factor) with PIL's bicubic filter (the usual baseline)."""
    array = (images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    size = (images.shape[-1] * factor, images.shape[-2] * factor)
    up = np.stack([np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BICUBIC)) for a in array])
    return torch.from_numpy(up).permute(0, 3, 1, 2).float() / 255


def off_palette_ink_share(images: torch.Tensor, palette: np.ndarray | None = None, tolerance: float = INK_TOLERANCE) -> float:
    """Of all pixels that are not background ("ink"), the share that is no palette colour either, within
    `tolerance` 8-bit levels per channel: blur and colour fringes. Pooled over the images (B, 3, H, W) in [0, 1]."""
    if palette is None:
        from ..shapes import PALETTE

        palette = np.array(list(PALETTE.values()), dtype=np.float32)  # (8, 3)
    pixels = images.clamp(0, 1).permute(0, 2, 3, 1).reshape(-1, 3).cpu().float().numpy() * 255  # (P, 3)
    ink = np.abs(pixels - 255).max(axis=1) > tolerance
    distance = np.abs(pixels[ink, None, :] - palette[None]).max(axis=2).min(axis=1)  # (ink pixels,)
    return float((distance > tolerance).sum() / max(int(ink.sum()), 1))


__all__ = ["INK_TOLERANCE", "bicubic_upscale", "off_palette_ink_share", "psnr", "ssim"]
