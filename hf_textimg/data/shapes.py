"""The Shapes world: captioned images with exact ground truth (spec: `shapes-world.md`).

Every image is drawn from a `Scene`, so every caption is exactly true and a generated
image can be scored against the prompt that asked for it
(`hf_textimg.evaluation.shapes_scorer`). The module holds four things:

1. Vocabulary and geometry: palette, shapes, sizes, the 3x3 position grid.
2. The caption language: `ShapesQuery` is what a caption asks for; `caption_query`
   writes it (canonical template or a random paraphrase), `parse_prompt` reads it back,
   `query_key` gives the structured key two captions share when they ask the same thing.
3. Sampling and rendering: `sample_scene` -> `Scene`, `render_scene` / `render_batch`.
   Rendering pastes cached anti-aliased "stamps": per (shape, extent, sub-pixel offset)
   the coverage alpha is computed once (exact along x, 64 scanlines per pixel) and every pixel is
   `round(alpha * colour + (1 - alpha) * 255)`, so interiors are exactly the palette
   colour and the background exactly white.
4. Data: `build_shapes_dataset` (a `DatasetDict` with train / validation / heldout) and
   `ShapesStream` (infinite on-the-fly training samples).

Two sets of queries never reach the `train` split (nor `validation`, which has the same
distribution): anything using a held-out (colour, shape) pair, and the benchmark queries
(`is_benchmark_query`, a fixed rule on `query_key`, so every `benchmark_prompts(n, seed)`
draw is unseen in training whatever n and seed are).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import io
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import datasets
import numpy as np
import torch
from PIL import Image

# ---------------------------------------------------------------------------------------
# 1. Vocabulary and geometry
# ---------------------------------------------------------------------------------------

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (240, 210, 40),
    "green": (40, 170, 70),
    "cyan": (40, 190, 210),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "pink": (240, 110, 180),
}
COLORS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "plus")
SIZES = {"small": 6, "large": 10}  # extent in px at 32 px; scales linearly with image size
BASE_SIZE = 32
POSITIONS: dict[str, tuple[int, int]] = {  # name -> (col, row), col from the left, row from the top
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "center": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}
CELL_NAMES: dict[tuple[int, int], str] = {cell: name for name, cell in POSITIONS.items()}
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "plus"),
        ("green", "triangle"),
        ("blue", "circle"),
        ("yellow", "square"),
        ("purple", "plus"),
        ("cyan", "triangle"),
    }
)
SCENE_KINDS = ("single", "count", "pair", "relation")
RELATIONS = ("left of", "right of", "above", "below")
SPLITS = ("train", "validation", "heldout")
# Where a relation scene puts its two objects. "any": every line and every ordered pair of cells on it
# that the relation allows (9 layouts per relation). "canonical": the middle line, outer cells, so each
# relation has one layout ("left of": first object at "left", second at "right"; "above": "top", "bottom").
# The spec leaves the layout distribution open; "canonical" trades layout variety for a relation a small
# diffusion model learns like a position word (README, "Diffusion").
RELATION_LAYOUTS = ("any", "canonical")
# Where a count scene puts its n objects. "any": n random distinct cells (the spec's count scenes).
# "canonical": one layout per count, CANONICAL_COUNT_CELLS (two: the middle row's outer cells; three: the
# middle row; four: the corners), so drawing exactly n objects becomes drawing one learned layout; the same
# trade as the relation layout (README, "Diffusion": a small model draws random-cell counts one object off).
COUNT_LAYOUTS = ("any", "canonical")
CANONICAL_COUNT_CELLS: dict[int, tuple[tuple[int, int], ...]] = {
    2: ((0, 1), (2, 1)),
    3: ((0, 1), (1, 1), (2, 1)),
    4: ((0, 0), (2, 0), (0, 2), (2, 2)),
}
# Where a single scene puts an object whose caption leaves its size or position open. "any": a random size and
# cell (the spec's single scenes). "canonical": large and in the centre cell (CANONICAL_SINGLE_SIZE,
# CANONICAL_SINGLE_CELL); a size or position the caption names is kept. The spec's scorer checks neither for
# an unnamed size or position, so this costs only variety; it is the one-shot decoder's trade (README,
# "One-shot generation": one forward pass cannot sample where an object goes, it draws the average of all cells).
SINGLE_LAYOUTS = ("any", "canonical")
CANONICAL_SINGLE_SIZE, CANONICAL_SINGLE_CELL = "large", (1, 1)
# Where a pair scene ("a red circle and a blue square") puts its two objects. "any": two random distinct cells
# (the spec's pair scenes). "canonical": the middle row's outer cells, the first-named object on the left
# (CANONICAL_PAIR_CELLS), the same trade as the other canonical layouts.
PAIR_LAYOUTS = ("any", "canonical")
CANONICAL_PAIR_CELLS: tuple[tuple[int, int], tuple[int, int]] = ((0, 1), (2, 1))
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "plus": "pluses"}

ALL_COMBOS = tuple((c, s) for c in COLORS for s in SHAPES)
TRAIN_COMBOS = tuple(combo for combo in ALL_COMBOS if combo not in HELDOUT_PAIRS)
HELDOUT_COMBOS = tuple(combo for combo in ALL_COMBOS if combo in HELDOUT_PAIRS)
_CELLS = tuple(POSITIONS.values())
_SIZE_OPTIONS = (None, "small", "large")  # what a single caption may say about size

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


_LAYOUT_CHOICES = {"single_layout": SINGLE_LAYOUTS, "count_layout": COUNT_LAYOUTS, "pair_layout": PAIR_LAYOUTS, "relation_layout": RELATION_LAYOUTS}


def _layout_kwargs(*, single_layout: str, count_layout: str, pair_layout: str, relation_layout: str) -> dict[str, str]:
    """The four per-kind layouts as keyword arguments for `scene_from_query`, after checking each."""
    layouts = {"single_layout": single_layout, "count_layout": count_layout, "pair_layout": pair_layout, "relation_layout": relation_layout}
    for name, value in layouts.items():
        if value not in _LAYOUT_CHOICES[name]:
            raise ValueError(f"unknown {name} {value!r}; expected one of {_LAYOUT_CHOICES[name]}")
    return layouts


def extent_px(size_name: str, image_size: int = BASE_SIZE) -> float:
    """Side of an object's bounding box in pixels at `image_size`."""
    return SIZES[size_name] * image_size / BASE_SIZE


