"""Score generated images against Shapes prompts (GenEval-style, rule-based vision; docs/shapes-world.md, "Scoring
categories").

How an image is read (`ShapesScorer.detect`):

1. Colour labels per pixel. The image is first shifted per channel so that its median
   (the background: objects cover well under half a Shapes image) is white, when that
   median is within `max_background_shift` of white (undoes a mild colour cast).
   Every palette colour c defines a segment white -> c, and an
   anti-aliased or faded pixel p is close to `a * c + (1 - a) * white` for some a in [0, 1].
   p is projected onto each segment (a clipped to [0, 1]); the colour with the smallest
   residual wins, and p is foreground when a >= 0.5 and the residual is at most
   `max_residual` (so grey, black or off-palette pixels are background). Projecting, rather
   than taking the nearest palette colour, keeps a half-covered red edge from being read as
   pink. The a >= 0.5 mask of a render is its shape's half-coverage mask.
2. Objects = 8-connected components of each colour label (`scipy.ndimage.label`); specks
   smaller than `min_area_fraction` of a small object's box area (6x6 px at 32 px) are dropped.
3. Shape = template matching on the component's soft coverage (its projection alpha; pixels
   of other objects zeroed): every shape is rendered with the world's own coverage function
   (`shape_alpha`) at extents from 1 px below to 2 px above the component's bounding-box side
   (half-pixel steps; blur shrinks the half-coverage box of thin shapes), centres within
   +-0.5 px (x) / +-1 px (y) of the box centre, each sharp and Gaussian-blurred
   (sigma 0.6 and 1 px at 32 px). The shape whose best template has the highest soft IoU
   (sum of minima / sum of maxima) wins. Below `min_iou`, or when the box side exceeds 16 px
   at 32 px (no Shapes object is that big), the shape is unknown (None), which matches nothing;
   the component still counts as an object.
4. Centre = bounding-box centre in pixels (pixel j covers [j, j+1)); cell = which third of
   the image the centre falls in, per axis.

Categories (`score_image` returns those that apply to the prompt); an object "matches" an
asked object when colour and shape are both right (size is not scored):

- single: exactly one object in the image, and it matches.
- color: exactly one object, and its colour is the asked one (shape ignored).
- position (single prompts naming a position): `single` holds and the object's centre is
  in the asked cell.
- count: exactly n objects in the image, all matching.
- pair: both asked objects are present (extra objects allowed).
- relation: a match for each asked object whose cells satisfy the relation: "a left of b"
  = same row, a's column smaller; "a above b" = same column, a's row smaller.
- heldout: `single` for a single prompt that uses a held-out (colour, shape) pair; such a
  prompt is scored only under `heldout`.

Beside each category's accuracy, `exact` (`is_exact`): the image holds the asked objects and nothing else, i.e.
the detected (colour, shape) multiset equals the asked one (single, color, position, heldout: one matching object;
count: n; pair and relation: two, one matching each asked object). It catches what `pair` lets pass (a third
object) and what `color` ignores (the shape); cells and relations are not checked.

Images may be PIL images, uint8 (H, W, 3) arrays or tensors, or float arrays / tensors,
(C, H, W) or (H, W, C). Floats are read in [-1, 1] when any value is below -0.02 (every
palette colour has a channel <= 110/255, which is negative in [-1, 1]) and in [0, 1]
otherwise; pass `value_range=(-1, 1)` or `(0, 1)` to say which. Any square size works; the
world defines 32 and 64 px.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from .benchmark import BENCHMARK_CATEGORIES, BenchmarkPrompt, benchmark_prompts
from .language import ShapesQuery, parse_prompt
from .render import shape_alpha
from .vocab import BASE_SIZE, PALETTE, POSITIONS, SHAPES, SIZES

__all__ = [
    "DetectedObject",
    "ShapesReport",
    "ShapesScorer",
    "generate_in_batches",
    "is_exact",
    "score_detections",
    "score_image",
    "to_rgb_array",
]

OVERALL_CATEGORIES = ("single", "color", "position", "count", "pair", "relation")

_COLOR_NAMES = tuple(PALETTE)
_DIRECTIONS = np.array([PALETTE[c] for c in _COLOR_NAMES], dtype=np.float32) - 255.0  # (8, 3) white -> colour
_DIRECTION_NORMS = (_DIRECTIONS**2).sum(axis=1)  # (8,)
_MARGIN = 3  # px (at 32 px) of border around a component when matching templates
_MAX_SIDE = 16  # px (at 32 px): components with a longer box side get no shape (large = 10 px)
_BLUR_SIGMAS = (0.0, 0.6, 1.0)  # template blur in px at 32 px
# Template extent = half-coverage box side + growth (px at 32 px): blur shrinks the box of
# thin or pointed shapes (a small blurred triangle's box can be 2 px short) ...
_EXTENT_GROWTH = (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)
# ... and a triangle's apex fades first, which moves its box centre down.
_CENTER_OFFSETS_Y = (-1.0, -0.5, 0.0, 0.5, 1.0)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def to_rgb_array(image, value_range: str | tuple[float, float] = "auto") -> np.ndarray:
    """Any supported image -> float32 (H, W, 3) array in [0, 255]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = image.numpy() if image.dtype == torch.uint8 else image.float().numpy()
    array = np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f"expected a single image with 3 dimensions, got shape {array.shape}")
    if array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.dtype == np.uint8:
        return array.astype(np.float32)
    array = array.astype(np.float32)
    if value_range == "auto":
        value_range = (-1.0, 1.0) if array.min() < -0.02 else (0.0, 1.0)
    low, high = value_range
    return np.clip((array - low) / (high - low), 0.0, 1.0) * 255.0


