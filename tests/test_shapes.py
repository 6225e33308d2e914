import dataclasses
import re

import datasets
import numpy as np
import pytest
import torch

from hf_textimg import shapes as S
from hf_textimg.shapes import (
    HELDOUT_PAIRS,
    LAYOUT_CHOICES,
    PALETTE,
    POSITIONS,
    Scene,
    ShapeObject,
    ShapesLayout,
    ShapesStream,
    benchmark_prompts,
    build_shapes_dataset,
    caption_scene,
    parse_prompt,
    render_batch,
    render_scene,
    sample_scene,
    scene_query,
)
from hf_textimg.shapes.sampling import _footprint, _sample_query


def _scenes(seed, n, size=32, split="train", kind=None):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, kind, split, size) for _ in range(n)]


def _mixed_scenes(seed, n_per_kind, size=32):
    splits_kinds = [(split, kind) for split in ("train", "heldout") for kind in S.SCENE_KINDS]
    return [s for split, kind in splits_kinds for s in _scenes(seed, n_per_kind, size, split, kind)]


@pytest.fixture(scope="module")
def small_dataset():
    return build_shapes_dataset(size=32, num_train=1500, num_validation=100, num_heldout=300, seed=0)


def test_vocabulary_matches_spec():
    assert list(PALETTE.items()) == [
        ("red", (220, 40, 40)),
        ("orange", (245, 140, 30)),
        ("yellow", (240, 210, 40)),
        ("green", (40, 170, 70)),
        ("cyan", (40, 190, 210)),
        ("blue", (40, 80, 220)),
        ("purple", (140, 60, 190)),
        ("pink", (240, 110, 180)),
    ]
    assert S.SHAPES == ("circle", "square", "triangle", "plus")
    assert S.SIZES == {"small": 6, "large": 10}
    assert list(POSITIONS) == [
        "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right",
    ]  # fmt: skip
    assert POSITIONS["top left"] == (0, 0) and POSITIONS["right"] == (2, 1) and POSITIONS["bottom"] == (1, 2)
    assert HELDOUT_PAIRS == {
        ("red", "plus"), ("green", "triangle"), ("blue", "circle"),
        ("yellow", "square"), ("purple", "plus"), ("cyan", "triangle"),
    }  # fmt: skip


def _inside_spec(shape, dx, dy, half):
    """The spec's geometry, written independently of the renderer (closed shapes)."""
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    if shape == "square":
        return (abs(dx) <= half) & (abs(dy) <= half)
    if shape == "triangle":  # apex (0, -half), base corners (+-half, +half)
        return (dy <= half) & (abs(dx) <= (dy + half) / 2)
    bar = half / 3
    return ((abs(dx) <= half) & (abs(dy) <= bar)), ((abs(dy) <= half) & (abs(dx) <= bar))


def _fully_covered(obj, size):
    """(size, size) bool: pixels whose four corners all lie inside the shape (the shapes, and each
    bar of the plus, are convex, so those pixels are entirely covered)."""
    half = S.extent_px(obj.size, size) / 2
    corners = np.arange(size + 1, dtype=np.float64)
    dx, dy = corners[None, :] - obj.center[0], corners[:, None] - obj.center[1]
    inside = _inside_spec(obj.shape, dx, dy, half)
    parts = inside if isinstance(inside, tuple) else (inside,)
    full = np.zeros((size, size), dtype=bool)
    for part in parts:
        full |= part[:-1, :-1] & part[:-1, 1:] & part[1:, :-1] & part[1:, 1:]
    return full


@pytest.mark.parametrize("size", [32, 64])
def test_interiors_exact_palette_background_white_edges_blended(size):
    soft_edges = 0
    for scene in _mixed_scenes(seed=size, n_per_kind=15, size=size):
        image = render_scene(scene).astype(np.int64)
        assert image.shape == (size, size, 3)
        touched = np.zeros((size, size), dtype=bool)
        for obj in scene.objects:
            full = _fully_covered(obj, size)
            assert full.sum() >= 4
            assert (image[full] == PALETTE[obj.color]).all(), (obj, caption_scene(scene))
            x0, y0, x1, y1 = _footprint(obj, size)
            touched[y0:y1, x0:x1] = True
            # every pixel of the object's box is a blend of white and its colour
            box = image[y0:y1, x0:x1].reshape(-1, 3) - 255.0
            direction = np.array(PALETTE[obj.color], dtype=np.float64) - 255.0
            alpha = np.clip(box @ direction / (direction @ direction), 0, 1)
            assert np.abs(box - alpha[:, None] * direction).max() <= 1.0
            soft_edges += int(((alpha > 0.02) & (alpha < 0.98)).sum())
        assert (image[~touched] == 255).all(), caption_scene(scene)
    assert soft_edges > 0  # edges are anti-aliased