def cell_center(cell: tuple[int, int], image_size: int = BASE_SIZE) -> tuple[float, float]:
    """Centre (x, y) of a grid cell: 1/6, 1/2 or 5/6 of the side."""
    col, row = cell
    return ((col + 0.5) * image_size / 3, (row + 0.5) * image_size / 3)


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


def shape_alpha(
    shape: str, extent: float, center: tuple[float, float], canvas: int | tuple[int, int]
) -> np.ndarray:
    """Coverage alpha in [0, 1] of one shape on a canvas of `canvas` = size or (height, width).

    `center` is (x, y) in pixels; pixel (row i, col j) covers [j, j+1) x [i, i+1).
    Returns a float (height, width) array; the renderer and the scorer's templates both use it.
    """
    height, width = (canvas, canvas) if isinstance(canvas, int) else canvas
    out = np.zeros((height, width), dtype=np.float64)
    key, x0, y0 = _stamp_key(shape, extent, center)
    alpha = _stamp(*key)
    sy, sx = _clip(y0, alpha.shape[0], height), _clip(x0, alpha.shape[1], width)
    if sy and sx:
        out[sy[0] : sy[1], sx[0] : sx[1]] = alpha[sy[2] : sy[3], sx[2] : sx[3]]
    return out


def _clip(start: int, length: int, limit: int) -> tuple[int, int, int, int] | None:
    """Canvas range [a, b) and stamp range [c, d) of a stamp placed at `start`, or None if off canvas."""
    a, b = max(start, 0), min(start + length, limit)
    if a >= b:
        return None
    return a, b, a - start, b - start


# ---------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeObject:
    color: str
    shape: str
    size: str  # "small" | "large"
    cell: tuple[int, int]  # (col, row) in the 3x3 grid
    center: tuple[float, float]  # (x from the left, y from the top) in pixels at the scene's size

    def to_dict(self) -> dict:
        return {
            "color": self.color,
            "shape": self.shape,
            "size": self.size,
            "cell": list(self.cell),
            "center": [float(self.center[0]), float(self.center[1])],
        }


@dataclass
class Scene:
    kind: str  # one of SCENE_KINDS
    objects: list[ShapeObject]
    relation: str | None = None  # relation scenes: objects[0] {relation} objects[1]
    name_size: bool = True  # single scenes: whether the caption names the size ...
    name_position: bool = True  # ... and the position
    size: int = BASE_SIZE  # image size the object centres are given at


# ---------------------------------------------------------------------------------------
# 2. The caption language
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectQuery:
    color: str
    shape: str
    size: str | None = None  # only single captions name a size, and only sometimes

    @property
    def combo(self) -> tuple[str, str]:
        return (self.color, self.shape)


