"""The Shapes caption language (docs/shapes-world.md, "Scene kinds and captions").

`ShapesQuery` is what a caption asks for; `caption_query` writes it (canonical template or a random paraphrase),
`parse_prompt` reads any caption the world writes back, and `query_key` gives the structured key two captions share
when they ask the same thing. `canonical_relation_prompt` rewrites a relation caption into its "left of" / "above"
form (the "shapes_relations" prompt normalisation of `hf_textimg.data.prompts`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .vocab import CELL_NAMES, COLORS, COUNT_WORDS, HELDOUT_PAIRS, PLURALS, POSITIONS, RELATIONS, SCENE_KINDS, SHAPES, Scene


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
    word.
    """
    try:
        query = parse_prompt(text)
    except ValueError:
        return text
    if query.kind != "relation" or query.relation not in _FLIPPED:
        return text
    body = " ".join(str(text).lower().split())
    return _FLIPPED_RE.sub(lambda m: f"{m[4]} {m[2]}{_FLIPPED[m[3]]} {m[1]}", body, count=1)