def test_coverage_area_matches_spec_shapes():
    e = 10.0
    areas = {"circle": np.pi * (e / 2) ** 2, "square": e * e, "triangle": e * e / 2, "plus": 5 * e * e / 9}
    for shape, area in areas.items():
        alpha = S.shape_alpha(shape, e, (15.3, 16.7), 32)
        assert abs(alpha.sum() - area) < 0.01 * area, shape  # 16x16 supersampling
        rows, cols = np.nonzero(alpha >= 0.5)
        if shape == "triangle":  # apex up: the top row of the shape is its narrowest
            assert (cols[rows == rows.min()].size) < (cols[rows == rows.max()].size)


@pytest.mark.parametrize("size", [32, 64])
def test_positions_in_cells_jitter_and_no_overlap(size):
    step = size / 32
    for scene in _mixed_scenes(seed=7, n_per_kind=80, size=size):
        cells = [o.cell for o in scene.objects]
        assert len(set(cells)) == len(cells)
        masks = []
        for obj in scene.objects:
            col, row = obj.cell
            x, y = obj.center
            assert col * size / 3 <= x < (col + 1) * size / 3 and row * size / 3 <= y < (row + 1) * size / 3
            jitter = np.subtract(obj.center, S.cell_center(obj.cell, size)) / step
            assert np.allclose(jitter, np.round(jitter)) and np.abs(jitter).max() <= 1 + 1e-9
            half = S.extent_px(obj.size, size) / 2
            assert min(x, y) - half >= 0 and max(x, y) + half <= size
            masks.append(S.shape_alpha(obj.shape, 2 * half, obj.center, size) > 0)
        assert (np.sum(masks, axis=0) <= 1).all()
        assert not S.objects_overlap(scene.objects, size)


def test_scene_kinds_follow_spec():
    for scene in _scenes(1, 800):
        objs, combos = scene.objects, [(o.color, o.shape) for o in scene.objects]
        if scene.kind == "single":
            assert len(objs) == 1
            continue
        assert all(o.size == "small" for o in objs)
        if scene.kind == "count":
            assert 2 <= len(objs) <= 4 and len(set(combos)) == 1
            continue
        assert len(objs) == 2 and combos[0] != combos[1]
        if scene.kind == "relation":
            (ac, ar), (bc, br) = objs[0].cell, objs[1].cell
            expected = {"left of": ar == br and ac < bc, "right of": ar == br and ac > bc,
                        "above": ac == bc and ar < br, "below": ac == bc and ar > br}  # fmt: skip
            assert expected[scene.relation], scene


def _heldout_phrases():
    return [f"{c} {s}" for c, s in HELDOUT_PAIRS] + [f"{c} {S.PLURALS[s]}" for c, s in HELDOUT_PAIRS]


def test_no_heldout_pair_in_train(small_dataset):
    rng = np.random.default_rng(3)
    phrases = _heldout_phrases()
    for scene in _scenes(2, 4000):
        assert not {(o.color, o.shape) for o in scene.objects} & HELDOUT_PAIRS
        caption = caption_scene(scene, rng)
        assert not any(p in caption for p in phrases), caption
    for split in ("train", "validation"):
        for row in small_dataset[split].select_columns(["text", "objects"]):
            assert not {(o["color"], o["shape"]) for o in row["objects"]} & HELDOUT_PAIRS
            assert not any(p in row["text"] for p in phrases), row["text"]
    for row in small_dataset["heldout"].select_columns(["objects"]):
        assert {(o["color"], o["shape"]) for o in row["objects"]} & HELDOUT_PAIRS
    assert set(small_dataset["heldout"]["kind"]) == set(S.SCENE_KINDS)