@dataclass(frozen=True)
class ShapesQuery:
    """What a caption asks for.

    kind "single": objects = (one,), optional position name.
    kind "count": objects = (the repeated object,), count = 2..4.
    kind "pair": objects = (a, b), both present.
    kind "relation": objects = (a, b), "a {relation} b".
    """

    kind: str
    objects: tuple[ObjectQuery, ...]
    count: int | None = None
    position: str | None = None
    relation: str | None = None

    @property
    def uses_heldout(self) -> bool:
        return any(o.combo in HELDOUT_PAIRS for o in self.objects)

    def key(self) -> tuple:
        return query_key(self)


_FLIPPED = {"right of": "left of", "below": "above"}


def query_key(query: ShapesQuery) -> tuple:
    """Structured key: equal for two captions that ask for the same thing.

    Pairs are unordered; "b right of a" is the same ask as "a left of b" (and below/above).
    This is the one definition of "the same query" that the benchmark exclusion uses.
    """
    objs = query.objects
    if query.kind == "single":
        return ("single", objs[0].color, objs[0].shape, objs[0].size, query.position)
    if query.kind == "count":
        return ("count", objs[0].color, objs[0].shape, query.count)
    if query.kind == "pair":
        return ("pair", *sorted(o.combo for o in objs))
    if query.kind == "relation":
        a, b, relation = objs[0].combo, objs[1].combo, query.relation
        if relation in _FLIPPED:
            a, b, relation = b, a, _FLIPPED[relation]
        return ("relation", relation, a, b)
    raise ValueError(f"unknown query kind {query.kind!r}")


def scene_query(scene: Scene) -> ShapesQuery:
    """The query a scene's caption expresses (independent of which paraphrase is used)."""
    objs = scene.objects
    if scene.kind == "single":
        obj = objs[0]
        return ShapesQuery(
            "single",
            (ObjectQuery(obj.color, obj.shape, obj.size if scene.name_size else None),),
            position=CELL_NAMES[obj.cell] if scene.name_position else None,
        )
    if scene.kind == "count":
        return ShapesQuery("count", (ObjectQuery(objs[0].color, objs[0].shape),), count=len(objs))
    if scene.kind == "pair":
        return ShapesQuery("pair", tuple(ObjectQuery(o.color, o.shape) for o in objs))
    if scene.kind == "relation":
        return ShapesQuery("relation", tuple(ObjectQuery(o.color, o.shape) for o in objs), relation=scene.relation)
    raise ValueError(f"unknown scene kind {scene.kind!r}; expected one of {SCENE_KINDS}")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"  # in this vocabulary only "orange" takes "an"


def _noun_phrase(obj: ObjectQuery) -> str:
    words = [w for w in (obj.size, obj.color, obj.shape) if w]
    return f"{_article(words[0])} {' '.join(words)}"


def _position_phrases(position: str) -> list[str]:
    phrases = [f"at the {position}"]
    if " " in position:  # corners
        phrases.append(f"in the {position} corner")
    elif position in ("left", "right"):
        phrases.append(f"on the {position}")
    elif position == "center":
        phrases.append("in the center")
    return phrases


_FRAMES = ("{}", "there is {}", "a picture of {}", "{} on a white background")
_PLURAL_FRAMES = ("{}", "there are {}", "a picture of {}", "{} on a white background")
_RELATION_PHRASES = {
    "left of": ("left of", "to the left of"),
    "right of": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below",),
}


def _choose(options: Sequence[str], rng: np.random.Generator | None) -> str:
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def caption_query(query: ShapesQuery, rng: np.random.Generator | None = None) -> str:
    """Write a query as lowercase English: the canonical template when `rng` is None,
    else a random paraphrase. Every paraphrase keeps the vocabulary words unchanged."""
    objs = query.objects
    if query.kind == "single":
        core = _noun_phrase(objs[0])
        if query.position is not None:
            core += " " + _choose(_position_phrases(query.position), rng)
        return _choose(_FRAMES, rng).format(core)
    if query.kind == "count":
        obj = objs[0]
        core = f"{COUNT_WORDS[query.count]} {obj.color} {PLURALS[obj.shape]}"
        return _choose(_PLURAL_FRAMES, rng).format(core)
    if query.kind == "pair":
        return _choose(_FRAMES, rng).format(f"{_noun_phrase(objs[0])} and {_noun_phrase(objs[1])}")
    if query.kind == "relation":
        a, b = _noun_phrase(objs[0]), _noun_phrase(objs[1])
        core = f"{a} {_choose(_RELATION_PHRASES[query.relation], rng)} {b}"
        if rng is not None and rng.random() < 0.2:
            return f"{a} is {_choose(_RELATION_PHRASES[query.relation], rng)} {b}"
        return _choose(_FRAMES, rng).format(core)
    raise ValueError(f"unknown query kind {query.kind!r}")


