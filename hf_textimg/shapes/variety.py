"""Variety: where a caption leaves the layout open, does a model vary it as much as the data does?

A prompt such as "three blue squares" says nothing about where the squares go, and the spec's sampler
(`scene_from_query`) puts them in any three distinct cells. A model that always draws one layout for it can score
1.0 on every category and still show a user the same picture eight times. `measure_variety` asks a pipeline for K
images of each open-layout prompt and counts the distinct layouts among them, where a layout is the set of grid
cells the detected objects occupy (`layout_of`); the reference is the same count on K renders of the spec's own
sampler for the same query (`reference_distinct`, averaged over repeats). Ratio = model / reference per category;
1.0 means as varied as the data. For 8 draws the spec gives about 5.5 distinct cells for a single object
(9 * (1 - (8/9)^8)), 7.3 / 7.7 / 7.8 for two / three / four objects (of 36 / 84 / 126 cell sets), 7.3 for a pair
and 5.5 for a relation (9 layouts per relation).

Open-layout prompts (`variety_prompts`): those of `benchmark_prompts(N)` (so never asked in training) in the
categories of OPEN_LAYOUT_CATEGORIES that name no position. Junk (noise read as many small objects) also varies:
read the ratio beside accuracy and exactness.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .benchmark import BENCHMARK_CATEGORIES, BenchmarkPrompt, _stable_hash, benchmark_prompts
from .language import ShapesQuery, query_key
from .render import render_batch
from .sampling import scene_from_query
from .scorer import DetectedObject, ShapesScorer, generate_in_batches

__all__ = ["OPEN_LAYOUT_CATEGORIES", "ShapesVarietyReport", "check_images_per_prompt", "distinct_layouts", "layout_of",
           "measure_variety", "reference_distinct", "spec_renders", "variety_prompts"]

# Categories whose prompts leave the cells open (position names one; its prompts are never open).
OPEN_LAYOUT_CATEGORIES = tuple(c for c in BENCHMARK_CATEGORIES if c != "position")


def check_images_per_prompt(images_per_prompt: int, name: str = "images_per_prompt") -> int:
    """K must be a whole number >= 2: with one image per prompt every model has exactly one layout."""
    if isinstance(images_per_prompt, bool) or not isinstance(images_per_prompt, (int, np.integer)) or images_per_prompt < 2:
        raise ValueError(f"{name} must be a whole number >= 2 (one image per prompt always has one layout), got {images_per_prompt!r}")
    return int(images_per_prompt)


def layout_of(objects: Sequence[DetectedObject]) -> frozenset[int]:
    """The cells (row * 3 + col, 0 = top left) the objects occupy; two objects in one cell count once."""
    return frozenset(row * 3 + col for col, row in (o.cell for o in objects))


def distinct_layouts(images: Sequence, scorer: ShapesScorer | None = None) -> int:
    """How many different layouts (`layout_of` the detected objects) the images show."""
    scorer = scorer or ShapesScorer()
    return len({layout_of(scorer.detect(image)) for image in images})


def variety_prompts(n_per_category: int = 10, seed: int = 1234, prompt_set: str = "benchmark") -> list[BenchmarkPrompt]:
    """The open-layout prompts among `benchmark_prompts(n_per_category, seed, prompt_set)`: those of
    OPEN_LAYOUT_CATEGORIES naming no position. The validation set's heldout prompts all name one, so it has no
    heldout row."""
    return [p for p in benchmark_prompts(n_per_category, seed, prompt_set) if p.category in OPEN_LAYOUT_CATEGORIES and p.query.position is None]


def spec_renders(query: ShapesQuery, images_per_prompt: int, rng: np.random.Generator) -> np.ndarray:
    """K renders (K, 32, 32, 3) uint8 of the spec's own scenes for `query`: what the data shows for that caption."""
    return render_batch([scene_from_query(query, rng) for _ in range(images_per_prompt)])


