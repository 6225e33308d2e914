"""What the Shapes world is made of: its words, colours and geometry, and the `Scene` every image is drawn from.

All of it is fixed by the spec (docs/shapes-world.md: "Palette", "Shapes", "Sizes", "Positions", "Held-out
compositions"); the rest of `hf_textimg.shapes` builds on these names.
"""

from __future__ import annotations

from dataclasses import dataclass

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
# The sides the spec defines the world at ("Canvas"), and 128 px, where the super-resolution stages learn what a
# 32 px image becomes (the geometry scales linearly, as the spec says of 64).
IMAGE_SIZES = (32, 64, 128)
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
CELLS = tuple(POSITIONS.values())
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
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "plus": "pluses"}
SIZE_OPTIONS = (None, "small", "large")  # what a single caption may say about size

ALL_COMBOS = tuple((c, s) for c in COLORS for s in SHAPES)
TRAIN_COMBOS = tuple(combo for combo in ALL_COMBOS if combo not in HELDOUT_PAIRS)
HELDOUT_COMBOS = tuple(combo for combo in ALL_COMBOS if combo in HELDOUT_PAIRS)


def extent_px(size_name: str, image_size: int = BASE_SIZE) -> float:
    """Side of an object's bounding box in pixels at `image_size`."""
    return SIZES[size_name] * image_size / BASE_SIZE


def cell_center(cell: tuple[int, int], image_size: int = BASE_SIZE) -> tuple[float, float]:
    """Centre (x, y) of a grid cell: 1/6, 1/2 or 5/6 of the side."""
    col, row = cell
    return ((col + 0.5) * image_size / 3, (row + 0.5) * image_size / 3)


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
