import dataclasses
import re

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from hf_textimg import shapes as S
from hf_textimg.shapes import caption_query, render_scene, sample_scene, scene_from_query, scene_query
from hf_textimg.shapes import (
    OVERALL_CATEGORIES,
    BenchmarkPrompt,
    ShapesScorer,
    benchmark_prompts,
    parse_prompt,
    score_image,
)

FLIP = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


@pytest.fixture(scope="module")
def scorer():
    return ShapesScorer()


def _cases(seed, n_per_kind, size):
    """(scene, image) for every kind from the train and heldout splits."""
    rng = np.random.default_rng(seed)
    splits_kinds = [(split, kind) for split in ("train", "heldout") for kind in S.SCENE_KINDS]
    scenes = [sample_scene(rng, kind, split, size) for split, kind in splits_kinds for _ in range(n_per_kind)]
    return [(scene, render_scene(scene)) for scene in scenes]


def _accuracy(scorer, pairs):
    """pairs of (image, prompt) -> {category: accuracy}."""
    results = {}
    for image, prompt in pairs:
        for category, ok in scorer.score(image, prompt).items():
            results.setdefault(category, []).append(ok)
    return {c: float(np.mean(v)) for c, v in results.items()}


@pytest.mark.parametrize("size,n_per_kind", [(32, 150), (64, 25)])
def test_real_renders_score_true(scorer, size, n_per_kind):
    rng = np.random.default_rng(size)
    accuracy = _accuracy(scorer, [(image, S.caption_scene(scene, rng)) for scene, image in _cases(size, n_per_kind, size)])
    assert set(accuracy) == {"single", "color", "position", "count", "pair", "relation", "heldout"}
    assert all(value >= 0.99 for value in accuracy.values()), accuracy


def _other(rng, options, current):
    options = [o for o in options if o != current]
    return options[int(rng.integers(len(options)))]


def _wrong_queries(query, rng):
    """The query with one thing changed, and the category that must then score False."""
    first = query.objects[0]
    category = query.kind
    wrong = {}
    changes = {"color": {"color": _other(rng, S.COLORS, first.color)}, "shape": {"shape": _other(rng, S.SHAPES, first.shape)}}
    for name, change in changes.items():
        changed = dataclasses.replace(query, objects=(dataclasses.replace(first, **change), *query.objects[1:]))
        if query.kind == "single":
            category = "heldout" if changed.uses_heldout else "single"
        wrong[name] = (changed, category)
    if query.kind == "single" and query.position is not None and not query.uses_heldout:
        moved = dataclasses.replace(query, position=_other(rng, list(S.POSITIONS), query.position))
        wrong["position"] = (moved, "position")
    if query.kind == "count":
        off_by_one = {2: 3, 4: 3, 3: int(rng.choice([2, 4]))}[query.count]
        wrong["count"] = (dataclasses.replace(query, count=off_by_one), "count")
    if query.kind == "relation":
        wrong["relation"] = (dataclasses.replace(query, relation=FLIP[query.relation]), "relation")
    return wrong


def test_wrong_captions_are_rejected(scorer):
    rng = np.random.default_rng(0)
    rejected = {}
    for scene, image in _cases(1, 100, 32):
        for name, (query, category) in _wrong_queries(scene_query(scene), rng).items():
            verdicts = scorer.score(image, caption_query(query, rng))
            rejected.setdefault((name, category), []).append(not verdicts[category])
            if name == "color" and category == "single":
                rejected.setdefault(("color", "color"), []).append(not verdicts["color"])
    rates = {key: float(np.mean(v)) for key, v in rejected.items()}
    expected = {("color", "single"), ("color", "color"), ("shape", "single"), ("position", "position"),
                ("count", "count"), ("relation", "relation"), ("color", "pair"), ("shape", "relation")}  # fmt: skip
    assert expected <= set(rates)
    assert all(rate >= 0.99 for rate in rates.values()), rates


def _perturb(image, rng, noise=8.0, blur=0.0, shift=0.0):
    x = image.astype(np.float64)
    if blur:
        x = ndimage.gaussian_filter(x, (blur, blur, 0))
    x = x + rng.normal(0, noise, x.shape) + rng.normal(0, shift, (1, 1, 3))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kwargs", [{"noise": 8.0}, {"noise": 4.0, "blur": 0.6, "shift": 6.0}])
def test_robust_to_mild_noise_blur_and_colour_cast(scorer, kwargs):
    rng = np.random.default_rng(2)
    pairs = [(_perturb(image, rng, **kwargs), S.caption_scene(scene)) for scene, image in _cases(3, 40, 32)]
    accuracy = _accuracy(scorer, pairs)
    assert all(value >= 0.97 for value in accuracy.values()), accuracy


