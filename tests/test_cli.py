import json

import datasets
import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from PIL import Image

import hf_textimg.pretrained as pretrained
from hf_textimg.decoder import ConceptDecoder
from hf_textimg.cli import DEMO_PROMPTS, EMOJI_DEMO_PROMPTS, main
from hf_textimg.concept import ConceptTextConfig, ConceptTextModel
from hf_textimg.shapes import BENCHMARK_CATEGORIES, CANONICAL_COUNT_CELLS, OPEN_LAYOUT_CATEGORIES, CANONICAL_PAIR_CELLS, POSITIONS, parse_prompt
from hf_textimg.diffusion import build_unet
from hf_textimg.pipelines import ConceptDiffusionPipeline, DecoderPipeline
from hf_textimg.tokenization import train_tokenizer

SMALL = ["--num-train", "12", "--num-validation", "4", "--num-heldout", "4"]
PROMPTS = ["a red circle at the top left", "two blue squares"]


def grid_width(cols: int, side: int = 32, scale: int = 4, pad: int = 4) -> int:
    return cols * (side * scale + pad) + pad  # make_captioned_grid's layout


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny random ConceptDiffusionPipeline and DecoderPipeline, saved with save_pretrained."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer(PROMPTS + ["a green plus left of a pink triangle"], vocab_size=200, model_max_length=16)
    config = ConceptTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                               max_position_embeddings=16, projection_dim=32)
    unet = build_unet(cross_attention_dim=32, concept_dim=32, block_out_channels=(16, 32), attention_head_dim=8, norm_num_groups=8)
    scheduler = DPMSolverMultistepScheduler(prediction_type="v_prediction", thresholding=True, sample_max_value=1.0)
    decoder = ConceptDecoder(code_dim=32, noise_dim=4, block_out_channels=(16, 16, 8, 8), norm_num_groups=4)
    folders = {"diffusion": tmp_path_factory.mktemp("diffusion"), "decoder": tmp_path_factory.mktemp("decoder")}
    ConceptDiffusionPipeline(tokenizer, ConceptTextModel(config).eval(), unet, scheduler).save_pretrained(folders["diffusion"])
    DecoderPipeline(tokenizer=tokenizer, text_encoder=ConceptTextModel(config).eval(), decoder=decoder.eval()).save_pretrained(folders["decoder"])
    return {name: str(folder) for name, folder in folders.items()}


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# -- generate ------------------------------------------------------------------------------------


def test_generate_writes_a_grid_and_one_png_per_image(tiny_models, tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = ["generate", *PROMPTS, "--model", tiny_models["diffusion"], "--num-images", "3", "--steps", "2", "--out", str(out), "--quiet"]
    assert main([*argv, "--individual"]) == 0
    grid = Image.open(out)
    assert grid.width == grid_width(3) and grid.height > 2 * 128  # one row of 3 per prompt, captions below
    assert f"Grid: {out}" in capsys.readouterr().out
    singles = sorted(p.name for p in tmp_path.glob("grid-*.png"))
    assert singles == [f"grid-{p:02d}-{i:02d}.png" for p in range(2) for i in range(3)]
    assert Image.open(tmp_path / "grid-01-02.png").size == (32, 32)

    # Same seed -> the same pixels; another seed -> other pixels.
    main([*argv[:-3], "--out", str(tmp_path / "again.png"), "--quiet"])
    main([*argv[:-3], "--out", str(tmp_path / "other.png"), "--seed", "1", "--quiet"])
    assert np.array_equal(pixels(out), pixels(tmp_path / "again.png"))
    assert not np.array_equal(pixels(out), pixels(tmp_path / "other.png"))


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim", "euler", "unipc"])
def test_generate_with_another_scheduler_changes_the_sampler(tiny_models, tmp_path, scheduler):
    base = ["generate", PROMPTS[0], "--model", tiny_models["diffusion"], "--num-images", "1", "--steps", "3", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "dpm.png")]) == 0
    assert main([*base, "--scheduler", scheduler, "--out", str(tmp_path / "other.png")]) == 0
    assert not np.array_equal(pixels(tmp_path / "dpm.png"), pixels(tmp_path / "other.png"))


