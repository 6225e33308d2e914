"""The benchmark's prompts: which queries are reserved for scoring, and the prompt sets drawn from them.

A query is reserved by a fixed rule on `query_key` (`is_benchmark_query`), shared by the training data (which never
asks a reserved query) and the scorer, so every `benchmark_prompts(n, seed)` draw is unseen in training whatever n
and seed are. `validation_query_pool` holds the other queries of each category, for choosing settings without
looking at the benchmark. Categories: docs/shapes-world.md, "Scoring categories".
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from .language import ObjectQuery, ShapesQuery, caption_query, query_key
from .vocab import COUNT_WORDS, HELDOUT_COMBOS, POSITIONS, RELATIONS, SIZE_OPTIONS, TRAIN_COMBOS

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
        return SIZE_OPTIONS.index(size) == _stable_hash("single", color, shape, position) % 3
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
            ShapesQuery("single", (ObjectQuery(c, s, size),), position=p) for c, s in combos for p in positions for size in SIZE_OPTIONS
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


PROMPT_SETS = ("benchmark", "validation")


@dataclass(frozen=True)
class BenchmarkPrompt:
    prompt: str
    category: str  # one of BENCHMARK_CATEGORIES
    query: ShapesQuery


def benchmark_prompts(n_per_category: int = 50, seed: int = 1234, prompt_set: str = "benchmark") -> list[BenchmarkPrompt]:
    """A deterministic benchmark: `n_per_category` prompts for each of BENCHMARK_CATEGORIES.

    Prompts are canonical captions of queries from `benchmark_query_pool`, which training
    never asks for. A pool is walked through in random order (repeating only once exhausted).
    `prompt_set="validation"` draws from `validation_query_pool` instead (no benchmark query):
    the set to choose settings such as the guidance scale on, so the benchmark stays unseen.
    """
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be >= 1, got {n_per_category}")
    if prompt_set not in PROMPT_SETS:
        raise ValueError(f"unknown prompt_set {prompt_set!r}; expected one of {PROMPT_SETS}")
    query_pool = benchmark_query_pool if prompt_set == "benchmark" else validation_query_pool
    rng = np.random.default_rng(seed)
    prompts = []
    for category in BENCHMARK_CATEGORIES:
        pool = query_pool(category)
        order = np.concatenate([rng.permutation(len(pool)) for _ in range(-(-n_per_category // len(pool)))])
        for index in order[:n_per_category]:
            query = pool[index]
            prompts.append(BenchmarkPrompt(caption_query(query), category, query))
    return prompts