@pytest.mark.parametrize("size", [32, 64])
def test_blank_image_scores_false_everywhere(scorer, size):
    blank = np.full((size, size, 3), 255, dtype=np.uint8)
    assert scorer.detect(blank) == []
    for prompt in benchmark_prompts(n_per_category=3, seed=0):
        verdicts = scorer.score(blank, prompt.prompt)
        assert prompt.category in verdicts and not any(verdicts.values()), prompt


def test_detects_centre_cell_and_shape():
    scene = S.Scene("pair", [S.ShapeObject("orange", "triangle", "small", (0, 2), (6.333, 27.667)),
                             S.ShapeObject("cyan", "plus", "small", (2, 0), (26.667, 5.333))])  # fmt: skip
    found = {o.color: o for o in ShapesScorer().detect(render_scene(scene))}
    assert set(found) == {"orange", "cyan"}
    assert found["orange"].shape == "triangle" and found["orange"].cell == (0, 2)
    assert found["cyan"].shape == "plus" and found["cyan"].cell == (2, 0)
    assert abs(found["cyan"].center[0] - 26.667) <= 1 and abs(found["cyan"].center[1] - 5.333) <= 1


def test_input_formats_agree():
    scene = sample_scene(np.random.default_rng(4), "relation")
    image = render_scene(scene)
    prompt = S.caption_scene(scene)
    as_float = torch.from_numpy(image).permute(2, 0, 1).float() / 255  # (3, H, W) in [0, 1]
    inputs = [Image.fromarray(image), image, torch.from_numpy(image), as_float, as_float * 2 - 1, as_float.numpy()]
    for item in inputs:
        assert score_image(item, prompt) == {"relation": True}
    assert ShapesScorer(value_range=(0, 1)).score(as_float, prompt) == {"relation": True}


def test_benchmark_prompts_are_deterministic_and_parse():
    prompts = benchmark_prompts(n_per_category=20, seed=7)
    assert prompts == benchmark_prompts(n_per_category=20, seed=7)
    assert [p.prompt for p in prompts] != [p.prompt for p in benchmark_prompts(n_per_category=20, seed=8)]
    assert [p.category for p in prompts] == [c for c in S.BENCHMARK_CATEGORIES for _ in range(20)]
    for p in prompts:
        assert parse_prompt(p.prompt).key() == p.query.key()
        assert p.query.uses_heldout == (p.category == "heldout")
        assert (p.query.position is not None) == (p.category == "position")
        assert p.query.kind == {"count": "count", "pair": "pair", "relation": "relation"}.get(p.category, "single")


def test_validation_prompts_share_no_query_with_the_benchmark():
    validation = benchmark_prompts(n_per_category=40, seed=7, prompt_set="validation")
    assert [p.category for p in validation] == [c for c in S.BENCHMARK_CATEGORIES for _ in range(40)]
    benchmark_keys = {q.key() for c in S.BENCHMARK_CATEGORIES for q in S.benchmark_query_pool(c)}
    for p in validation:
        assert parse_prompt(p.prompt).key() == p.query.key() and p.query.key() not in benchmark_keys
        assert not S.is_benchmark_query(p.query)
        # held-out pairs only in the heldout category, and there at a named place (in no training caption)
        assert p.query.uses_heldout == (p.category == "heldout")
        assert p.category != "heldout" or p.query.position is not None
    with pytest.raises(ValueError, match=r"unknown prompt_set 'test'; expected one of \('benchmark', 'validation'\)"):
        benchmark_prompts(2, prompt_set="test")


def test_evaluate_pipeline_with_oracle_and_blank_generators(scorer):
    rng = np.random.default_rng(0)

    def oracle(texts):
        return [render_scene(scene_from_query(parse_prompt(t), rng, 32)) for t in texts]

    report = scorer.evaluate_pipeline(oracle, n_per_category=12, seed=3, batch_size=10)
    assert report.accuracy == {c: 1.0 for c in S.BENCHMARK_CATEGORIES}
    assert report.counts == {c: 12 for c in S.BENCHMARK_CATEGORIES}
    assert report.overall == 1.0 and report.heldout == 1.0
    assert report.exact == {c: 1.0 for c in S.BENCHMARK_CATEGORIES} and report.exact_overall == 1.0

    # overall excludes heldout: fail only the heldout prompts
    def fail_heldout(texts):
        images = oracle(texts)
        return [np.full_like(im, 255) if parse_prompt(t).uses_heldout else im for t, im in zip(texts, images)]

    report = scorer.evaluate_pipeline(fail_heldout, n_per_category=6, seed=3)
    assert report.heldout == 0.0 and report.overall == 1.0
    table = report.format_table()
    assert all(c in table for c in (*OVERALL_CATEGORIES, "heldout", "overall"))
    assert report.to_dict()["accuracy"]["heldout"] == 0.0

    blank = scorer.evaluate_pipeline(lambda texts: [np.full((64, 64, 3), 255, np.uint8)] * len(texts), n_per_category=4)
    assert blank.overall == 0.0 and blank.heldout == 0.0 and blank.exact_overall == 0.0


