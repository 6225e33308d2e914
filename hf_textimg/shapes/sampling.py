"""Sampling scenes: a random query of a split, then a random scene whose caption is exactly that query.

What a caption leaves open (size, cell, jitter) is drawn at random, or fixed by a canonical `ShapesLayout`. The
`train` and `validation` splits never use a held-out colour-shape pair nor a benchmark query; `heldout` always uses
a held-out pair (docs/shapes-world.md, "Held-out compositions").
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np

from .benchmark import is_benchmark_query
from .language import ObjectQuery, ShapesQuery
from .layout import (
    CANONICAL_COUNT_CELLS,
    CANONICAL_PAIR_CELLS,
    CANONICAL_RELATION_ENDS,
    CANONICAL_RELATION_LINE,
    CANONICAL_SINGLE_CELL,
    CANONICAL_SINGLE_SIZE,
    ShapesLayout,
)
from .vocab import (
    ALL_COMBOS,
    BASE_SIZE,
    CELLS,
    HELDOUT_COMBOS,
    POSITIONS,
    RELATIONS,
    SCENE_KINDS,
    SPLITS,
    TRAIN_COMBOS,
    Scene,
    ShapeObject,
    cell_center,
    extent_px,
)

# Kind mixture per split; `heldout` is mostly single scenes.
_KIND_PROBS = {"train": (0.4, 0.2, 0.2, 0.2), "heldout": (0.7, 0.1, 0.1, 0.1)}
_KIND_CUMULATIVE = {split: tuple(itertools.accumulate(p)) for split, p in _KIND_PROBS.items()}
_P_NAME_SIZE, _P_NAME_POSITION = 0.5, 0.7  # single captions: chance to name size / position


def check_kind_probs(kind_probs: Sequence[float] | None) -> tuple[float, ...] | None:
    """`kind_probs` (weights of SCENE_KINDS, in that order) as a tuple, after checking it."""
    if kind_probs is None:
        return None
    probs = tuple(float(p) for p in kind_probs)
    if len(probs) != len(SCENE_KINDS) or min(probs) < 0 or sum(probs) <= 0:
        raise ValueError(
            f"kind_probs must be {len(SCENE_KINDS)} non-negative weights of {SCENE_KINDS} (in that order) with a "
            f"positive sum, e.g. (0.4, 0.2, 0.2, 0.2); got {kind_probs!r}."
        )
    return probs


@functools.lru_cache(maxsize=32)
def _kind_cumulative(heldout: bool, kind_probs: tuple | None) -> tuple[float, ...]:
    """Cumulative kind weights for `sample_scene`, checked and summed once per mix rather than once per scene."""
    if heldout or kind_probs is None:
        return _KIND_CUMULATIVE["heldout" if heldout else "train"]
    return tuple(itertools.accumulate(check_kind_probs(kind_probs)))


_SPEC_LAYOUT = ShapesLayout.spec()  # made once: a ShapesLayout checks its fields whenever one is made


def check_layout(layout: ShapesLayout | None) -> ShapesLayout:
    """`layout` (None: the spec's) after checking it is a `ShapesLayout`."""
    if layout is None:
        return _SPEC_LAYOUT
    if not isinstance(layout, ShapesLayout):
        raise ValueError(f"layout must be a ShapesLayout (e.g. ShapesLayout.canonical('count')) or None, got {layout!r}")
    return layout


def pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]

def _two_combos(rng: np.random.Generator, heldout: bool) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two different (colour, shape) combos; with `heldout`, at least one is a held-out pair."""
    if not heldout:
        i, j = rng.choice(len(TRAIN_COMBOS), size=2, replace=False)
        return TRAIN_COMBOS[i], TRAIN_COMBOS[j]
    a = pick(rng, HELDOUT_COMBOS)
    b = pick(rng, [c for c in ALL_COMBOS if c != a])
    return (a, b) if rng.random() < 0.5 else (b, a)


def _sample_query(rng: np.random.Generator, kind: str, heldout: bool) -> ShapesQuery:
    if kind == "single":
        color, shape = pick(rng, HELDOUT_COMBOS if heldout else TRAIN_COMBOS)
        size = pick(rng, ("small", "large")) if rng.random() < _P_NAME_SIZE else None
        position = pick(rng, list(POSITIONS)) if rng.random() < _P_NAME_POSITION else None
        return ShapesQuery("single", (ObjectQuery(color, shape, size),), position=position)
    if kind == "count":
        color, shape = pick(rng, HELDOUT_COMBOS if heldout else TRAIN_COMBOS)
        return ShapesQuery("count", (ObjectQuery(color, shape),), count=int(rng.integers(2, 5)))
    a, b = _two_combos(rng, heldout)
    objects = (ObjectQuery(*a), ObjectQuery(*b))
    if kind == "pair":
        return ShapesQuery("pair", objects)
    if kind == "relation":
        return ShapesQuery("relation", objects, relation=pick(rng, RELATIONS))
    raise ValueError(f"unknown scene kind {kind!r}; expected one of {SCENE_KINDS}")


def _place_object(
    rng: np.random.Generator, color: str, shape: str, size_name: str, cell: tuple[int, int], image_size: int
) -> ShapeObject:
    """Centre = cell centre + integer jitter in {-1, 0, 1} px (x2 at 64), keeping the box on the canvas."""
    extent, step = extent_px(size_name, image_size), image_size / BASE_SIZE
    center = []
    for c in cell_center(cell, image_size):
        shifted = [c + j * step for j in (-1, 0, 1)]
        center.append(pick(rng, [x for x in shifted if x - extent / 2 >= 0 and x + extent / 2 <= image_size]))
    return ShapeObject(color, shape, size_name, cell, (center[0], center[1]))


def _footprint(obj: ShapeObject, image_size: int) -> tuple[int, int, int, int]:
    half = extent_px(obj.size, image_size) / 2
    x, y = obj.center
    return math.floor(x - half), math.floor(y - half), math.ceil(x + half), math.ceil(y + half)


def objects_overlap(objects: Sequence[ShapeObject], image_size: int) -> bool:
    """Whether any two objects' pixel footprints (bounding boxes rounded outwards) intersect."""
    boxes = [_footprint(o, image_size) for o in objects]
    for i, (ax0, ay0, ax1, ay1) in enumerate(boxes):
        for bx0, by0, bx1, by1 in boxes[i + 1 :]:
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                return True
    return False



