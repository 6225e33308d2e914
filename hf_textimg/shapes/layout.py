"""Where a scene puts the objects its caption does not place: `ShapesLayout`, one choice per scene kind.

The spec (docs/shapes-world.md, "Scene kinds and captions") draws what a caption leaves open at random ("any").
"canonical" gives each caption one layout instead, trading layout variety for a rule a small model learns like a
position word:

- single: an object whose caption names no size is large, one whose caption names no position is in the centre
  (CANONICAL_SINGLE_SIZE, CANONICAL_SINGLE_CELL); a named size or position is kept. The spec's scorer checks
  neither, so this costs only variety; it is the one-shot decoder's trade (one forward pass cannot sample where an
  object goes, it draws the average of all cells).
- count: one layout per count (CANONICAL_COUNT_CELLS: two, the middle row's outer cells; three, the middle row;
  four, the corners), so drawing exactly n objects becomes drawing one learned layout.
- pair: the middle row's outer cells, the first-named object on the left (CANONICAL_PAIR_CELLS).
- relation: the middle line, outer cells, so each relation has one layout ("left of": first object at "left",
  second at "right"; "above": "top", "bottom"), instead of every line and ordered pair of cells the relation allows
  (9 layouts per relation).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .vocab import SCENE_KINDS

LAYOUT_CHOICES = ("any", "canonical")
CANONICAL_SINGLE_SIZE, CANONICAL_SINGLE_CELL = "large", (1, 1)
CANONICAL_COUNT_CELLS: dict[int, tuple[tuple[int, int], ...]] = {
    2: ((0, 1), (2, 1)),
    3: ((0, 1), (1, 1), (2, 1)),
    4: ((0, 0), (2, 0), (0, 2), (2, 2)),
}
CANONICAL_PAIR_CELLS: tuple[tuple[int, int], tuple[int, int]] = ((0, 1), (2, 1))
CANONICAL_RELATION_LINE, CANONICAL_RELATION_ENDS = 1, (0, 2)  # the middle row / column, its outer cells


@dataclass(frozen=True)
class ShapesLayout:
    """The layout of each scene kind, "any" (the spec) or "canonical" (see the module docstring).

        ShapesLayout.spec()                          # every kind as the spec draws it
        ShapesLayout.canonical("count", "relation")  # those two kinds canonical, the others as the spec
        ShapesLayout.canonical()                     # every kind canonical
    """

    single: str = "any"
    count: str = "any"
    pair: str = "any"
    relation: str = "any"

    def __post_init__(self):
        for kind in SCENE_KINDS:
            if getattr(self, kind) not in LAYOUT_CHOICES:
                raise ValueError(f"unknown {kind} layout {getattr(self, kind)!r}; expected one of {LAYOUT_CHOICES}")

    @classmethod
    def spec(cls) -> ShapesLayout:
        return cls()

    @classmethod
    def canonical(cls, *kinds: str) -> ShapesLayout:
        """`kinds` (default: all of SCENE_KINDS) canonical, the others as the spec draws them."""
        unknown = [kind for kind in kinds if kind not in SCENE_KINDS]
        if unknown:
            raise ValueError(f"unknown scene kind(s) {unknown} for a canonical layout; expected some of {SCENE_KINDS}")
        return cls(**{kind: "canonical" for kind in kinds or SCENE_KINDS})

    def is_canonical(self, kind: str) -> bool:
        return getattr(self, kind) == "canonical"

    @property
    def canonical_kinds(self) -> tuple[str, ...]:
        """The kinds with the canonical layout, in SCENE_KINDS order (empty for the spec)."""
        return tuple(f.name for f in fields(self) if self.is_canonical(f.name))
