"""Hard negatives: a Shapes caption with one fact changed, for NegCLIP-style contrastive training
(https://arxiv.org/abs/2210.01936) and the concept models' word-order / counting test."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .benchmark import is_benchmark_query
from .language import ObjectQuery, ShapesQuery, caption_query, parse_prompt, query_key
from .sampling import pick
from .vocab import COUNT_WORDS, POSITIONS, RELATIONS, SHAPES


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
    return caption_query(pick(rng, candidates), rng) if candidates else None
