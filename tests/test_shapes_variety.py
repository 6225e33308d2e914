"""Exactness (the asked objects and nothing else) and layout variety (distinct cell layouts of K images per
open-layout prompt, against the spec's own sampler): hf_textimg.shapes.scorer.is_exact, hf_textimg.shapes.variety."""

import math

import numpy as np
import pytest
import torch

from hf_textimg import shapes as S
from hf_textimg.shapes import (
    OPEN_LAYOUT_CATEGORIES,
    ShapesScorer,
    benchmark_prompts,
    is_exact,
    layout_of,
    measure_variety,
    parse_prompt,
    reference_distinct,
    render_scene,
    scene_from_query,
    variety_prompts,
)
from hf_textimg.shapes.vocab import CELLS
from tests.test_shapes_scorer import OraclePipeline


@pytest.fixture(scope="module")
def scorer():
    return ShapesScorer()


def spec_pipeline(seed: int = 0):
    """prompts -> a fresh spec render of each (the data itself, as a `generate_fn`)."""
    rng = np.random.default_rng(seed)
    return lambda prompts: [render_scene(scene_from_query(parse_prompt(p), rng)) for p in prompts]


def with_extra_object(scene: S.Scene) -> S.Scene:
    """The scene plus one more small object (a green circle, or an orange square if that is asked) in a free cell."""
    cell = next(c for c in CELLS if c not in {o.cell for o in scene.objects})  # objects in distinct cells never overlap
    combo = ("orange", "square") if ("green", "circle") in {(o.color, o.shape) for o in scene.objects} else ("green", "circle")
    extra = S.ShapeObject(*combo, "small", cell, S.cell_center(cell, scene.size))
    return S.Scene(scene.kind, [*scene.objects, extra], relation=scene.relation, name_size=scene.name_size,
                   name_position=scene.name_position, size=scene.size)


# -- exactness -------------------------------------------------------------------------------------


def test_renders_of_the_asked_scene_are_exact_and_an_extra_object_is_not(scorer):
    prompts = benchmark_prompts(6, seed=2)
    rng = np.random.default_rng(0)
    scenes = [scene_from_query(p.query, rng) for p in prompts]
    report = scorer.evaluate([render_scene(s) for s in scenes], prompts)
    assert report.exact == {c: 1.0 for c in S.BENCHMARK_CATEGORIES} and report.exact_overall == 1.0

    crowded = scorer.evaluate([render_scene(with_extra_object(s)) for s in scenes], prompts)
    assert crowded.exact == {c: 0.0 for c in S.BENCHMARK_CATEGORIES} and crowded.exact_overall == 0.0
    # what the spec's checks let pass: a pair with a third object, a colour with any shape beside it
    assert crowded.accuracy["pair"] == 1.0 and crowded.accuracy["relation"] == 1.0
    assert report.to_metrics()["shapes_exact"] == 1.0 and crowded.to_dict()["exact"]["pair"] == 0.0
    assert "exact" in report.format_table().splitlines()[0]


def test_is_exact_compares_the_asked_multiset(scorer):
    three = parse_prompt("three blue squares")
    scene = scene_from_query(three, np.random.default_rng(1))
    objects = scorer.detect(render_scene(scene))
    assert is_exact(objects, three)
    assert not is_exact(objects[:2], three) and not is_exact(objects, parse_prompt("four blue squares"))
    assert not is_exact(objects, parse_prompt("three red squares"))
    unknown = [S.DetectedObject("blue", None, o.center, o.cell, o.area, 0.0) for o in objects]  # no shape fits: matches nothing
    assert not is_exact(unknown, three)
    pair = parse_prompt("a red circle and a blue square")
    two = scorer.detect(render_scene(scene_from_query(pair, np.random.default_rng(2))))
    assert is_exact(two, pair) and is_exact(two, parse_prompt("a blue square and a red circle"))
    assert not is_exact(two + two[:1], pair)  # a second red circle beside the pair


# -- variety -----------------------------------------------------------------------------------------


def test_layout_is_the_set_of_occupied_cells(scorer):
    scene = S.Scene("pair", [S.ShapeObject("red", "circle", "small", (0, 0), S.cell_center((0, 0))),
                             S.ShapeObject("blue", "plus", "small", (2, 1), S.cell_center((2, 1)))])  # fmt: skip
    objects = scorer.detect(render_scene(scene))
    assert layout_of(objects) == frozenset({0, 5})  # row * 3 + col
    assert layout_of(objects + objects[:1]) == frozenset({0, 5})  # two objects in one cell: one cell