@functools.lru_cache(maxsize=4096)  # a few milliseconds per repeat; the same prompts recur across calls
def reference_distinct(query: ShapesQuery, images_per_prompt: int = 8, repeats: int = 16, seed: int = 0) -> float:
    """Mean distinct layouts among `images_per_prompt` spec renders of `query`, over `repeats` independent draws,
    read by the default `ShapesScorer` (as a model's images are). The draws depend only on (query, K, repeats, seed)."""
    rng = np.random.default_rng([seed, _stable_hash(*query_key(query))])
    return float(np.mean([distinct_layouts(spec_renders(query, images_per_prompt, rng)) for _ in range(repeats)]))


@dataclass
class ShapesVarietyReport:
    images_per_prompt: int  # K
    distinct: dict[str, float]  # category -> the model's mean distinct layouts per prompt (of K)
    reference: dict[str, float]  # category -> the spec sampler's mean for the same prompts
    counts: dict[str, int]  # category -> prompts measured

    @property
    def ratio(self) -> dict[str, float]:
        """category -> distinct / reference (1.0: as varied as the data)."""
        return {c: self.distinct[c] / self.reference[c] for c in self.distinct}

    @property
    def mean_ratio(self) -> float | None:
        """Mean of the per-category ratios (None when no category was measured)."""
        return float(np.mean(list(self.ratio.values()))) if self.distinct else None

    def to_dict(self) -> dict:
        return {"images_per_prompt": self.images_per_prompt, "mean_ratio": self.mean_ratio, "ratio": self.ratio,
                "distinct": dict(self.distinct), "reference": dict(self.reference), "counts": dict(self.counts)}

    def to_metrics(self) -> dict[str, float | None]:
        """`shapes_variety` (the mean ratio) and `shapes_variety_<category>` (each ratio)."""
        return {"shapes_variety": self.mean_ratio, **{f"shapes_variety_{c}": r for c, r in self.ratio.items()}}

    def format_table(self) -> str:
        k = self.images_per_prompt
        lines = [f"variety: distinct layouts of {k} images per prompt, model vs the spec's sampler (data)",
                 f"{'category':<10} {'model':>6} {'data':>6} {'ratio':>6} {'n':>6}"]
        for c, ratio in self.ratio.items():
            lines.append(f"{c:<10} {self.distinct[c]:>6.2f} {self.reference[c]:>6.2f} {ratio:>6.3f} {self.counts[c]:>6}")
        if self.mean_ratio is not None:
            lines.append(f"{'mean':<10} {'':>6} {'':>6} {self.mean_ratio:>6.3f}")
        return "\n".join(lines)


def measure_variety(
    generate_fn: Callable[[list[str]], Sequence],
    images_per_prompt: int = 8,
    n_per_category: int = 10,
    seed: int = 1234,
    prompt_set: str = "benchmark",
    batch_size: int = 128,
    reference_repeats: int = 16,
    scorer: ShapesScorer | None = None,
) -> ShapesVarietyReport:
    """Variety of `generate_fn` (prompts -> one image each, as for `ShapesScorer.evaluate_pipeline`) on
    `variety_prompts(n_per_category, seed, prompt_set)`: each prompt is passed `images_per_prompt` times (so any
    pipeline works, without `num_images_per_prompt`), `batch_size` prompts per call."""
    k = check_images_per_prompt(images_per_prompt)
    scorer = scorer or ShapesScorer()
    prompts = variety_prompts(n_per_category, seed, prompt_set)
    images = generate_in_batches(generate_fn, [p.prompt for p in prompts for _ in range(k)], batch_size)
    distinct: dict[str, list[int]] = {}
    reference: dict[str, list[float]] = {}
    for index, prompt in enumerate(prompts):
        distinct.setdefault(prompt.category, []).append(distinct_layouts(images[index * k : (index + 1) * k], scorer))
        reference.setdefault(prompt.category, []).append(reference_distinct(prompt.query, k, reference_repeats))
    return ShapesVarietyReport(
        k, {c: float(np.mean(v)) for c, v in distinct.items()}, {c: float(np.mean(v)) for c, v in reference.items()},
        {c: len(v) for c, v in distinct.items()},
    )