def caption_scene(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """Caption a scene: canonical template when `rng` is None, else a random paraphrase."""
    return caption_query(scene_query(scene), rng)


def _alternation(words) -> str:
    return "|".join(sorted(map(re.escape, words), key=len, reverse=True))  # longest first


_COLOR_RE, _SHAPE_RE = _alternation(COLORS), _alternation(SHAPES)
_NP = rf"an? (?:(?:small|large) )?(?:{_COLOR_RE}) (?:{_SHAPE_RE})"
_NP_PARTS = re.compile(rf"^an? (?:(small|large) )?({_COLOR_RE}) ({_SHAPE_RE})$")
_POSITION_PHRASE = rf"(?:at|in|on) the ({_alternation(POSITIONS)})(?: corner)?"
_SINGLE_RE = re.compile(rf"^({_NP})(?: {_POSITION_PHRASE})?$")
_COUNT_RE = re.compile(
    rf"^({_alternation(COUNT_WORDS.values())}) ({_COLOR_RE}) ({_alternation(PLURALS.values())})$"
)
_PAIR_RE = re.compile(rf"^({_NP}) and ({_NP})$")
_RELATION_RE = re.compile(rf"^({_NP}) (?:is )?(?:to the )?({_alternation(RELATIONS)}) ({_NP})$")
_PREFIXES = ("there is ", "there are ", "a picture of ")
_SUFFIX = " on a white background"
_WORD_COUNTS = {word: n for n, word in COUNT_WORDS.items()}
_SINGULARS = {plural: shape for shape, plural in PLURALS.items()}


def _parse_noun_phrase(text: str) -> ObjectQuery:
    size, color, shape = _NP_PARTS.match(text).groups()
    return ObjectQuery(color, shape, size)


def parse_prompt(text: str) -> ShapesQuery:
    """Parse any caption the world writes (all paraphrases) into a `ShapesQuery`.

    Raises ValueError naming the text when it is not a Shapes caption.
    """
    body = " ".join(str(text).lower().split()).rstrip(".")
    for prefix in _PREFIXES:
        if body.startswith(prefix):
            body = body[len(prefix) :]
            break
    if body.endswith(_SUFFIX):
        body = body[: -len(_SUFFIX)]
    if m := _RELATION_RE.match(body):
        a, b = _parse_noun_phrase(m.group(1)), _parse_noun_phrase(m.group(3))
        return ShapesQuery("relation", (a, b), relation=m.group(2))
    if m := _PAIR_RE.match(body):
        return ShapesQuery("pair", (_parse_noun_phrase(m.group(1)), _parse_noun_phrase(m.group(2))))
    if m := _COUNT_RE.match(body):
        word, color, plural = m.groups()
        return ShapesQuery("count", (ObjectQuery(color, _SINGULARS[plural]),), count=_WORD_COUNTS[word])
    if m := _SINGLE_RE.match(body):
        return ShapesQuery("single", (_parse_noun_phrase(m.group(1)),), position=m.group(2))
    raise ValueError(f"cannot parse Shapes prompt {text!r}")


_FLIPPED_RE = re.compile(rf"({_NP}) ((?:is )?(?:to the )?)({_alternation(_FLIPPED)}) ({_NP})")


def canonical_relation_prompt(text: str) -> str:
    """Write a Shapes relation caption with "right of" / "below" as the same ask with "left of" / "above":
    "a blue square right of a red circle" -> "a red circle left of a blue square" (the frame and paraphrase are
    kept). Any other text comes back unchanged.

    A pipeline trained with `--prompt_normalization shapes_relations` reads every caption through this, so its
    U-Net learns one rule, the first object goes left (or up), instead of a rule that flips with the relation
    word (README, "Diffusion").
    """
    try:
        query = parse_prompt(text)
    except ValueError:
        return text
    if query.kind != "relation" or query.relation not in _FLIPPED:
        return text
    body = " ".join(str(text).lower().split())
    return _FLIPPED_RE.sub(lambda m: f"{m[4]} {m[2]}{_FLIPPED[m[3]]} {m[1]}", body, count=1)


# ---------------------------------------------------------------------------------------
# Benchmark queries: a fixed rule on query_key, shared by training exclusion and the scorer
# ---------------------------------------------------------------------------------------

BENCHMARK_CATEGORIES = ("single", "color", "position", "count", "pair", "relation", "heldout")


def _stable_hash(*parts) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=65536)  # the query space is finite (a few thousand keys)
def is_benchmark_query(query: ShapesQuery) -> bool:
    """Whether a query is reserved for the benchmark (so never asked in `train`).

    single: for each (colour, shape, position-or-none) one of the three size options
    (none / small / large) is reserved; count: one of the three counts per (colour, shape);
    pair and relation: a quarter of the keys, by a stable hash. Held-out single queries
    without a position (the `heldout` category) are benchmark queries too.
    """
    if query.uses_heldout:
        return query.kind == "single" and query.position is None
    key = query_key(query)
    if key[0] == "single":
        _, color, shape, size, position = key
        return _SIZE_OPTIONS.index(size) == _stable_hash("single", color, shape, position) % 3
    if key[0] == "count":
        _, color, shape, count = key
        return count == 2 + _stable_hash("count", color, shape) % 3
    return _stable_hash(*key) % 4 == 0