@dataclass(frozen=True)
class DetectedObject:
    color: str
    shape: str | None  # None when no shape template fits (IoU < min_iou)
    center: tuple[float, float]  # (x, y) bounding-box centre in pixels
    cell: tuple[int, int]  # (col, row)
    area: int  # foreground pixels
    iou: float  # IoU of the best template


@functools.lru_cache(maxsize=64)  # ~1-8 MB each; a few dozen keys cover real images
def _templates(side: int, height: int, width: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coverage-alpha templates of every shape whose half-coverage box has longer side `side`,
    centred in a (height, width) window.

    Extents from 1 px below to 2 px above `side`, centres within +-0.5 px (x) and +-1 px (y)
    of the window centre, each sharp and blurred (generated images are often soft). Returns
    templates (T, height, width) float32, the SHAPES index of each (T,) and their sums (T,).
    """
    window = (height, width)
    cx, cy = width / 2, height / 2
    templates, owners = [], []
    for index, shape in enumerate(SHAPES):
        for grow in _EXTENT_GROWTH:
            extent = side + grow * scale
            if extent < 1:
                continue
            for dy in _CENTER_OFFSETS_Y:
                for dx in (-0.5, 0.0, 0.5):
                    alpha = shape_alpha(shape, extent, (cx + dx, cy + dy * scale), window)
                    for sigma in _BLUR_SIGMAS:
                        templates.append(ndimage.gaussian_filter(alpha, sigma * scale) if sigma else alpha)
                        owners.append(index)
    templates = np.stack(templates).astype(np.float32)
    return templates, np.array(owners), templates.sum(axis=(1, 2))


def _margin(scale: float) -> int:
    return math.ceil(_MARGIN * scale)


def _centred_window(rows: slice, cols: slice, size: int) -> tuple[slice, slice]:
    """A square-ish window of `size` (+1 where parity demands) centred exactly on a bounding box,
    so templates depend only on the box's longer side and the window shape (few cache keys)."""
    window = []
    for span in (rows, cols):
        total = span.start + span.stop  # twice the box centre
        length = size + (total - size) % 2
        start = (total - length) // 2
        window.append(slice(start, start + length))
    return window[0], window[1]


def _classify_shape(alpha: np.ndarray, side: int, scale: float) -> tuple[int, float]:
    """SHAPES index of the template that best fits a component's alpha window, and its soft IoU.

    `alpha` is the component's coverage in a window centred on its box of longer side `side`.
    Soft IoU = sum(min(t, a)) / sum(max(t, a)) = (S - D) / (S + D), S = sum(t) + sum(a), D = sum|t - a|.
    """
    templates, owners, template_sums = _templates(side, *alpha.shape, scale)
    total = template_sums + alpha.sum()  # (T,)
    diff = np.abs(templates - alpha.astype(np.float32)).sum(axis=(1, 2))  # (T,)
    iou = (total - diff) / np.maximum(total + diff, 1e-6)
    best = int(np.argmax(iou))
    return int(owners[best]), float(iou[best])


class ShapesScorer:
    """Detects objects in Shapes images and scores them against prompts (see module docstring)."""

    def __init__(
        self,
        min_alpha: float = 0.5,
        max_residual: float = 60.0,
        min_area_fraction: float = 0.2,
        min_iou: float = 0.4,
        max_background_shift: float = 40.0,
        value_range: str | tuple[float, float] = "auto",
    ):
        self.min_alpha, self.max_residual = min_alpha, max_residual
        self.min_area_fraction, self.min_iou = min_area_fraction, min_iou
        self.max_background_shift = max_background_shift
        self.value_range = value_range

    # -- vision ---------------------------------------------------------------------------

    def white_balance(self, rgb: np.ndarray) -> np.ndarray:
        """Shift each channel so the background (the per-channel median: objects cover well under
        half of a Shapes image) is white, when it is within `max_background_shift` of white."""
        shift = 255.0 - np.median(rgb.reshape(-1, 3), axis=0)  # (3,)
        if np.all(shift <= self.max_background_shift):
            rgb = np.clip(rgb + shift, 0.0, 255.0)
        return rgb

    def color_labels(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Palette index per pixel (H, W), -1 for background, and per-colour coverage (H, W, 8).

        Coverage of colour c is the projection onto white -> c, zero where the residual is
        too large for the pixel to be a blend of white and c.
        """
        offsets = rgb.reshape(-1, 3) - 255.0  # (P, 3), white at the origin
        dots = offsets @ _DIRECTIONS.T  # (P, 8)
        alpha = np.clip(dots / _DIRECTION_NORMS, 0.0, 1.0)
        # |o - a d|^2 expanded, to avoid a (P, 8, 3) intermediate
        squared = (offsets**2).sum(axis=1, keepdims=True) - 2 * alpha * dots + alpha**2 * _DIRECTION_NORMS
        residual = np.sqrt(np.maximum(squared, 0.0))  # (P, 8)
        best = residual.argmin(axis=1)
        rows = np.arange(len(best))
        foreground = (alpha[rows, best] >= self.min_alpha) & (residual[rows, best] <= self.max_residual)
        labels = np.where(foreground, best, -1).reshape(rgb.shape[:2])
        coverage = np.where(residual <= self.max_residual, alpha, 0.0).reshape(*rgb.shape[:2], -1)
        return labels, coverage

    def detect(self, image) -> list[DetectedObject]:
        rgb = self.white_balance(to_rgb_array(image, self.value_range))
        height, width = rgb.shape[:2]
        scale = min(height, width) / BASE_SIZE
        margin = _margin(scale)
        max_side = math.floor(_MAX_SIDE * scale)
        pad = margin + max_side + 1  # room for any matched component's window
        min_area = max(2, math.floor(self.min_area_fraction * (SIZES["small"] * scale) ** 2))
        labels, coverage = self.color_labels(rgb)
        # pad so every component's window lies inside the arrays
        labels = np.pad(labels, pad, constant_values=-1)
        coverage = np.pad(coverage, ((pad, pad), (pad, pad), (0, 0)))
        objects = []
        for color_index in np.unique(labels[labels >= 0]):
            components, _ = ndimage.label(labels == color_index, structure=_EIGHT_CONNECTED)
            for number, (rows, cols) in enumerate(ndimage.find_objects(components), start=1):
                area = int((components[rows, cols] == number).sum())
                if area < min_area:
                    continue
                x = (cols.start + cols.stop) / 2 - pad  # bounding-box centre, unpadded pixels
                y = (rows.start + rows.stop) / 2 - pad
                cell = (min(int(x * 3 / width), 2), min(int(y * 3 / height), 2))
                side = max(rows.stop - rows.start, cols.stop - cols.start)
                shape, iou = None, 0.0
                if side <= max_side:  # larger blobs are no Shapes object
                    window = _centred_window(rows, cols, side + 2 * margin)
                    # this component's own coverage; pixels of other objects count as empty
                    own = (components[window] == number) | (labels[window] < 0)
                    alpha = np.where(own, coverage[window + (color_index,)], 0.0)
                    shape_index, iou = _classify_shape(alpha, side, scale)
                    shape = SHAPES[shape_index] if iou >= self.min_iou else None
                objects.append(DetectedObject(_COLOR_NAMES[color_index], shape, (x, y), cell, area, iou))
        return objects

    # -- scoring --------------------------------------------------------------------------

    def score(self, image, prompt: str | ShapesQuery) -> dict[str, bool]:
        """Per-category verdicts for the categories that apply to `prompt`."""
        query = parse_prompt(prompt) if isinstance(prompt, str) else prompt
        return score_detections(self.detect(image), query)

    def evaluate(self, images: Sequence, prompts: Sequence[str | BenchmarkPrompt]) -> ShapesReport:
        """Score images against prompts. A `BenchmarkPrompt` counts only under its category;
        a plain string counts under every category that applies to it."""
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images for {len(prompts)} prompts")
        results: dict[str, list[bool]] = {}
        exact: dict[str, list[bool]] = {}
        for image, prompt in zip(images, prompts):
            query = prompt.query if isinstance(prompt, BenchmarkPrompt) else parse_prompt(prompt)
            objects = self.detect(image)  # once per image, for the verdicts and exactness alike
            verdicts = score_detections(objects, query)
            if isinstance(prompt, BenchmarkPrompt):
                verdicts = {prompt.category: verdicts[prompt.category]}
            for category, ok in verdicts.items():
                results.setdefault(category, []).append(ok)
                exact.setdefault(category, []).append(is_exact(objects, query))
        return ShapesReport.from_results(results, exact)

    def evaluate_pipeline(
        self,
        generate_fn: Callable[[list[str]], Sequence],
        n_per_category: int = 50,
        seed: int = 1234,
        batch_size: int = 32,
        prompt_set: str = "benchmark",
    ) -> ShapesReport:
        """Generate the benchmark (or the validation prompts, see `benchmark_prompts`) with
        `generate_fn(list of prompts) -> list of images` and score it."""
        prompts = benchmark_prompts(n_per_category, seed, prompt_set)
        return self.evaluate(generate_in_batches(generate_fn, [p.prompt for p in prompts], batch_size), prompts)


def generate_in_batches(generate_fn: Callable[[list[str]], Sequence], prompts: Sequence[str], batch_size: int) -> list:
    """One image per prompt from `generate_fn(batch)`, called on `batch_size` prompts at a time, in order."""
    images = []
    for start in range(0, len(prompts), batch_size):
        batch = list(prompts[start : start + batch_size])
        generated = list(generate_fn(batch))
        if len(generated) != len(batch):
            raise ValueError(f"generate_fn returned {len(generated)} images for {len(batch)} prompts")
        images.extend(generated)
    return images


def _matches(obj: DetectedObject, asked) -> bool:
    return obj.color == asked.color and obj.shape == asked.shape


def _relation_holds(a: tuple[int, int], b: tuple[int, int], relation: str) -> bool:
    (a_col, a_row), (b_col, b_row) = a, b
    if relation == "left of":
        return a_row == b_row and a_col < b_col
    if relation == "right of":
        return a_row == b_row and a_col > b_col
    if relation == "above":
        return a_col == b_col and a_row < b_row
    if relation == "below":
        return a_col == b_col and a_row > b_row
    raise ValueError(f"unknown relation {relation!r}")


def score_detections(objects: Sequence[DetectedObject], query: ShapesQuery) -> dict[str, bool]:
    """Per-category verdicts of detected objects against a query (rules in the module docstring)."""
    if query.kind == "single":
        asked = query.objects[0]
        single = len(objects) == 1 and _matches(objects[0], asked)
        if query.uses_heldout:
            return {"heldout": single}
        verdicts = {"single": single, "color": len(objects) == 1 and objects[0].color == asked.color}
        if query.position is not None:
            verdicts["position"] = single and objects[0].cell == POSITIONS[query.position]
        return verdicts
    if query.kind == "count":
        asked = query.objects[0]
        return {"count": len(objects) == query.count and all(_matches(o, asked) for o in objects)}
    first, second = query.objects
    pairs = [
        (a, b)
        for i, a in enumerate(objects)
        for j, b in enumerate(objects)
        if i != j and _matches(a, first) and _matches(b, second)
    ]
    if query.kind == "pair":
        return {"pair": bool(pairs)}
    if query.kind == "relation":
        return {"relation": any(_relation_holds(a.cell, b.cell, query.relation) for a, b in pairs)}
    raise ValueError(f"unknown query kind {query.kind!r}")


def is_exact(objects: Sequence[DetectedObject], query: ShapesQuery) -> bool:
    """Whether the detected objects are exactly the asked ones and nothing else: the same (colour, shape) multiset
    (a count asks for n of its object). Sizes, cells and relations are not checked; an unknown shape matches nothing."""
    asked = [o.combo for o in query.objects] * (query.count if query.kind == "count" else 1)
    return Counter((o.color, o.shape) for o in objects) == Counter(asked)


@functools.cache
def _default_scorer() -> ShapesScorer:
    return ShapesScorer()


def score_image(image, prompt: str | ShapesQuery) -> dict[str, bool]:
    """Score one image against one prompt with default settings; see `ShapesScorer.score`."""
    return _default_scorer().score(image, prompt)


@dataclass
class ShapesReport:
    accuracy: dict[str, float]  # category -> fraction of prompts scored True
    counts: dict[str, int]  # category -> number of prompts scored
    overall: float | None  # mean accuracy over the OVERALL_CATEGORIES present
    heldout: float | None  # reported beside `overall`, not inside it
    exact: dict[str, float] = field(default_factory=dict)  # category -> fraction of images with exactly the asked objects
    exact_overall: float | None = None  # mean of `exact` over the OVERALL_CATEGORIES present (heldout beside it, as above)

    @classmethod
    def from_results(cls, results: dict[str, list[bool]], exact: dict[str, list[bool]] | None = None) -> ShapesReport:
        """`results`: category -> one verdict per image; `exact`: category -> one `is_exact` per image (optional)."""
        order = [c for c in BENCHMARK_CATEGORIES if c in results]
        accuracy = {c: float(np.mean(results[c])) for c in order}
        counts = {c: len(results[c]) for c in order}
        exact_share = {c: float(np.mean(exact[c])) for c in order if c in (exact or {})}
        return cls(accuracy, counts, _overall(accuracy), accuracy.get("heldout"), exact_share, _overall(exact_share))

    def to_dict(self) -> dict:
        return {
            "overall": self.overall,
            "heldout": self.heldout,
            "accuracy": dict(self.accuracy),
            "counts": dict(self.counts),
            "exact_overall": self.exact_overall,
            "exact": dict(self.exact),
        }

    def to_metrics(self) -> dict[str, float | None]:
        """The report as training metrics: `shapes_overall`, `shapes_heldout`, `shapes_<category>` and, when measured,
        `shapes_exact` (`exact_overall`)."""
        metrics = {"shapes_overall": self.overall, "shapes_heldout": self.heldout}
        metrics.update({f"shapes_{category}": value for category, value in self.accuracy.items() if category != "heldout"})
        if self.exact:
            metrics["shapes_exact"] = self.exact_overall
        return metrics

    def format_table(self) -> str:
        exact = bool(self.exact)
        lines = [f"{'category':<10} {'accuracy':>8}" + (f" {'exact':>6}" if exact else "") + f" {'n':>6}"]
        for category, value in self.accuracy.items():
            column = f" {self.exact[category]:>6.3f}" if exact else ""
            lines.append(f"{category:<10} {value:>8.3f}{column} {self.counts[category]:>6}")
        if self.overall is not None:
            lines.append(f"{'overall':<10} {self.overall:>8.3f}" + (f" {self.exact_overall:>6.3f}" if self.exact_overall is not None else ""))
        return "\n".join(lines)


def _overall(shares: dict[str, float]) -> float | None:
    """Mean of the OVERALL_CATEGORIES present (heldout is reported beside it), None when none is."""
    present = [shares[c] for c in OVERALL_CATEGORIES if c in shares]
    return float(np.mean(present)) if present else None