def test_variety_prompts_are_the_open_layout_ones_of_the_benchmark():
    prompts = variety_prompts(3)
    assert [p.category for p in prompts] == [c for c in OPEN_LAYOUT_CATEGORIES for _ in range(3)]
    assert all(p.query.position is None for p in prompts)
    assert prompts == [p for p in benchmark_prompts(3) if p.category != "position"]  # a benchmark draw: never seen in training
    # every validation heldout prompt names a position (none is a benchmark prompt), so that row is absent there
    assert {p.category for p in variety_prompts(3, prompt_set="validation")} == set(OPEN_LAYOUT_CATEGORIES) - {"heldout"}


def _expected_distinct(layouts: int, k: int = 8) -> float:
    """Expected distinct values among k uniform draws from `layouts` equally likely ones."""
    return layouts * (1 - (1 - 1 / layouts) ** k)


@pytest.mark.parametrize(
    "prompt, layouts",
    [("a blue circle", 9), ("a small red square", 9), ("two red circles", 36), ("three blue squares", 84),
     ("four green pluses", 126), ("a red circle and a blue square", 36), ("a red circle left of a blue square", 9)],
)
def test_reference_reproduces_the_spec_samplers_count(prompt, layouts):
    # about 5.5 of 8 for a single object, 7.3-7.8 for counts (the 7.6 on average); 64 repeats: SE ~0.1
    assert reference_distinct(parse_prompt(prompt), 8, repeats=64) == pytest.approx(_expected_distinct(layouts), abs=0.3)


def test_a_pipeline_that_always_draws_the_same_image_has_one_layout():
    image = render_scene(scene_from_query(parse_prompt("three blue squares"), np.random.default_rng(0)))
    report = measure_variety(lambda prompts: [image] * len(prompts), images_per_prompt=8, n_per_category=2)
    assert report.distinct == {c: 1.0 for c in OPEN_LAYOUT_CATEGORIES}
    assert report.ratio == pytest.approx({c: 1 / report.reference[c] for c in OPEN_LAYOUT_CATEGORIES})
    assert all(5.0 <= report.reference[c] <= 8.0 for c in OPEN_LAYOUT_CATEGORIES), report.reference
    assert report.counts == {c: 2 for c in OPEN_LAYOUT_CATEGORIES}


def test_the_spec_renders_are_as_varied_as_the_data():
    report = measure_variety(spec_pipeline(0), images_per_prompt=8, n_per_category=6, batch_size=20)
    assert all(0.8 <= ratio <= 1.2 for ratio in report.ratio.values()), report.format_table()
    assert 0.9 <= report.mean_ratio <= 1.1, report.format_table()
    metrics = report.to_metrics()
    assert metrics["shapes_variety"] == report.mean_ratio and set(metrics) == {"shapes_variety", *(f"shapes_variety_{c}" for c in OPEN_LAYOUT_CATEGORIES)}
    table = report.format_table()
    assert all(line.split()[0] in (*OPEN_LAYOUT_CATEGORIES, "variety:", "category", "mean") for line in table.splitlines())


def test_measure_variety_passes_each_prompt_k_times_in_batches():
    calls = []

    def generate(prompts):
        calls.append(list(prompts))
        return spec_pipeline(len(calls))(prompts)

    report = measure_variety(generate, images_per_prompt=3, n_per_category=1, batch_size=4)
    asked = [p.prompt for p in variety_prompts(1) for _ in range(3)]
    assert [p for batch in calls for p in batch] == asked and [len(b) for b in calls] == [4, 4, 4, 4, 2]
    assert report.images_per_prompt == 3 and set(report.distinct) == set(OPEN_LAYOUT_CATEGORIES)
    with pytest.raises(ValueError, match="returned 1 images for 4 prompts"):
        measure_variety(lambda prompts: prompts[:1], images_per_prompt=2, n_per_category=2, batch_size=4)


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True])
def test_fewer_than_two_images_per_prompt_is_a_value_error(bad):
    with pytest.raises(ValueError, match=r"images_per_prompt must be a whole number >= 2"):
        measure_variety(spec_pipeline(), images_per_prompt=bad, n_per_category=1)


def test_evaluate_shapes_variety_calls_the_pipeline_with_one_seeded_generator():
    pipe, batches = OraclePipeline(), []  # the spec's renders behind a pipeline's call signature
    report = S.evaluate_shapes_variety(pipe, images_per_prompt=4, prompts_per_category=1, seed=5, batch_size=16,
                                       on_batch=batches.append, guidance_scale=2.0)
    assert batches == [16, 8] and all(out == "np" and kwargs == {"guidance_scale": 2.0} for _, _, out, kwargs in pipe.calls)
    generator = torch.Generator().manual_seed(5)
    assert [draw for _, draw, *_ in pipe.calls] == [torch.rand(1, generator=generator).item() for _ in range(2)]
    assert report.counts == {c: 1 for c in OPEN_LAYOUT_CATEGORIES} and not math.isnan(report.mean_ratio)