def _category_candidates(category: str) -> list[ShapesQuery]:
    """Every query a scorer category can ask, in a fixed order (heldout: held-out pairs, any position)."""
    if category not in BENCHMARK_CATEGORIES:
        raise ValueError(f"unknown benchmark category {category!r}; expected one of {BENCHMARK_CATEGORIES}")
    if category in ("single", "color", "position", "heldout"):
        positions = {"position": list(POSITIONS), "heldout": [None, *POSITIONS]}.get(category, [None])
        combos = HELDOUT_COMBOS if category == "heldout" else TRAIN_COMBOS
        return [
            ShapesQuery("single", (ObjectQuery(c, s, size),), position=p) for c, s in combos for p in positions for size in _SIZE_OPTIONS
        ]
    if category == "count":
        return [ShapesQuery("count", (ObjectQuery(c, s),), count=n) for c, s in TRAIN_COMBOS for n in COUNT_WORDS]
    pairs = [(ObjectQuery(*a), ObjectQuery(*b)) for a in TRAIN_COMBOS for b in TRAIN_COMBOS if a != b]
    if category == "pair":
        return [ShapesQuery("pair", pair) for pair in pairs]
    return [ShapesQuery("relation", pair, relation=r) for pair in pairs for r in RELATIONS]


@functools.cache
def benchmark_query_pool(category: str) -> tuple[ShapesQuery, ...]:
    """All benchmark queries of one category (see `is_benchmark_query`); deterministic order."""
    return tuple(q for q in _category_candidates(category) if is_benchmark_query(q))


@functools.cache
def validation_query_pool(category: str) -> tuple[ShapesQuery, ...]:
    """Queries of one category that are *not* benchmark queries, for choosing settings (guidance,
    checkpoints) without looking at the benchmark. Train-split queries (training may have asked
    them, with other images), except `heldout`: held-out pairs at a named position, which no
    training caption uses and the benchmark (held-out pairs without a position) does not ask."""
    return tuple(q for q in _category_candidates(category) if not is_benchmark_query(q))


def _hard_negative_candidates(query: ShapesQuery) -> list[ShapesQuery]:
    """Queries that keep every word of `query` but one fact: the words a bag-of-words reading cannot tell apart."""
    objs = query.objects
    if query.kind == "single":
        if query.position is not None:  # another place
            return [replace(query, position=p) for p in POSITIONS if p != query.position]
        return [replace(query, objects=(replace(objs[0], shape=s),)) for s in SHAPES if s != objs[0].shape]  # another shape
    if query.kind == "count":  # another number
        return [replace(query, count=n) for n in COUNT_WORDS if n != query.count]
    a, b = objs
    if query.kind == "pair":  # the colours bound to the other shapes
        return [replace(query, objects=(ObjectQuery(b.color, a.shape), ObjectQuery(a.color, b.shape)))]
    # relation: the objects swapped, or another relation between them
    return [replace(query, objects=(b, a))] + [replace(query, relation=r) for r in RELATIONS if r != query.relation]


def hard_negative_caption(caption: str, rng: np.random.Generator) -> str | None:
    """A caption of the same words with one fact changed (objects swapped in a relation, another relation, count or
    position, colours bound to the other shapes in a pair), for NegCLIP-style hard negatives in contrastive
    training (https://arxiv.org/abs/2210.01936). Never a held-out pair or a benchmark query (a negative caption is
    still text the model trains on), never the same ask; None when no such caption exists or `caption` is not a
    Shapes caption."""
    try:
        query = parse_prompt(caption)
    except ValueError:
        return None
    key = query_key(query)
    candidates = [q for q in _hard_negative_candidates(query)
                  if query_key(q) != key and not q.uses_heldout and not is_benchmark_query(q)]
    return caption_query(_pick(rng, candidates), rng) if candidates else None