def test_bf16_sampling_runs_under_autocast_and_is_recorded(tiny_models, tmp_path, monkeypatch):
    import torch

    seen = []
    original = torch.autocast

    def spy(device_type, dtype=None, **kwargs):
        seen.append((device_type, dtype))
        return original(device_type, dtype=dtype, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    base = ["generate", PROMPTS[0], "--model", tiny_models["diffusion"], "--num-images", "1", "--steps", "3", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "fp32.png")]) == 0 and seen == []
    assert main([*base, "--mixed-precision", "bf16", "--out", str(tmp_path / "bf16.png")]) == 0
    assert seen == [("cpu", torch.bfloat16)]
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", tiny_models["diffusion"], "--prompts-per-category", "1", "--steps", "2",
                 "--mixed-precision", "bf16", "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["settings"]["mixed_precision"] == "bf16"


def test_evaluate_records_the_scheduler(tiny_models, tmp_path):
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--model", tiny_models["diffusion"], "--prompts-per-category", "1", "--steps", "2", "--scheduler", "ddim",
            "--json", str(out), "--quiet"]
    assert main(argv) == 0
    assert json.loads(out.read_text())["settings"]["scheduler"] == "DDIMScheduler"


def test_generate_with_a_one_shot_pipeline_ignores_steps_and_guidance(tiny_models, tmp_path, capsys):
    argv = ["generate", PROMPTS[0], "--model", tiny_models["decoder"], "--num-images", "2", "--steps", "5", "--guidance", "3"]
    assert main([*argv, "--out", str(tmp_path / "a.png")]) == 0
    assert "takes no --steps or --guidance; ignored" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "b.png")]) == 0
    assert Image.open(tmp_path / "a.png").width == grid_width(2)
    assert np.array_equal(pixels(tmp_path / "a.png"), pixels(tmp_path / "b.png"))


# -- evaluate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["diffusion", "decoder"])
def test_evaluate_prints_a_table_and_writes_json(tiny_models, tmp_path, capsys, kind):
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--model", tiny_models[kind], "--benchmark", "shapes", "--prompts-per-category", "2", "--json", str(out), "--quiet"]
    assert main([*argv, *(["--steps", "1"] if kind == "diffusion" else [])]) == 0
    stdout = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["accuracy"]) == set(BENCHMARK_CATEGORIES)
    assert result["counts"] == {c: 2 for c in BENCHMARK_CATEGORIES}
    assert 0 <= result["overall"] <= 1 and result["heldout"] == result["accuracy"]["heldout"]
    assert json.loads(stdout.strip().splitlines()[-1]) == result  # the same JSON as the last stdout line
    for category in (*BENCHMARK_CATEGORIES, "overall"):
        assert any(line.startswith(category) for line in stdout.splitlines())
    # exactness beside every category; variety (default K = 8) on 2 open-layout prompts per category (at most --prompts-per-category)
    assert set(result["exact"]) == set(BENCHMARK_CATEGORIES) and 0 <= result["exact_overall"] <= 1
    variety = result["variety"]
    assert variety["images_per_prompt"] == 8 and variety["counts"] == {c: 2 for c in OPEN_LAYOUT_CATEGORIES}
    assert all(1 <= variety["distinct"][c] <= 8 and 5 <= variety["reference"][c] <= 8 for c in OPEN_LAYOUT_CATEGORIES)
    assert result["settings"]["diversity"] == 8 and result["settings"]["diversity_prompts"] == 2
    assert "variety: distinct layouts of 8 images per prompt" in stdout and "exact" in stdout


def test_evaluate_diversity_flags_set_the_variety_images(tiny_models, tmp_path, capsys):
    out = tmp_path / "eval.json"
    base = ["evaluate", "--model", tiny_models["decoder"], "--prompts-per-category", "1", "--json", str(out)]
    assert main([*base, "--diversity", "3", "--diversity-prompts", "2"]) == 0
    assert "generated 43/43 images" in capsys.readouterr().err  # 7 categories x 1, then 6 open-layout categories x 2 prompts x 3
    variety = json.loads(out.read_text())["variety"]
    assert variety["images_per_prompt"] == 3 and variety["counts"] == {c: 2 for c in OPEN_LAYOUT_CATEGORIES}
    assert all(1 <= variety["distinct"][c] <= 3 for c in OPEN_LAYOUT_CATEGORIES)
    assert main([*base, "--diversity", "0", "--quiet"]) == 0
    assert json.loads(out.read_text())["variety"] is None and "variety:" not in capsys.readouterr().out


