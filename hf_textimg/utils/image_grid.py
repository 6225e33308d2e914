"""Image grids with captions under each image (diffusers' `make_image_grid` has no captions)."""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont:
    for path in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def make_captioned_grid(
    images: list[Image.Image], captions: list[str] | None = None, cols: int = 8, scale: int = 4, font_size: int = 11
) -> Image.Image:
    """Tile `images` in rows of `cols`, each upscaled `scale`x (nearest, so pixels stay crisp)
    with its caption wrapped underneath."""
    if not images:
        raise ValueError("make_captioned_grid needs at least one image.")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"Got {len(images)} images but {len(captions)} captions; pass one caption per image.")
    w, h = images[0].size
    cell_w, cell_h = w * scale, h * scale
    font = _font(font_size)
    chars = max(8, int(cell_w / (font_size * 0.55)))
    wrapped = [textwrap.wrap(c, chars)[:4] for c in captions] if captions else [[] for _ in images]
    text_h = (max(len(lines) for lines in wrapped) * (font_size + 2) + 4) if captions else 0
    rows = (len(images) + cols - 1) // cols
    cols = min(cols, len(images))
    pad = 4
    grid = Image.new("RGB", (cols * (cell_w + pad) + pad, rows * (cell_h + text_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i, (image, lines) in enumerate(zip(images, wrapped)):
        x = pad + (i % cols) * (cell_w + pad)
        y = pad + (i // cols) * (cell_h + text_h + pad)
        grid.paste(image.convert("RGB").resize((cell_w, cell_h), Image.Resampling.NEAREST), (x, y))
        draw.rectangle((x - 1, y - 1, x + cell_w, y + cell_h), outline=(200, 200, 200))
        for j, line in enumerate(lines):
            draw.text((x, y + cell_h + 2 + j * (font_size + 2)), line, fill=(0, 0, 0), font=font)
    return grid