# ---------------------------------------------------------------------------------------
# 3. Sampling
# ---------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _two_combos(rng: np.random.Generator, heldout: bool) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two different (colour, shape) combos; with `heldout`, at least one is a held-out pair."""
    if not heldout:
        i, j = rng.choice(len(TRAIN_COMBOS), size=2, replace=False)
        return TRAIN_COMBOS[i], TRAIN_COMBOS[j]
    a = _pick(rng, HELDOUT_COMBOS)
    b = _pick(rng, [c for c in ALL_COMBOS if c != a])
    return (a, b) if rng.random() < 0.5 else (b, a)


def _sample_query(rng: np.random.Generator, kind: str, heldout: bool) -> ShapesQuery:
    if kind == "single":
        color, shape = _pick(rng, HELDOUT_COMBOS if heldout else TRAIN_COMBOS)
        size = _pick(rng, ("small", "large")) if rng.random() < _P_NAME_SIZE else None
        position = _pick(rng, list(POSITIONS)) if rng.random() < _P_NAME_POSITION else None
        return ShapesQuery("single", (ObjectQuery(color, shape, size),), position=position)
    if kind == "count":
        color, shape = _pick(rng, HELDOUT_COMBOS if heldout else TRAIN_COMBOS)
        return ShapesQuery("count", (ObjectQuery(color, shape),), count=int(rng.integers(2, 5)))
    a, b = _two_combos(rng, heldout)
    objects = (ObjectQuery(*a), ObjectQuery(*b))
    if kind == "pair":
        return ShapesQuery("pair", objects)
    if kind == "relation":
        return ShapesQuery("relation", objects, relation=_pick(rng, RELATIONS))
    raise ValueError(f"unknown scene kind {kind!r}; expected one of {SCENE_KINDS}")


def _place_object(
    rng: np.random.Generator, color: str, shape: str, size_name: str, cell: tuple[int, int], image_size: int
) -> ShapeObject:
    """Centre = cell centre + integer jitter in {-1, 0, 1} px (x2 at 64), keeping the box on the canvas."""
    extent, step = extent_px(size_name, image_size), image_size / BASE_SIZE
    center = []
    for c in cell_center(cell, image_size):
        shifted = [c + j * step for j in (-1, 0, 1)]
        center.append(_pick(rng, [x for x in shifted if x - extent / 2 >= 0 and x + extent / 2 <= image_size]))
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


def scene_from_query(
    query: ShapesQuery, rng: np.random.Generator, size: int = BASE_SIZE, relation_layout: str = "any",
    count_layout: str = "any", single_layout: str = "any", pair_layout: str = "any",
) -> Scene:
    """A random scene whose caption is exactly `query` (what isn't asked is random; see SINGLE_LAYOUTS,
    COUNT_LAYOUTS, PAIR_LAYOUTS and RELATION_LAYOUTS for where each kind's objects may go)."""
    _layout_kwargs(single_layout=single_layout, count_layout=count_layout, pair_layout=pair_layout, relation_layout=relation_layout)
    canonical_single = single_layout == "canonical"
    objs = query.objects
    for _ in range(100):
        if query.kind == "single":
            obj = objs[0]
            size_name = obj.size or (CANONICAL_SINGLE_SIZE if canonical_single else _pick(rng, ("small", "large")))
            if query.position:
                cell = POSITIONS[query.position]
            else:
                cell = CANONICAL_SINGLE_CELL if canonical_single else _pick(rng, _CELLS)
            placed = [_place_object(rng, obj.color, obj.shape, size_name, cell, size)]
            named_size, named_position = obj.size is not None, query.position is not None
            scene = Scene("single", placed, name_size=named_size, name_position=named_position, size=size)
        elif query.kind == "count":
            if count_layout == "canonical":
                cells = CANONICAL_COUNT_CELLS[query.count]
            else:
                cells = [_CELLS[i] for i in rng.choice(len(_CELLS), size=query.count, replace=False)]
            placed = [_place_object(rng, objs[0].color, objs[0].shape, "small", cell, size) for cell in cells]
            scene = Scene("count", placed, size=size)
        elif query.kind == "pair":
            if pair_layout == "canonical":
                cells = CANONICAL_PAIR_CELLS
            else:
                cells = [_CELLS[i] for i in rng.choice(len(_CELLS), size=2, replace=False)]
            placed = [_place_object(rng, o.color, o.shape, "small", c, size) for o, c in zip(objs, cells)]
            scene = Scene("pair", placed, size=size)
        elif query.kind == "relation":
            if relation_layout == "canonical":  # the middle line, outer cells
                line, lo, hi = 1, 0, 2
            else:
                line = int(rng.integers(3))
                lo, hi = sorted(int(i) for i in rng.choice(3, size=2, replace=False))
            first, second = (lo, hi) if query.relation in ("left of", "above") else (hi, lo)
            if query.relation in ("left of", "right of"):  # same row, first column smaller for "left of"
                cells = [(first, line), (second, line)]
            else:  # same column, first row smaller for "above"
                cells = [(line, first), (line, second)]
            placed = [_place_object(rng, o.color, o.shape, "small", c, size) for o, c in zip(objs, cells)]
            scene = Scene("relation", placed, relation=query.relation, size=size)
        else:
            raise ValueError(f"unknown query kind {query.kind!r}")
        if not objects_overlap(scene.objects, size):
            return scene
    raise RuntimeError(f"could not place a non-overlapping scene for {query}")