class OraclePipeline:
    """Draws every prompt exactly (a pipeline's call signature), and records how it was called."""

    def __init__(self):
        self.calls, self.rng = [], np.random.default_rng(0)

    def __call__(self, prompts, generator=None, output_type="pil", **kwargs):
        self.calls.append((len(prompts), torch.rand(1, generator=generator).item(), output_type, kwargs))
        images = [render_scene(scene_from_query(parse_prompt(p), self.rng, 32)) / 255.0 for p in prompts]  # (H, W, 3) in [0, 1]
        return type("Output", (), {"images": np.stack(images)})


def test_evaluate_shapes_scores_a_pipeline_with_one_seeded_generator():
    pipe, batches = OraclePipeline(), []
    report = S.evaluate_shapes(pipe, prompts_per_category=3, seed=5, batch_size=8, on_batch=batches.append, guidance_scale=2.0)
    assert report.accuracy == {c: 1.0 for c in S.BENCHMARK_CATEGORIES} and report.counts == {c: 3 for c in S.BENCHMARK_CATEGORIES}
    assert batches == [8, 8, 5] and [n for n, *_ in pipe.calls] == batches
    assert all(output_type == "np" and kwargs == {"guidance_scale": 2.0} for _, _, output_type, kwargs in pipe.calls)
    generator = torch.Generator().manual_seed(5)  # one generator, seeded once, drawn on by every batch in turn
    assert [draw for _, draw, *_ in pipe.calls] == [torch.rand(1, generator=generator).item() for _ in range(3)]
    assert report.to_metrics() == {"shapes_overall": 1.0, "shapes_heldout": 1.0, **{f"shapes_{c}": 1.0 for c in OVERALL_CATEGORIES},
                                   "shapes_exact": 1.0}
    validation = S.evaluate_shapes(OraclePipeline(), prompts_per_category=1, prompt_set="validation")
    assert validation.counts == {c: 1 for c in S.BENCHMARK_CATEGORIES}


def test_evaluate_counts_plain_prompts_under_every_category(scorer):
    scene = sample_scene(np.random.default_rng(1), "single")
    scene.name_position = True
    report = scorer.evaluate([render_scene(scene)], [S.caption_scene(scene)])
    assert report.accuracy == {"single": 1.0, "color": 1.0, "position": 1.0}
    with pytest.raises(ValueError, match="2 prompts"):
        scorer.evaluate([render_scene(scene)], [S.caption_scene(scene)] * 2)
    only_color = BenchmarkPrompt(S.caption_scene(scene), "color", scene_query(scene))
    assert scorer.evaluate([render_scene(scene)], [only_color]).counts == {"color": 1}


def test_unparseable_prompt_raises_naming_it():
    with pytest.raises(ValueError, match=re.escape("'a photo of a dog'")):
        score_image(np.full((32, 32, 3), 255, np.uint8), "a photo of a dog")


def test_relation_uses_the_spec_cell_semantics(scorer):
    def image(cell_a, cell_b):
        objs = [S.ShapeObject("red", "circle", "small", cell_a, S.cell_center(cell_a)),
                S.ShapeObject("blue", "square", "small", cell_b, S.cell_center(cell_b))]  # fmt: skip
        return render_scene(S.Scene("relation", objs))

    def holds(img, relation):
        return scorer.score(img, f"a red circle {relation} a blue square")["relation"]

    assert holds(image((0, 1), (2, 1)), "left of") and not holds(image((0, 1), (2, 1)), "right of")
    assert not holds(image((0, 0), (2, 1)), "left of")  # different rows: neither left nor right
    assert holds(image((1, 0), (1, 2)), "above") and holds(image((1, 2), (1, 0)), "below")
    assert not holds(image((0, 0), (1, 2)), "above")  # different columns


def test_off_world_blobs_count_as_objects_but_match_nothing(scorer):
    image = np.full((32, 32, 3), 255, dtype=np.uint8)
    image[4:26, 4:26] = S.PALETTE["red"]  # a square far larger than any Shapes object
    image[28:31, 28:31] = (0, 0, 0)  # black is no palette colour: background
    (blob,) = scorer.detect(image)
    assert blob.color == "red" and blob.shape is None
    assert scorer.score(image, "a large red square") == {"single": False, "color": True}
