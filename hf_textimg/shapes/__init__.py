"""The Shapes world: captioned images with exact ground truth, and a scorer for generated ones (spec:
docs/shapes-world.md).

One job per module:

- `vocab`: colours, shapes, sizes, positions, held-out pairs; the `Scene` an image is drawn from.
- `layout`: `ShapesLayout`, where each scene kind puts what its caption leaves open (the spec's "any" or "canonical").
- `language`: captions and parsing (`ShapesQuery`, `caption_query`, `parse_prompt`, `canonical_relation_prompt`).
- `benchmark`: which queries are reserved for scoring (`is_benchmark_query`), `benchmark_prompts`.
- `sampling`: random queries and scenes of a split (`sample_scene`, `scene_from_query`).
- `render`: scenes -> uint8 images (`render_scene`, `render_batch`, `shape_alpha`).
- `hard_negatives`: a caption with one fact changed (`hard_negative_caption`).
- `dataset`: `build_shapes_dataset` (a `datasets.DatasetDict`) and `ShapesStream` (a torch `IterableDataset`).
- `scorer`: `ShapesScorer` reads generated images and scores them against prompts; `ShapesReport`.
- `variety`: `measure_variety`, distinct layouts where a caption leaves them open, against the spec's sampler.
- `evaluation`: `evaluate_shapes` and `evaluate_shapes_variety`, the one way a pipeline is scored on the benchmark.
- `arguments`: `ShapesDataArguments`, the training scripts' Shapes options.

Names are imported from their module on first use (`from hf_textimg.shapes import ShapesScorer` loads the scorer
only), so reading a caption does not import `datasets` or scipy.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "vocab": ("PALETTE", "COLORS", "SHAPES", "SIZES", "BASE_SIZE", "IMAGE_SIZES", "POSITIONS", "CELL_NAMES", "HELDOUT_PAIRS",
              "SCENE_KINDS", "RELATIONS", "SPLITS", "COUNT_WORDS", "PLURALS", "ALL_COMBOS", "TRAIN_COMBOS", "HELDOUT_COMBOS",
              "Scene", "ShapeObject", "cell_center", "extent_px"),
    "layout": ("LAYOUT_CHOICES", "CANONICAL_COUNT_CELLS", "CANONICAL_PAIR_CELLS", "CANONICAL_SINGLE_CELL", "CANONICAL_SINGLE_SIZE",
               "ShapesLayout"),
    "language": ("ObjectQuery", "ShapesQuery", "canonical_relation_prompt", "caption_query", "caption_scene", "parse_prompt", "query_key",
                 "scene_query"),
    "benchmark": ("BENCHMARK_CATEGORIES", "PROMPT_SETS", "BenchmarkPrompt", "benchmark_prompts", "benchmark_query_pool",
                  "is_benchmark_query", "validation_query_pool"),
    "sampling": ("check_kind_probs", "objects_overlap", "sample_scene", "scene_from_query"),
    "render": ("render_batch", "render_scene", "shape_alpha"),
    "hard_negatives": ("hard_negative_caption",),
    "dataset": ("SHAPES_FEATURES", "ShapesStream", "build_shapes_dataset"),
    "scorer": ("OVERALL_CATEGORIES", "DetectedObject", "ShapesReport", "ShapesScorer", "generate_in_batches", "is_exact", "score_detections",
               "score_image", "to_rgb_array"),
    "variety": ("OPEN_LAYOUT_CATEGORIES", "ShapesVarietyReport", "check_images_per_prompt", "distinct_layouts", "layout_of", "measure_variety",
                "reference_distinct", "spec_renders", "variety_prompts"),
    "evaluation": ("evaluate_shapes", "evaluate_shapes_variety"),
    "arguments": ("ShapesDataArguments",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