def test_captions_are_grammatical_and_parse_back():
    rng = np.random.default_rng(4)
    seen = set()
    for scene in _mixed_scenes(seed=5, n_per_kind=400):
        for caption in (caption_scene(scene), caption_scene(scene, rng)):
            seen.add(caption)
            assert caption == caption.lower() and not re.search(r"\d", caption)
            assert not re.search(r"\ba [aeiou]", caption) and not re.search(r"\ban [^aeiou]", caption), caption
            assert "pluss" not in caption and "plus s" not in caption
            query = parse_prompt(caption)
            assert query == scene_query(scene), caption
            if scene.kind == "count":
                assert S.COUNT_WORDS[len(scene.objects)] in caption.split()
                assert S.PLURALS[scene.objects[0].shape] in caption.split()
            if query.position:
                assert query.position in caption
            if scene.kind == "relation":
                assert scene.relation in caption
    text = "\n".join(seen)
    for phrase in ("an orange", "pluses", "in the top left corner", "to the left of", "there are three", "on the right"):
        assert phrase in text, phrase


def test_canonical_captions():
    def single(color, shape, size, cell, name_size=True, name_position=True):
        obj = ShapeObject(color, shape, size, cell, S.cell_center(cell))
        return Scene("single", [obj], name_size=name_size, name_position=name_position)

    def many(kind, specs, relation=None):
        objs = [ShapeObject(c, s, "small", cell, S.cell_center(cell)) for c, s, cell in specs]
        return Scene(kind, objs, relation=relation)

    assert caption_scene(single("red", "circle", "small", (0, 0))) == "a small red circle at the top left"
    assert caption_scene(single("orange", "circle", "large", (1, 1), name_size=False)) == "an orange circle at the center"
    assert caption_scene(single("blue", "plus", "small", (2, 2), name_position=False)) == "a small blue plus"
    three = many("count", [("red", "circle", (0, 0)), ("red", "circle", (1, 0)), ("red", "circle", (2, 0))])
    assert caption_scene(three) == "three red circles"
    assert caption_scene(many("count", [("green", "plus", (0, 0)), ("green", "plus", (2, 2))])) == "two green pluses"
    pair = many("pair", [("red", "circle", (0, 0)), ("orange", "square", (2, 2))])
    assert caption_scene(pair) == "a red circle and an orange square"
    relation = many("relation", [("red", "circle", (0, 1)), ("blue", "square", (2, 1))], relation="left of")
    assert caption_scene(relation) == "a red circle left of a blue square"
    assert parse_prompt("a red circle to the left of a blue square") == scene_query(relation)
    assert parse_prompt("there is a red circle in the top left corner.").position == "top left"