def sample_scene(
    rng: np.random.Generator,
    kind: str | None = None,
    split: str = "train",
    size: int = BASE_SIZE,
    kind_probs: Sequence[float] | None = None,
    relation_layout: str = "any",
    count_layout: str = "any",
    single_layout: str = "any",
    pair_layout: str = "any",
) -> Scene:
    """Sample a scene of `kind` (random kind when None) for a split.

    train / validation: no held-out pair anywhere, and never a benchmark query; kinds drawn with
    weights `kind_probs` (of SCENE_KINDS; default 0.4 single, 0.2 each other kind).
    heldout: at least one object uses a held-out pair (mostly single scenes; `kind_probs` is ignored).
    `relation_layout`, `count_layout`, `single_layout`, `pair_layout`: see RELATION_LAYOUTS, COUNT_LAYOUTS,
    SINGLE_LAYOUTS, PAIR_LAYOUTS.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if kind is not None and kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; expected one of {SCENE_KINDS}")
    heldout = split == "heldout"
    cumulative = _kind_cumulative(heldout, None if kind_probs is None else tuple(kind_probs))
    while True:  # rejection: about 3 in 10 train queries are reserved for the benchmark
        query_kind = kind or SCENE_KINDS[bisect.bisect(cumulative, rng.random() * cumulative[-1])]
        query = _sample_query(rng, query_kind, heldout)
        if heldout or not is_benchmark_query(query):
            return scene_from_query(
                query, rng, size, relation_layout=relation_layout, count_layout=count_layout, single_layout=single_layout,
                pair_layout=pair_layout,
            )


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------


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
    """Draw one object onto a (S, S, 3) uint8 canvas in place."""
    image_size = canvas.shape[0]
    extent = extent_px(obj.size, image_size)
    key, x0, y0 = _stamp_key(obj.shape, extent, (obj.center[0] * scale, obj.center[1] * scale))
    pixels, mask = _patch(*key, obj.color)
    h, w = mask.shape
    if x0 >= 0 and y0 >= 0 and x0 + w <= image_size and y0 + h <= image_size:
        np.copyto(canvas[y0 : y0 + h, x0 : x0 + w], pixels, where=mask[..., None])
        return
    sy, sx = _clip(y0, h, image_size), _clip(x0, w, image_size)
    if sy and sx:
        np.copyto(
            canvas[sy[0] : sy[1], sx[0] : sx[1]],
            pixels[sy[2] : sy[3], sx[2] : sx[3]],
            where=mask[sy[2] : sy[3], sx[2] : sx[3], None],
        )


def render_scene(scene: Scene, size: int | None = None) -> np.ndarray:
    """Render a scene to a (size, size, 3) uint8 image; `size` defaults to `scene.size`
    (a different size rescales the centres, so a 32 px scene renders at 64 px exactly x2)."""
    size = size or scene.size
    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    for obj in scene.objects:
        _paste(canvas, obj, size / scene.size)
    return canvas


def render_batch(scenes: Sequence[Scene], size: int | None = None) -> np.ndarray:
    """Render scenes to an (N, size, size, 3) uint8 array (size defaults to the first scene's)."""
    size = size or (scenes[0].size if len(scenes) else BASE_SIZE)
    out = np.full((len(scenes), size, size, 3), 255, dtype=np.uint8)
    for canvas, scene in zip(out, scenes):
        for obj in scene.objects:
            _paste(canvas, obj, size / scene.size)
    return out


# ---------------------------------------------------------------------------------------
# 4. Data
# ---------------------------------------------------------------------------------------

_SPLIT_STREAMS = {"train": 0, "validation": 1, "heldout": 2}  # seed stream id per split

SHAPES_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "text": datasets.Value("string"),
        "kind": datasets.Value("string"),
        "objects": datasets.List(
            {
                "color": datasets.Value("string"),
                "shape": datasets.Value("string"),
                "size": datasets.Value("string"),
                "cell": datasets.List(datasets.Value("int32")),
                "center": datasets.List(datasets.Value("float32")),
            }
        ),
    }
)


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _build_split(num: int, split: str, size: int, seed: int, **scene_kwargs) -> datasets.Dataset:
    rng = np.random.default_rng([seed, _SPLIT_STREAMS[split]])
    scenes = [sample_scene(rng, split=split, size=size, **scene_kwargs) for _ in range(num)]
    texts = [caption_scene(scene, rng) for scene in scenes]
    images = render_batch(scenes, size) if scenes else np.zeros((0, size, size, 3), np.uint8)
    columns = {
        "image": [{"bytes": _png_bytes(img), "path": None} for img in images],
        "text": texts,
        "kind": [scene.kind for scene in scenes],
        "objects": [[obj.to_dict() for obj in scene.objects] for scene in scenes],
    }
    return datasets.Dataset.from_dict(columns, features=SHAPES_FEATURES, split=split)


