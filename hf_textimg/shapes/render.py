"""Rendering: a `Scene` -> a uint8 RGB image (docs/shapes-world.md, "Canvas", "Shapes").

Every object is pasted from a cached anti-aliased "stamp": per (shape, extent, sub-pixel offset) the coverage alpha
is computed once (exact along x, 64 scanlines per pixel) and every pixel is `round(alpha * colour + (1 - alpha) *
255)`, so interiors are exactly the palette colour and the background exactly white. The scorer's shape templates
read the same coverage (`shape_alpha`), so what the scorer expects is what the renderer draws.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from .vocab import BASE_SIZE, PALETTE, SHAPES, Scene, ShapeObject, extent_px


def _half_width(shape: str, dy: np.ndarray, half: float) -> np.ndarray:
    """Half-width of the shape's horizontal cross-section at offsets dy from the centre (-1 = empty).

    Every shape here (the plus included) meets a horizontal line in one centred interval.
    """
    inside = np.abs(dy) <= half
    if shape == "circle":
        width = np.sqrt(np.maximum(half * half - dy * dy, 0.0))
    elif shape == "square":
        width = np.full_like(dy, half)
    elif shape == "triangle":  # apex at dy = -half, base (full width) along dy = +half
        width = (dy + half) / 2
    elif shape == "plus":  # horizontal bar |dy| <= half/3 spans the full extent; above and below, the vertical bar
        width = np.where(np.abs(dy) <= half / 3, half, half / 3)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return np.where(inside, width, -1.0)


_SUPERSAMPLE = 64  # scanlines per pixel; coverage along each scanline is exact
_Q = 1000  # sub-pixel offsets and extents are quantised to 1/1000 px for the stamp cache


@functools.lru_cache(maxsize=8192)
def _stamp(shape: str, extent_q: int, ox_q: int, oy_q: int) -> np.ndarray:
    """Coverage alpha (h, w) of a shape whose box starts at (ox, oy) inside the stamp's first pixel.

    Coverage is exact along x and averaged over `_SUPERSAMPLE` scanlines per pixel row, so a
    pixel inside the shape gets alpha exactly 1 and one outside exactly 0.
    """
    extent, ox, oy = extent_q / _Q, ox_q / _Q, oy_q / _Q
    half = extent / 2
    w, h = math.ceil(ox + extent), math.ceil(oy + extent)
    dy = (np.arange(h * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - (oy + half)  # scanline offsets from the centre
    reach = _half_width(shape, dy, half)[:, None]  # (h * ss, 1)
    columns = np.arange(w)[None, :]
    left, right = ox + half - reach, ox + half + reach
    overlap = np.clip(np.minimum(right, columns + 1) - np.maximum(left, columns), 0.0, 1.0)  # (h * ss, w)
    overlap[reach[:, 0] < 0] = 0.0
    alpha = overlap.reshape(h, _SUPERSAMPLE, w).mean(axis=1)
    alpha.flags.writeable = False
    return alpha


def _stamp_key(shape: str, extent: float, center: tuple[float, float]) -> tuple[tuple, int, int]:
    """Cache key of the stamp for a shape at `center`, and the canvas pixel of its top-left corner."""
    corners = []
    for c in center:
        start = c - extent / 2
        origin = math.floor(start)
        offset_q = round((start - origin) * _Q)
        if offset_q == _Q:
            origin, offset_q = origin + 1, 0
        corners.append((origin, offset_q))
    (x0, ox_q), (y0, oy_q) = corners
    return (shape, round(extent * _Q), ox_q, oy_q), x0, y0

def _overlap(x0: int, y0: int, h: int, w: int, height: int, width: int) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Where an (h, w) stamp whose top-left pixel is (x0, y0) lands on a (height, width) canvas: the canvas slices
    and the stamp slices of the part on the canvas, or None when none of it is."""
    rows, cols = _clip(y0, h, height), _clip(x0, w, width)
    if rows is None or cols is None:
        return None
    return (slice(rows[0], rows[1]), slice(cols[0], cols[1])), (slice(rows[2], rows[3]), slice(cols[2], cols[3]))


def _clip(start: int, length: int, limit: int) -> tuple[int, int, int, int] | None:
    """Canvas range [a, b) and stamp range [c, d) of a stamp placed at `start`, or None if off canvas."""
    a, b = max(start, 0), min(start + length, limit)
    if a >= b:
        return None
    return a, b, a - start, b - start


def shape_alpha(
    shape: str, extent: float, center: tuple[float, float], canvas: int | tuple[int, int]
) -> np.ndarray:
    """Coverage alpha in [0, 1] of one shape on a canvas of `canvas` = size or (height, width).

    `center` is (x, y) in pixels; pixel (row i, col j) covers [j, j+1) x [i, i+1).
    Returns a float (height, width) array: the coverage the renderer blends with, on its own canvas (the scorer's
    templates).
    """
    height, width = (canvas, canvas) if isinstance(canvas, int) else canvas
    out = np.zeros((height, width), dtype=np.float64)
    key, x0, y0 = _stamp_key(shape, extent, center)
    alpha = _stamp(*key)
    placed = _overlap(x0, y0, *alpha.shape, height, width)
    if placed is not None:
        out[placed[0]] = alpha[placed[1]]
    return out


@functools.lru_cache(maxsize=16384)
def _patch(shape: str, extent_q: int, ox_q: int, oy_q: int, color: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 pixels (h, w, 3) and coverage mask (h, w) of a coloured stamp."""
    alpha = _stamp(shape, extent_q, ox_q, oy_q)[..., None]  # (h, w, 1)
    pixels = np.floor(alpha * np.array(PALETTE[color], dtype=np.float64) + (1 - alpha) * 255 + 0.5)
    pixels = pixels.astype(np.uint8)
    mask = alpha[..., 0] > 0
    pixels.flags.writeable = mask.flags.writeable = False
    return pixels, mask


def _paste(canvas: np.ndarray, obj: ShapeObject, scale: float) -> None:
    """Draw one object onto a (S, S, 3) uint8 canvas in place; `scale` maps the scene's pixels to the canvas's."""
    image_size = canvas.shape[0]
    key, x0, y0 = _stamp_key(obj.shape, extent_px(obj.size, image_size), (obj.center[0] * scale, obj.center[1] * scale))
    pixels, mask = _patch(*key, obj.color)
    h, w = mask.shape
    if x0 >= 0 and y0 >= 0 and x0 + w <= image_size and y0 + h <= image_size:  # the usual case, without slicing objects
        np.copyto(canvas[y0 : y0 + h, x0 : x0 + w], pixels, where=mask[..., None])
        return
    placed = _overlap(x0, y0, h, w, image_size, image_size)
    if placed is not None:
        into, part = placed
        np.copyto(canvas[into], pixels[part], where=mask[part][..., None])


def render_batch(scenes: Sequence[Scene], size: int | None = None) -> np.ndarray:
    """Render scenes to an (N, size, size, 3) uint8 array (size defaults to the first scene's; a different size
    rescales the centres, so a 32 px scene renders at 64 px exactly x2)."""
    size = size or (scenes[0].size if len(scenes) else BASE_SIZE)
    out = np.full((len(scenes), size, size, 3), 255, dtype=np.uint8)
    for canvas, scene in zip(out, scenes):
        for obj in scene.objects:
            _paste(canvas, obj, size / scene.size)
    return out


def render_scene(scene: Scene, size: int | None = None) -> np.ndarray:
    """Render one scene to a (size, size, 3) uint8 image; `size` defaults to `scene.size` (see `render_batch`)."""
    return render_batch([scene], size or scene.size)[0]