def _single_spot(query: ShapesQuery, rng: np.random.Generator, layout: ShapesLayout) -> tuple[str, tuple[int, int]]:
    """Size name and cell of a single scene's object: what the caption names, else canonical or random (size first)."""
    canonical = layout.is_canonical("single")
    size_name = query.objects[0].size or (CANONICAL_SINGLE_SIZE if canonical else pick(rng, ("small", "large")))
    if query.position:
        return size_name, POSITIONS[query.position]
    return size_name, CANONICAL_SINGLE_CELL if canonical else pick(rng, CELLS)


def _distinct_cells(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    return [CELLS[i] for i in rng.choice(len(CELLS), size=n, replace=False)]


def _relation_cells(relation: str, rng: np.random.Generator, layout: ShapesLayout) -> list[tuple[int, int]]:
    """Cells of a relation's two objects: one line (row for left/right, column for above/below) and two of its cells,
    the first object's index smaller for "left of" and "above"."""
    if layout.is_canonical("relation"):
        line, (lo, hi) = CANONICAL_RELATION_LINE, CANONICAL_RELATION_ENDS
    else:
        line = int(rng.integers(3))
        lo, hi = sorted(int(i) for i in rng.choice(3, size=2, replace=False))
    first, second = (lo, hi) if relation in ("left of", "above") else (hi, lo)
    if relation in ("left of", "right of"):  # same row
        return [(first, line), (second, line)]
    return [(line, first), (line, second)]  # same column


def _object_spots(query: ShapesQuery, rng: np.random.Generator, layout: ShapesLayout) -> list[tuple[ObjectQuery, str, tuple[int, int]]]:
    """(object, size name, cell) of every object of a scene asking `query`; only single objects may be large."""
    objs = query.objects
    if query.kind == "single":
        return [(objs[0], *_single_spot(query, rng, layout))]
    if query.kind == "count":
        cells = CANONICAL_COUNT_CELLS[query.count] if layout.is_canonical("count") else _distinct_cells(rng, query.count)
        return [(objs[0], "small", cell) for cell in cells]
    if query.kind == "pair":
        cells = CANONICAL_PAIR_CELLS if layout.is_canonical("pair") else _distinct_cells(rng, 2)
    elif query.kind == "relation":
        cells = _relation_cells(query.relation, rng, layout)
    else:
        raise ValueError(f"unknown query kind {query.kind!r}")
    return [(obj, "small", cell) for obj, cell in zip(objs, cells)]


def scene_from_query(query: ShapesQuery, rng: np.random.Generator, size: int = BASE_SIZE, layout: ShapesLayout | None = None) -> Scene:
    """A random scene whose caption is exactly `query`: what the caption does not say is random, or fixed by
    `layout` (None: the spec's, all random; see `ShapesLayout`). Objects never overlap (the spec's rule)."""
    layout = check_layout(layout)
    for _ in range(100):
        placed = [_place_object(rng, obj.color, obj.shape, size_name, cell, size) for obj, size_name, cell in _object_spots(query, rng, layout)]
        if query.kind == "single":  # the caption names the size / position only when the query does
            scene = Scene("single", placed, name_size=query.objects[0].size is not None, name_position=query.position is not None, size=size)
        else:
            scene = Scene(query.kind, placed, relation=query.relation, size=size)
        if not objects_overlap(scene.objects, size):
            return scene
    raise RuntimeError(f"could not place a non-overlapping scene for {query}")


def sample_scene(
    rng: np.random.Generator,
    kind: str | None = None,
    split: str = "train",
    size: int = BASE_SIZE,
    kind_probs: Sequence[float] | None = None,
    layout: ShapesLayout | None = None,
) -> Scene:
    """Sample a scene of `kind` (random kind when None) for a split.

    train / validation: no held-out pair anywhere, and never a benchmark query; kinds drawn with
    weights `kind_probs` (of SCENE_KINDS; default 0.4 single, 0.2 each other kind).
    heldout: at least one object uses a held-out pair (mostly single scenes; `kind_probs` is ignored).
    `layout`: where each kind puts what its caption leaves open (None: the spec; see `ShapesLayout`).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if kind is not None and kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {SCENE_KINDS}")
    layout = check_layout(layout)
    heldout = split == "heldout"
    cumulative = _kind_cumulative(heldout, None if kind_probs is None else tuple(kind_probs))
    while True:  # rejection: about 3 in 10 train queries are reserved for the benchmark
        query_kind = kind or SCENE_KINDS[bisect.bisect(cumulative, rng.random() * cumulative[-1])]
        query = _sample_query(rng, query_kind, heldout)
        if heldout or not is_benchmark_query(query):
            return scene_from_query(query, rng, size, layout)