def test_evaluate_on_validation_prompts(tiny_models, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["evaluate", "--model", tiny_models["diffusion"], "--prompts-per-category", "1", "--steps", "1", "--prompt-set", "validation",
            "--json", str(out), "--quiet"]
    assert main(argv) == 0
    assert "Shapes validation prompts (not the benchmark's)" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["prompt_set"] == "validation" and result["counts"] == {c: 1 for c in BENCHMARK_CATEGORIES}


def test_evaluate_record_keeps_the_figures_and_command_in_the_model_card(tiny_models, tmp_path, capsys):
    import shutil

    from huggingface_hub import ModelCard

    folder = tmp_path / "model"
    shutil.copytree(tiny_models["diffusion"], folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# model\n\n## Evaluation\n\nIn-run figures.\n\n## Training\n\nKept.\n")
    base = ["evaluate", "--model", str(folder), "--prompts-per-category", "1", "--steps", "1", "--quiet", "--record"]
    assert main([*base, "--json", str(tmp_path / "eval.json")]) == 0
    assert main([*base, "--prompt-set", "validation"]) == 0
    results = json.loads((folder / "eval_results.json").read_text())
    assert set(results["evaluate"]) == {"shapes/benchmark", "shapes/validation"}
    benchmark = results["evaluate"]["shapes/benchmark"]
    assert benchmark["command"] == f"hf-textimg evaluate --model {folder} --prompts-per-category 1 --steps 1"  # no --json/--record/--quiet
    assert benchmark["metrics"]["shapes_overall"] == json.loads((tmp_path / "eval.json").read_text())["overall"]
    card = ModelCard.load(folder / "README.md")
    assert card.text.count("hf-textimg evaluate --model") == 2 and "In-run figures." in card.text and "Kept." in card.text
    reported = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert reported["overall"] == round(benchmark["metrics"]["shapes_overall"], 4)  # the model-index reports the recorded benchmark
    # exactness and variety are recorded too: in the metrics, the card's table and the model-index (variety as a ratio)
    assert {"shapes_exact", "shapes_variety", *(f"shapes_variety_{c}" for c in OPEN_LAYOUT_CATEGORIES)} <= set(benchmark["metrics"])
    assert "variety: distinct layouts of 8 images per prompt" in benchmark["table"] and "variety: distinct layouts" in card.text
    types = {r.metric_name: r.metric_type for r in card.data.eval_results}
    assert types["exact"] == "accuracy" and types["variety"] == types["variety count"] == "variety_ratio"
    assert main([*base]) == 0 and ModelCard.load(folder / "README.md").text.count("hf-textimg evaluate --model") == 2  # replaced, not added


def test_evaluate_record_needs_a_local_folder(tmp_path, capsys):
    assert main(["evaluate", "--model", "some-org/some-model", "--record", "--quiet"]) == 2
    assert "--record writes into the model's folder" in capsys.readouterr().err


# -- the shipped model and the demo ----------------------------------------------------------------


def test_shipped_models_are_safetensors_only_and_within_the_budget():
    names = pretrained.available_models()
    assert pretrained.DEFAULT_MODEL in names
    total = 0
    for name in names:
        folder = pretrained.pretrained_path(name)
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert {p.suffix for p in files} <= {".json", ".safetensors", ".md", ".png", ".py"}, name  # never a pickle
        one_shot = (folder / "decoder").is_dir()  # a DecoderPipeline: its decoder replaces unet + scheduler
        code = {"pipeline_hf_textimg.py", "text_encoder/modeling_concept.py"} | ({"decoder/modeling_decoder.py"} if one_shot else set())
        assert {p.relative_to(folder).as_posix() for p in files if p.suffix == ".py"} == code, name  # hf_textimg.remote_code
        parts = {"decoder"} if one_shot else {"unet", "scheduler"}
        assert {"model_index.json", "README.md", "eval_results.json", "text_encoder", "tokenizer"} | parts <= {p.name for p in folder.iterdir()}, name
        total += sum(p.stat().st_size for p in files)
    assert total < 50 * 2**20  # every shipped model together


def test_shipped_model_listens_to_position_words():
    """Regression test of issue 5's diagnosis: the model shipped before snr_gamma 0 and the frozen concept tower
    predicted the same clean image for "top left" and "bottom right" (x0 differed by 0.06 at t=800; colour: 1.7)."""
    from diffusers import DiffusionPipeline

    from hf_textimg.evaluation.probes import prompt_sensitivity

    pipe = DiffusionPipeline.from_pretrained(pretrained.pretrained_path())
    position = prompt_sensitivity(pipe, "a red circle at the top left", "a red circle at the bottom right")
    colour = prompt_sensitivity(pipe, "a red circle at the top left", "a blue circle at the top left")
    assert position.x0_difference[800] > 0.5 * colour.x0_difference[800]
    assert position.concept_distance > 0.5


def test_shipped_model_reads_the_relation_axis_and_order(capsys):
    """Regression test of the relation diagnosis, through the probe benchmark: the model shipped before canonical
    relation layouts (`--shapes_canonical_layouts relation`) drew "left of" and "above" alike (x0 differed by 0.11 at
    t=800, colour 1.74), and the one shipped before `--prompt_normalization shapes_relations` drew "a left of b" and
    "a right of b" alike (0.07; its token states did not say which object goes first: side probe 0.53)."""
    from benchmarks.word_probes import SWAPS, main as word_probes

    (result,) = word_probes([])
    swaps = result["swaps"]
    assert set(swaps) == {name for name, _, _ in SWAPS}
    for name in ("position", "relation axis", "relation order", "relation order (vertical)"):
        assert swaps[name]["x0_difference"] > 0.5 * swaps["colour"]["x0_difference"], name
    assert result["relation_side_probe"] > 0.9
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_relation_side_probe_finds_order_only_in_normalized_prompts():
    """Why `--prompt_normalization shapes_relations` exists: the text tower's token states do not say which object
    of "a left of b" / "a right of b" goes left (a linear read-out is at chance), but after the rewrite "the first
    object goes first" is plain word position, which they do carry."""
    from diffusers import DiffusionPipeline

    from hf_textimg.evaluation.probes import relation_side_probe

    shipped = DiffusionPipeline.from_pretrained(pretrained.pretrained_path())
    components = {name: getattr(shipped, name) for name in ("tokenizer", "text_encoder", "unet", "scheduler")}
    plain = relation_side_probe(ConceptDiffusionPipeline(**components), num_train=1000, num_test=500)
    normalized = relation_side_probe(ConceptDiffusionPipeline(**components, prompt_normalization="shapes_relations"), num_train=1000, num_test=500)
    assert plain < 0.7 and normalized > 0.9, (plain, normalized)


def test_demo_with_the_shipped_model_writes_its_grid(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--num-images", "1", "--steps", "2"]) == 0
    grid = Image.open(tmp_path / "shapes_demo.png")
    assert grid.width == grid_width(1) and grid.height > len(DEMO_PROMPTS) * 128
    stdout = capsys.readouterr().out
    assert f"Grid: {tmp_path / 'shapes_demo.png'}" in stdout
    assert all(prompt in stdout for _, prompt in DEMO_PROMPTS)  # each prompt's scorer verdict
    if pretrained.EMOJI_DEMO_MODEL in pretrained.available_models():  # the shipped emoji model's grid beside it
        emoji = Image.open(tmp_path / "emoji_demo.png")
        assert emoji.width == grid_width(1) and emoji.height > len(EMOJI_DEMO_PROMPTS) * 128
        assert f"Grid: {tmp_path / 'emoji_demo.png'}" in stdout


@pytest.mark.skipif(pretrained.EMOJI_DEMO_MODEL not in pretrained.available_models(), reason="no shipped emoji model")
def test_demo_draws_a_noise_free_emoji_model_once_per_prompt(tmp_path, capsys):
    """The shipped emoji model is a one-shot decoder without noise: four images of a prompt would be four copies, so the
    emoji grid holds one image per prompt, in rows of --num-images."""
    assert main(["demo", "--out", str(tmp_path), "--num-images", "4", "--steps", "1"]) == 0
    assert "Generated 8 emoji images" in capsys.readouterr().out
    emoji = Image.open(tmp_path / "emoji_demo.png")
    assert emoji.width == grid_width(4) and emoji.height < len(EMOJI_DEMO_PROMPTS) * 128 / 2  # two rows of four


def test_missing_shipped_model_says_how_to_train_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "train_diffusion.py" in err and "Traceback" not in err


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate"], "the following arguments are required: prompt"),
        (["generate", "   "], "a prompt must not be empty"),
        (["generate", "a red circle", "--num-images", "0"], "--num-images: must be at least 1"),
        (["generate", "a red circle", "--steps", "two"], "--steps: expected a whole number"),
        (["generate", "a red circle", "--guidance", "-1"], "--guidance: must be >= 0"),
        (["generate", "a red circle", "--model", "./no/such/folder"], "--model: './no/such/folder' does not exist"),
        (["generate", "a red circle", "--out", "grid.txt"], "--out: 'grid.txt' must be an image file name"),
        (["generate", "a red circle", "--device", "gpu"], "--device: expected auto, cpu, cuda"),
        (["evaluate", "--benchmark", "coco"], "invalid choice: 'coco'"),
        (["evaluate", "--prompts-per-category", "0"], "--prompts-per-category: must be at least 1"),
        (["evaluate", "--diversity", "1"], "--diversity: must be 0 (skip the variety measure) or at least 2"),
        (["evaluate", "--diversity", "-2"], "--diversity: must be 0 (skip the variety measure) or at least 2"),
        (["evaluate", "--diversity", "eight"], "--diversity: expected a whole number, got 'eight'"),
        (["evaluate", "--diversity-prompts", "0"], "--diversity-prompts: must be at least 1"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage: hf-textimg" in err


def test_a_folder_that_is_not_a_pipeline_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "a red circle", "--model", str(tmp_path)])
    assert "has no model_index.json" in capsys.readouterr().err


def test_a_hub_repo_that_cannot_be_fetched_is_one_clear_line(tmp_path, capsys):
    # tests/conftest.py sets HF_HUB_OFFLINE=1, so the look-up fails at once.
    assert main(["generate", "a red circle", "--model", "no-such-org/no-such-model", "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "could not load --model 'no-such-org/no-such-model'" in err and "Traceback" not in err


# -- data ----------------------------------------------------------------------------------------


def test_data_shapes_to_load_from_disk(tmp_path, capsys):
    assert main(["data", "shapes", "--size", "64", "--out", str(tmp_path / "s"), *SMALL]) == 0
    data = datasets.load_from_disk(str(tmp_path / "s"))
    assert {k: len(v) for k, v in data.items()} == {"train": 12, "validation": 4, "heldout": 4}
    assert data["train"][0]["image"].size == (64, 64)
    assert "load_from_disk" in capsys.readouterr().out


RELATION_LAYOUT_CELLS = {((0, 1), (2, 1)), ((2, 1), (0, 1)), ((1, 0), (1, 2)), ((1, 2), (1, 0))}  # (first, second) object


@pytest.mark.parametrize(
    "kinds, probs, allowed",
    [
        (["relation"], ["0", "0", "0", "1"], RELATION_LAYOUT_CELLS),
        (["count"], ["0", "1", "0", "0"], set(CANONICAL_COUNT_CELLS.values())),
        (["pair"], ["0", "0", "1", "0"], {CANONICAL_PAIR_CELLS}),
        (["count", "relation"], ["0", "1", "0", "1"], RELATION_LAYOUT_CELLS | set(CANONICAL_COUNT_CELLS.values())),
    ],
)
def test_data_shapes_mix_and_canonical_layouts(tmp_path, kinds, probs, allowed):
    argv = ["data", "shapes", "--out", str(tmp_path / "d"), "--kind-probs", *probs, "--canonical-layouts", *kinds, *SMALL]
    assert main(argv) == 0
    train = datasets.load_from_disk(str(tmp_path / "d"))["train"]
    assert set(train["kind"]) == set(kinds)
    assert {tuple(tuple(o["cell"]) for o in objects) for objects in train["objects"]} <= allowed


def test_data_shapes_canonical_single_layout(tmp_path):
    argv = ["data", "shapes", "--out", str(tmp_path / "single"), "--kind-probs", "1", "0", "0", "0", "--canonical-layouts", "single", *SMALL]
    assert main(argv) == 0
    train = datasets.load_from_disk(str(tmp_path / "single"))["train"]
    for text, (obj,) in zip(train["text"], train["objects"]):  # what the caption leaves open is large / centre
        query = parse_prompt(text)
        assert obj["size"] == (query.objects[0].size or "large"), text
        assert tuple(obj["cell"]) == (POSITIONS[query.position] if query.position else (1, 1)), text


def test_data_shapes_imagefolder_loads_with_datasets(tmp_path):
    assert main(["data", "shapes", "--out", str(tmp_path / "f"), "--imagefolder", *SMALL]) == 0
    heldout = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "f" / "heldout"))["train"]
    assert len(heldout) == 4 and heldout[0]["text"]


def test_bad_size_is_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "shapes", "--size", "48", "--out", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err


def test_missing_emoji_font_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TEXTIMG_NOTO_FONT", str(tmp_path / "missing.ttf"))
    assert main(["data", "emoji", "--out", str(tmp_path / "e"), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "fonts-noto-color-emoji" in err and "Traceback" not in err