def build_shapes_dataset(
    size: int = BASE_SIZE,
    num_train: int = 20000,
    num_validation: int = 2000,
    num_heldout: int = 2000,
    seed: int = 0,
    kind_probs: Sequence[float] | None = None,
    relation_layout: str = "any",
    count_layout: str = "any",
    single_layout: str = "any",
    pair_layout: str = "any",
) -> datasets.DatasetDict:
    """Build the Shapes `DatasetDict` with splits train / validation / heldout.

    Columns: image (PNG), text (a random paraphrase), kind, objects (list of
    {color, shape, size, cell: [col, row], center: [x, y]}). Same seed, same data.
    `kind_probs` and the layouts (`relation_layout`, `count_layout`, `single_layout`, `pair_layout`) as in
    `sample_scene`.
    """
    layouts = _layout_kwargs(single_layout=single_layout, count_layout=count_layout, pair_layout=pair_layout, relation_layout=relation_layout)
    scene_kwargs = {"kind_probs": check_kind_probs(kind_probs), **layouts}
    counts = {"train": num_train, "validation": num_validation, "heldout": num_heldout}
    return datasets.DatasetDict({split: _build_split(n, split, size, seed, **scene_kwargs) for split, n in counts.items()})


class ShapesStream(torch.utils.data.IterableDataset):
    """Infinite on-the-fly Shapes samples: {"pixel_values": (3, H, W) float32 in [-1, 1], "text": str}.

    The stream is seeded by (seed, rank, dataloader worker id), so data-parallel processes
    (give rank / world_size) and workers see different data, and a given seed always
    replays the same data. `kind_probs` and the layouts (`relation_layout`, `count_layout`, `single_layout`,
    `pair_layout`) as in `sample_scene`.
    """

    def __init__(
        self,
        size: int = BASE_SIZE,
        seed: int = 0,
        split: str = "train",
        rank: int = 0,
        world_size: int = 1,
        paraphrase: bool = True,
        chunk_size: int = 256,
        kind_probs: Sequence[float] | None = None,
        relation_layout: str = "any",
        count_layout: str = "any",
        single_layout: str = "any",
        pair_layout: str = "any",
    ):
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        layouts = _layout_kwargs(single_layout=single_layout, count_layout=count_layout, pair_layout=pair_layout, relation_layout=relation_layout)
        self.scene_kwargs = {"kind_probs": check_kind_probs(kind_probs), **layouts}
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size); got rank={rank}, world_size={world_size}")
        self.size, self.seed, self.split = size, seed, split
        self.rank, self.world_size = rank, world_size
        self.paraphrase, self.chunk_size = paraphrase, chunk_size

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, _SPLIT_STREAMS[self.split], self.rank, worker])
        while True:  # render in chunks: stamps make a chunk far cheaper than one-by-one
            scenes = [sample_scene(rng, split=self.split, size=self.size, **self.scene_kwargs) for _ in range(self.chunk_size)]
            texts = [caption_scene(scene, rng if self.paraphrase else None) for scene in scenes]
            images = render_batch(scenes, self.size)  # (N, H, W, 3) uint8
            for image, text in zip(images, texts):
                # one fresh tensor per sample: a view would ship the whole chunk to the main process
                pixels = torch.from_numpy(image).permute(2, 0, 1).float().div_(127.5).sub_(1.0)  # (3, H, W)
                yield {"pixel_values": pixels, "text": text}