@pytest.mark.parametrize("text", ["a red elephant", "five red circles", "a red circle near a blue square", ""])
def test_parse_prompt_rejects_foreign_text(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_prompt(text)


def test_same_seed_same_data_different_seed_different():
    a, b, c = _scenes(11, 300), _scenes(11, 300), _scenes(12, 300)
    assert a == b and a != c
    assert np.array_equal(render_batch(a), render_batch(b))
    assert not np.array_equal(render_batch(a), render_batch(c))
    d1 = build_shapes_dataset(num_train=40, num_validation=10, num_heldout=10, seed=3)
    d2 = build_shapes_dataset(num_train=40, num_validation=10, num_heldout=10, seed=3)
    d3 = build_shapes_dataset(num_train=40, num_validation=10, num_heldout=10, seed=4)
    for split in d1:
        assert d1[split].data.to_pydict() == d2[split].data.to_pydict()
        assert d1[split]["text"] != d3[split]["text"]
    assert d1["train"]["text"] != d1["validation"]["text"][:40]


def test_stream_is_deterministic_and_sharded():
    def take(n=40, **kwargs):
        stream = iter(ShapesStream(chunk_size=16, **kwargs))
        return [next(stream) for _ in range(n)]

    first, again = take(seed=5), take(seed=5)
    assert [s["text"] for s in first] == [s["text"] for s in again]
    assert all(torch.equal(x["pixel_values"], y["pixel_values"]) for x, y in zip(first, again))
    assert [s["text"] for s in take(seed=6)] != [s["text"] for s in first]
    rank1 = take(seed=5, rank=1, world_size=2)
    assert [s["text"] for s in rank1] != [s["text"] for s in first]
    pixels = first[0]["pixel_values"]
    assert pixels.shape == (3, 32, 32) and pixels.dtype == torch.float32
    assert pixels.min() >= -1 and pixels.max() == 1.0
    loader = torch.utils.data.DataLoader(ShapesStream(size=64, seed=0, chunk_size=8), batch_size=4)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (4, 3, 64, 64) and len(batch["text"]) == 4
    with pytest.raises(ValueError, match="rank"):
        ShapesStream(rank=2, world_size=2)


def _coverage_from_pixels(image, scene):
    """Sum of per-pixel coverage recovered from the rendered colours."""
    total, scale = 0.0, image.shape[0] / scene.size
    for obj in scene.objects:
        obj = dataclasses.replace(obj, center=(obj.center[0] * scale, obj.center[1] * scale))
        x0, y0, x1, y1 = _footprint(obj, image.shape[0])
        box = image[max(y0, 0) : y1, max(x0, 0) : x1].reshape(-1, 3).astype(np.float64) - 255.0
        direction = np.array(PALETTE[obj.color], dtype=np.float64) - 255.0
        total += float(np.clip(box @ direction / (direction @ direction), 0, 1).sum())
    return total


def test_64px_geometry_scales():
    square = Scene("single", [ShapeObject("red", "square", "small", (1, 1), (16.0, 16.0))])
    rows, cols = np.nonzero((render_scene(square) != 255).any(-1))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (13, 18, 13, 18)
    rows, cols = np.nonzero((render_scene(square, size=64) != 255).any(-1))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (26, 37, 26, 37)
    for scene in _scenes(9, 30, size=32):
        area32 = _coverage_from_pixels(render_scene(scene), scene)
        area64 = _coverage_from_pixels(render_scene(scene, size=64), scene)
        assert abs(area64 / area32 - 4) < 0.02
    for scene in _scenes(10, 100, size=64):
        assert scene.size == 64 and render_scene(scene).shape == (64, 64, 3)
        assert all(S.extent_px(o.size, 64) in (12, 20) for o in scene.objects)


def test_benchmark_queries_never_in_train(small_dataset):
    bench = {p.query.key() for seed in (0, 1234) for p in benchmark_prompts(n_per_category=300, seed=seed)}
    rng = np.random.default_rng(0)
    # control: without the exclusion, the train query distribution does hit benchmark queries
    raw = [_sample_query(rng, kind, heldout=False) for kind in S.SCENE_KINDS for _ in range(300)]
    assert sum(q.key() in bench for q in raw) > 100
    train_keys = {scene_query(s).key() for s in _scenes(13, 8000)}
    train_keys |= {parse_prompt(t).key() for t in small_dataset["train"]["text"]}
    train_keys |= {parse_prompt(t).key() for t in small_dataset["validation"]["text"]}
    stream = iter(ShapesStream(seed=1, chunk_size=128))
    train_keys |= {parse_prompt(next(stream)["text"]).key() for _ in range(500)}
    assert not train_keys & bench
    assert len(train_keys) > 1000


def test_dataset_columns_and_consistency(small_dataset):
    assert set(small_dataset) == {"train", "validation", "heldout"}
    train = small_dataset["train"]
    assert len(train) == 1500 and isinstance(train.features["image"], datasets.Image)
    assert train.column_names == ["image", "text", "kind", "objects"]
    for row in train.select(range(30)):
        objects = [
            ShapeObject(o["color"], o["shape"], o["size"], tuple(o["cell"]), tuple(o["center"])) for o in row["objects"]
        ]
        assert row["image"].size == (32, 32) and row["image"].mode == "RGB"
        assert np.array_equal(np.asarray(row["image"]), render_scene(Scene(row["kind"], objects)))
        query = parse_prompt(row["text"])
        assert query.kind == row["kind"] and {o.combo for o in query.objects} <= {(o.color, o.shape) for o in objects}
    kinds = train["kind"]
    assert all(kinds.count(k) > 150 for k in S.SCENE_KINDS)


def test_bad_arguments_name_the_argument():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="split"):
        sample_scene(rng, split="test")
    with pytest.raises(ValueError, match="kind"):
        sample_scene(rng, kind="triple")
    with pytest.raises(ValueError, match=r"kind_probs must be 4 non-negative weights"):
        sample_scene(rng, kind_probs=(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"kind_probs must be 4 non-negative weights"):
        build_shapes_dataset(num_train=2, num_validation=1, num_heldout=1, kind_probs=(0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"unknown relation layout 'diagonal'; expected one of \('any', 'canonical'\)"):
        ShapesLayout(relation="diagonal")
    with pytest.raises(ValueError, match=r"unknown scene kind\(s\) \['triple'\] for a canonical layout"):
        ShapesLayout.canonical("count", "triple")
    with pytest.raises(ValueError, match=r"layout must be a ShapesLayout \(e.g. ShapesLayout.canonical\('count'\)\) or None, got 'canonical'"):
        sample_scene(rng, layout="canonical")
    with pytest.raises(ValueError, match=r"layout must be a ShapesLayout"):
        ShapesStream(layout={"count": "canonical"})
    with pytest.raises(ValueError, match=r"layout must be a ShapesLayout"):
        build_shapes_dataset(num_train=2, num_validation=1, num_heldout=1, layout="canonical")


def test_layout_spec_and_canonical():
    assert ShapesLayout.spec() == ShapesLayout() == ShapesLayout(single="any", count="any", pair="any", relation="any")
    assert ShapesLayout.spec().canonical_kinds == ()
    assert ShapesLayout.canonical() == ShapesLayout(*["canonical"] * 4) and ShapesLayout.canonical().canonical_kinds == S.SCENE_KINDS
    both = ShapesLayout.canonical("relation", "count")
    assert both == ShapesLayout(count="canonical", relation="canonical") and both.canonical_kinds == ("count", "relation")
    assert both.is_canonical("count") and not both.is_canonical("single")
    assert hash(both) == hash(ShapesLayout(count="canonical", relation="canonical"))  # frozen: a cache key of the built data


def test_kind_probs_set_the_mix_of_train_and_validation_only():
    rng = np.random.default_rng(0)
    kinds = [sample_scene(rng, split="validation", kind_probs=(0, 1, 0, 3)).kind for _ in range(400)]
    assert set(kinds) == {"count", "relation"} and 0.6 < kinds.count("relation") / len(kinds) < 0.9
    stream = iter(ShapesStream(chunk_size=8, kind_probs=(0, 0, 0, 1), paraphrase=False))
    assert all(parse_prompt(next(stream)["text"]).kind == "relation" for _ in range(16))
    heldout = [sample_scene(rng, split="heldout", kind_probs=(0, 0, 0, 1)).kind for _ in range(200)]
    assert heldout.count("single") > 100  # the held-out split keeps its own (mostly single) mix


@pytest.mark.parametrize("relation_layout", LAYOUT_CHOICES)
def test_relation_layouts(relation_layout):
    rng = np.random.default_rng(3)
    scenes = [sample_scene(rng, "relation", layout=ShapesLayout(relation=relation_layout)) for _ in range(300)]
    layouts = {}
    for scene in scenes:
        (ac, ar), (bc, br) = (o.cell for o in scene.objects)
        expected = {"left of": ar == br and ac < bc, "right of": ar == br and ac > bc,
                    "above": ac == bc and ar < br, "below": ac == bc and ar > br}  # fmt: skip
        assert expected[scene.relation], scene  # every layout obeys the spec
        layouts.setdefault(scene.relation, set()).add((scene.objects[0].cell, scene.objects[1].cell))
    if relation_layout == "canonical":  # one layout per relation: the middle line's outer cells
        assert layouts == {"left of": {((0, 1), (2, 1))}, "right of": {((2, 1), (0, 1))},
                           "above": {((1, 0), (1, 2))}, "below": {((1, 2), (1, 0))}}  # fmt: skip
    else:  # every line, every ordered pair of cells on it: 9 layouts per relation
        assert {len(v) for v in layouts.values()} == {9}


@pytest.mark.parametrize("count_layout", LAYOUT_CHOICES)
def test_count_layouts(count_layout):
    rng = np.random.default_rng(5)
    layouts = {}
    for _ in range(300):
        scene = sample_scene(rng, "count", layout=ShapesLayout(count=count_layout))
        cells = tuple(o.cell for o in scene.objects)
        assert len(set(cells)) == len(cells) and len({(o.color, o.shape) for o in scene.objects}) == 1
        assert parse_prompt(caption_scene(scene, rng)).count == len(cells)  # the caption still says n
        layouts.setdefault(len(cells), set()).add(frozenset(cells))
    assert set(layouts) == {2, 3, 4}
    if count_layout == "canonical":  # one layout per count
        assert layouts == {n: {frozenset(cells)} for n, cells in S.CANONICAL_COUNT_CELLS.items()}
    else:  # random distinct cells: many layouts per count
        assert min(len(v) for v in layouts.values()) > 20


@pytest.mark.parametrize("single_layout", LAYOUT_CHOICES)
def test_single_layouts(single_layout):
    rng = np.random.default_rng(7)
    unnamed_sizes, unnamed_cells = set(), set()
    for _ in range(300):
        scene = sample_scene(rng, "single", layout=ShapesLayout(single=single_layout))
        (obj,) = scene.objects
        query = parse_prompt(caption_scene(scene, rng))
        assert query.objects[0].size in (None, obj.size)  # a named size or position is always kept
        assert query.position is None or POSITIONS[query.position] == obj.cell
        if not scene.name_size:
            unnamed_sizes.add(obj.size)
        if not scene.name_position:
            unnamed_cells.add(obj.cell)
    if single_layout == "canonical":  # what the caption leaves open has one value
        assert unnamed_sizes == {S.CANONICAL_SINGLE_SIZE} and unnamed_cells == {S.CANONICAL_SINGLE_CELL}
    else:  # the spec's random size and cell
        assert unnamed_sizes == {"small", "large"} and len(unnamed_cells) == 9


@pytest.mark.parametrize("pair_layout", LAYOUT_CHOICES)
def test_pair_layouts(pair_layout):
    rng = np.random.default_rng(8)
    layouts = set()
    for _ in range(200):
        scene = sample_scene(rng, "pair", layout=ShapesLayout(pair=pair_layout))
        query = parse_prompt(caption_scene(scene))  # the canonical caption names the objects in scene order
        assert [(o.color, o.shape) for o in query.objects] == [(o.color, o.shape) for o in scene.objects]
        layouts.add(tuple(o.cell for o in scene.objects))
    if pair_layout == "canonical":  # the first-named object on the left of the middle row, the second on the right
        assert layouts == {S.CANONICAL_PAIR_CELLS}
    else:
        assert len(layouts) > 40


@pytest.mark.parametrize("kind", S.SCENE_KINDS)
def test_a_canonical_layout_leaves_other_kinds_alone(kind):
    a, b = np.random.default_rng(6), np.random.default_rng(6)
    for other in set(S.SCENE_KINDS) - {kind}:
        for _ in range(20):  # same scenes and the same random draws
            assert sample_scene(a, other) == sample_scene(b, other, layout=ShapesLayout.canonical(kind))


def test_canonical_relation_prompt_is_the_same_ask_with_left_of_or_above():
    rng = np.random.default_rng(4)
    relations = set()
    for _ in range(400):  # every paraphrase and frame the world writes
        caption = caption_scene(sample_scene(rng, "relation"), rng)
        rewritten = S.canonical_relation_prompt(caption)
        before, after = parse_prompt(caption), parse_prompt(rewritten)
        assert S.query_key(after) == S.query_key(before), (caption, rewritten)
        relations.add(after.relation)
        if before.relation in ("left of", "above"):
            assert rewritten == caption
    assert relations == {"left of", "above"}
    assert S.canonical_relation_prompt("There is an Orange plus to the right of a red circle.") == (
        "there is a red circle to the left of an orange plus."  # articles travel with their objects
    )
    assert S.canonical_relation_prompt("a small red circle below a pink plus") == "a pink plus above a small red circle"
    for text in ("two red circles", "a red circle and a pink plus", "a cat right of a dog", ""):
        assert S.canonical_relation_prompt(text) == text


def test_hard_negative_captions_change_exactly_one_fact():
    rng = np.random.default_rng(0)
    data = build_shapes_dataset(num_train=400, num_validation=1, num_heldout=1, seed=3)["train"]
    seen_kinds = set()
    for caption in data["text"]:
        negative = S.hard_negative_caption(caption, rng)
        if negative is None:  # e.g. a pair or relation of two identical objects: nothing to swap
            continue
        query, wrong = S.parse_prompt(caption), S.parse_prompt(negative)
        assert wrong.kind == query.kind and wrong.key() != query.key()
        assert not wrong.uses_heldout and not S.is_benchmark_query(wrong)  # negatives are training text too
        # the same words: colours and shapes are only moved around, never new ones
        assert sorted(o.color for o in wrong.objects) == sorted(o.color for o in query.objects)
        assert sorted(o.shape for o in wrong.objects) == sorted(o.shape for o in query.objects) or query.kind == "single"
        seen_kinds.add(query.kind)
    assert seen_kinds == set(S.SCENE_KINDS)
    swapped = S.parse_prompt(S.hard_negative_caption("two pink triangles", rng))
    assert swapped.count in (3, 4) and swapped.objects == S.parse_prompt("two pink triangles").objects
    assert S.hard_negative_caption("a cat on a mat", rng) is None
