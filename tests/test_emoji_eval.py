"""The Emoji benchmark: fixed features, retrieval ranks, ceilings and floors, distribution metrics, CLI."""

import json

import numpy as np
import pytest
from emoji_fixture import fixture_kwargs, set_fixture_env
from scipy import ndimage

from hf_textimg.data.emoji import build_emoji_dataset
from hf_textimg.evaluation.distribution import fid, kid, prdc
from hf_textimg.evaluation.emoji_eval import (
    EmojiReferences,
    emoji_prompts,
    evaluate_emoji,
    recall_at,
    retrieval_ranks,
    baseline_images,
    score_baselines,
)
from hf_textimg.evaluation.image_features import colour_layout_features, srgb_to_oklab

STYLES = ["noto", "twemoji", "openmoji", "fluent"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emoji_eval")
    return build_emoji_dataset(32, styles=STYLES, cache_dir=folder / "cache", **fixture_kwargs(folder / "sources"))


def test_retrieval_ranks_on_a_hand_built_gallery():
    # Four references on a line at x = 0, 1, 2, 10; "A" and "B" are two variants of one base.
    gallery = np.array([[0.0], [1.0], [2.0], [10.0]])
    seqs, bases = np.array(["A", "B", "C", "D"]), np.array(["AB", "AB", "C", "D"])
    queries = np.array([[0.1], [1.9], [1.4], [9.0]])
    emoji, group = retrieval_ranks(queries, gallery, seqs, bases, ["A", "B", "B", "C"], ["AB", "AB", "AB", "C"])
    # 0.1 asks A: A is nearest. 1.9 asks B: C (0.1 away) is nearer than B (0.9), so rank 2, and group AB (0.9) is 2nd too.
    # 1.4 asks B: B (0.4) beats C (0.6). 9.0 asks C: D is 1 away, C 7, B 8, A 9, so C is 2nd.
    assert emoji.tolist() == [1, 2, 1, 2]
    assert group.tolist() == [1, 2, 1, 2]
    # The group counts whole bases: asking A at 1.0 (B's exact spot) misses the emoji but finds its group.
    e, g = retrieval_ranks(np.array([[1.0]]), gallery, seqs, bases, ["A"], ["AB"])
    assert (e[0], g[0]) == (2, 1)
    assert recall_at(np.array([1, 2, 1, 7]), ks=(1, 5)) == {"recall@1": 0.5, "recall@5": 0.75}


def test_features_are_fixed_and_perceptual():
    white, black = np.ones((1, 32, 32, 3)), np.zeros((1, 32, 32, 3))
    np.testing.assert_allclose(srgb_to_oklab(np.array([1.0, 1.0, 1.0])), [1, 0, 0], atol=1e-3)
    f = colour_layout_features(np.concatenate([white, black]))
    assert f.shape == (2, 384) and f.dtype == np.float32
    # Any size, uint8 or float: a 64 px image and its 32 px area-resize have the same features.
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    small = big.reshape(3, 32, 2, 32, 2, 3).mean((2, 4)) / 255
    np.testing.assert_allclose(colour_layout_features(big), colour_layout_features(small), atol=1e-4)


def test_references_rank_first_and_floors_last(data):
    """On every style: each reference retrieves itself, its blurred copy nearly always, the floors almost never."""
    refs = EmojiReferences.from_dataset(data)
    assert sorted(refs.features) == sorted(STYLES)
    for style in STYLES:
        prompts = [p for name in ("seen", "validation", "heldout_variants") for p in emoji_prompts(data, name, [style])]
        scores = score_baselines(refs, prompts)
        assert scores["reference"]["recall@1"] == 1.0 and scores["reference"]["style@1"] == 1.0, style
        assert scores["blurred"]["recall@1"] >= 0.8, style
        for floor in ("wrong_emoji", "mean_image", "noise"):
            assert scores[floor]["recall@1"] <= 0.15, (style, floor)
            assert scores[floor]["recall@5"] < scores["blurred"]["recall@5"], (style, floor)


def test_other_styles_baseline_is_the_right_emoji_in_the_other_styles(data):
    refs = EmojiReferences.from_dataset(data)
    prompts = emoji_prompts(data, "heldout_style")
    assert prompts
    images = baseline_images(refs, prompts)["other_styles"]
    for prompt, image in zip(prompts, images):
        drawings = [refs.images[s][refs.index(s, prompt.sequence)] for s in STYLES if s != prompt.style and (refs.sequences[s] == prompt.sequence).any()]
        np.testing.assert_allclose(image, np.mean(drawings, axis=0) / 255, atol=1e-6)
    assert "other_styles" in score_baselines(refs, prompts)
    noto_only = EmojiReferences.from_dataset(data, styles=["noto"])  # no other style to draw it: no such baseline
    assert "other_styles" not in baseline_images(noto_only, prompts) and "other_styles" not in score_baselines(noto_only, prompts)


def test_evaluate_emoji_scores_a_generator(data):
    lookup = {t: np.asarray(im) for ds in data.values() for t, im in zip(ds["text"], ds["image"])}
    calls = []

    def perfect(prompts):  # draws each asked reference exactly
        calls.append(len(prompts))
        return np.stack([lookup[p] for p in prompts]).astype(np.float32) / 255

    report = evaluate_emoji(perfect, data, n_per_set=3, distribution_samples=8, batch_size=4)
    assert set(report.sets) == {"seen", "heldout_style", "heldout_variants", "validation"}
    for name, s in report.sets.items():
        assert s["recall@1"] == s["group_recall@1"] == s["style@1"] == 1.0, name
        assert s["n"] == min(3, len(emoji_prompts(data, name)))
    assert report.distribution["n"] == 8 and abs(report.distribution["model"]["fid"]) < 1e-6
    assert report.distribution["model"]["coverage"] == 1.0 and report.distribution["baselines"]["noise"]["coverage"] == 0.0
    assert max(calls) <= 4
    metrics = report.metrics()
    assert metrics["emoji_seen_recall@1"] == 1.0 and "emoji_fid" in metrics
    assert "heldout_style" in report.format_table() and "NOT comparable" in report.format_table()

    def blurry(prompts):  # the right emoji, blurred hard: still found more often than the floors
        return ndimage.gaussian_filter(perfect(prompts), (0, 3, 3, 0))

    blurred = evaluate_emoji(blurry, data, prompt_sets=["seen"], styles=["twemoji"], n_per_set=None)
    s = blurred.sets["seen"]
    assert s["recall@10"] > s["baselines"]["noise"]["recall@10"]
    with pytest.raises(ValueError, match="prompt_sets"):
        evaluate_emoji(perfect, data, prompt_sets=["train"])


def test_prompts_are_deterministic_and_per_style(data):
    a = emoji_prompts(data, "seen", ["noto"], 5)
    assert a == emoji_prompts(data, "seen", ["noto"], 5) and len(a) == 5
    assert all(p.prompt == f"{p.name}, noto style" for p in a)
    assert {p.style for p in emoji_prompts(data, "heldout_style", STYLES)} == {"noto"}
    assert all(p.prompt == p.name for p in emoji_prompts(data, "validation", ["fluent"], caption_style="never"))


def test_distribution_metrics_on_known_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    same = rng.normal(size=(300, 8))
    far = rng.normal(size=(300, 8)) + 5
    # Unbiased MMD^2: about 0 (either sign) for two samples of one distribution, large for shifted ones.
    assert abs(kid(real, same, subset_size=100, num_subsets=20)[0]) < 1e-4 * kid(real, far, subset_size=100, num_subsets=20)[0]
    assert fid(real, real) == pytest.approx(0, abs=1e-8)
    assert fid(real, far) == pytest.approx(8 * 25, rel=0.1)  # |mean difference|^2 = 8 * 5^2
    assert {k: v for k, v in prdc(real, real).items() if k != "density"} == {"precision": 1.0, "recall": 1.0, "coverage": 1.0}
    assert prdc(real, same)["density"] == pytest.approx(1.0, abs=0.15)  # density's expectation for one distribution is 1
    assert prdc(real, far)["precision"] == prdc(real, far)["coverage"] == 0.0
    collapsed = np.repeat(real[:1], 300, 0)  # mode collapse: precise but covers nothing
    assert prdc(real, collapsed)["coverage"] < 0.05


@pytest.mark.slow
def test_cli_evaluates_a_pipeline_on_the_emoji_benchmark(tmp_path, monkeypatch, capsys):
    from hf_textimg.cli import main

    set_fixture_env(monkeypatch, tmp_path)
    out = tmp_path / "eval.json"
    # The shipped Shapes model stands in for an emoji model: the command's plumbing is what is tested.
    args = ["evaluate", "--benchmark", "emoji", "--prompts-per-category", "2", "--distribution-samples", "8", "--steps", "2",
            "--batch-size", "8", "--device", "cpu", "--quiet", "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "heldout_variants" in printed and "style@1" in printed
    result = json.loads(out.read_text())
    assert result["benchmark"] == "emoji" and set(result["sets"]) == {"seen", "heldout_style", "heldout_variants"}
    assert result["distribution"]["n"] == 8 and result["settings"]["num_inference_steps"] == 2
    assert result["settings"]["references"] == {"noto": 30, "twemoji": 30, "openmoji": 30, "fluent": 29}
    assert json.loads(printed.strip().splitlines()[-1]) == result
    assert main(args[:-2] + ["--emoji-styles", "fluent", "--prompt-set", "validation"]) == 0
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sets"]) == {"validation"}
    # A model trained with --emoji_dev_style noto: its development rows leave `seen`, and validation scores them.
    assert main(args[:-2] + ["--prompt-set", "validation", "--emoji-dev-style", "noto", "--prompts-per-category", "50"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["sets"]) == {"validation", "dev_style"} and result["emoji_dev_style"] == "noto"


def test_dev_style_split_moves_rows_out_of_train_and_drops_shared_artwork():
    import datasets
    from PIL import Image

    from hf_textimg.data.emoji import _unit_hash, is_dev_style_row, with_dev_style_split

    bases = [f"1F{i:03X}" for i in range(400)]
    dev_bases = [b for b in bases if _unit_hash("dev_style:" + b) < 0.1 and _unit_hash("heldout_style:" + b) >= 0.1]
    held_bases = [b for b in bases if _unit_hash("dev_style:" + b) < 0.1 and _unit_hash("heldout_style:" + b) < 0.1]
    assert len(dev_bases) >= 3 and held_bases  # the rule selects about a tenth, never a heldout_style base
    picked = dev_bases[:3] + held_bases[:1] + [b for b in bases if _unit_hash("dev_style:" + b) >= 0.1][:3]

    def image(i):
        return Image.new("RGB", (4, 4), (i, 0, 0))

    rows = [{"base": b, "sequence": b, "style": s, "text": f"{b}, {s} style", "image": image(i)}
            for i, (b, s) in enumerate((b, s) for b in picked for s in ("noto", "twemoji"))]
    rows[2]["image"] = image(len(rows) + 1)  # dev_bases[1]'s noto artwork is also another train row's:
    rows[-1]["image"] = image(len(rows) + 1)
    data = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "validation": datasets.Dataset.from_list(rows[:1])})
    split = with_dev_style_split(data, "noto")
    assert split["validation"] is data["validation"]
    assert sorted(split["dev_style"]["base"]) == sorted([dev_bases[0], dev_bases[2]])  # dev_bases[1] dropped (shared artwork)
    assert set(split["dev_style"]["style"]) == {"noto"}
    expected_train = [(r["base"], r["style"]) for r in rows if not is_dev_style_row(r["base"], r["style"], "noto")]
    assert list(zip(split["train"]["base"], split["train"]["style"])) == expected_train
    assert (held_bases[0], "noto") in expected_train  # a heldout_style base keeps its train rows
    with pytest.raises(ValueError, match="dev_style must be one of"):
        with_dev_style_split(data, "apple")
    with pytest.raises(ValueError, match="'dev_style' split"):
        emoji_prompts(data, "dev_style")
