"""`hf-textimg generate/evaluate --upscale/--size` and `hf-textimg cascade` with tiny random pipelines."""

import json

import numpy as np
import pytest
from PIL import Image
from tiny_pipelines import PROMPTS, tiny_base, tiny_stage

from hf_textimg.cli import main


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny base (32 px) and two 2x stages on its text tower, saved."""
    base = tiny_base()
    paths = {name: tmp_path_factory.mktemp(name) for name in ("base", "stage64", "stage128")}
    base.save_pretrained(paths["base"])
    tiny_stage(base).save_pretrained(paths["stage64"])
    tiny_stage(base, resolution=128, seed=2).save_pretrained(paths["stage128"])
    return {k: str(v) for k, v in paths.items()}


def generate(folders, tmp_path, name, *extra):
    out = tmp_path / f"{name}.png"
    argv = ["generate", PROMPTS[0], "--model", folders["base"], "--num-images", "2", "--steps", "2", "--upscale-steps", "2",
            "--individual", "--quiet", "--out", str(out), *extra]
    return main(argv), out


def test_generate_with_upscale_stages_makes_larger_images(folders, tmp_path, capsys):
    code, out = generate(folders, tmp_path, "up", "--upscale", folders["stage64"], folders["stage128"])
    assert code == 0
    assert Image.open(tmp_path / "up-00-01.png").size == (128, 128)
    assert "super-resolution" in capsys.readouterr().out
    code, out = generate(folders, tmp_path, "up64", "--upscale", folders["stage64"], folders["stage128"], "--size", "64")
    assert code == 0 and Image.open(tmp_path / "up64-00-00.png").size == (64, 64)
    # the noise level reaches the stages
    generate(folders, tmp_path, "clean", "--upscale", folders["stage64"], "--noise-level", "0")
    generate(folders, tmp_path, "noisy", "--upscale", folders["stage64"], "--noise-level", "400")
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "clean-00-00.png")), np.asarray(Image.open(tmp_path / "noisy-00-00.png")))


def test_size_without_stages_or_unreachable_is_one_clear_error(folders, tmp_path, capsys):
    code, _ = generate(folders, tmp_path, "a", "--size", "128")
    assert code == 2
    assert "--size 128: ConceptDiffusionPipeline makes 32 px images; for larger ones add super-resolution stages with --upscale" in capsys.readouterr().err
    code, _ = generate(folders, tmp_path, "b", "--upscale", folders["stage64"], "--size", "96")
    assert code == 2 and "makes square images of 32x32, 64x64 px" in capsys.readouterr().err
    code, _ = generate(folders, tmp_path, "c", "--noise-level", "3")
    assert code == 0 and "has no super-resolution stage and takes no --upscale-steps or --noise-level; ignored" in capsys.readouterr().err


def test_cascade_command_saves_one_folder_that_generate_and_evaluate_use(folders, tmp_path, capsys):
    out = tmp_path / "cascade"
    assert main(["cascade", folders["base"], folders["stage64"], folders["stage128"], "--out", str(out)]) == 0
    assert "32 px -> 64 px -> 128 px" in capsys.readouterr().out
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_hf_textimg", "ConceptCascadePipeline"] and index["upscale_factors"] == [2, 2]
    assert "pipeline_tag: text-to-image" in (out / "README.md").read_text()
    grid = tmp_path / "grid.png"
    assert main(["generate", PROMPTS[1], "--model", str(out), "--num-images", "1", "--steps", "2", "--upscale-steps", "2",
                 "--size", "32", "--individual", "--quiet", "--out", str(grid)]) == 0
    assert Image.open(tmp_path / "grid-00-00.png").size == (32, 32)
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(out), "--prompts-per-category", "1", "--steps", "2", "--upscale-steps", "2", "--size", "64",
                 "--json", str(report), "--quiet"]) == 0
    settings = json.loads(report.read_text())["settings"]
    assert settings["height"] == 64 and settings["superres_num_inference_steps"] == 2


def test_cascade_command_refuses_a_stage_on_another_tower(folders, tmp_path, capsys):
    other = tmp_path / "other-stage"
    tiny_stage(tiny_base(seed=7)).save_pretrained(other)
    assert main(["cascade", folders["base"], str(other), "--out", str(tmp_path / "c")]) == 2
    assert "another text tower" in capsys.readouterr().err


def test_every_shipped_base_and_stage_make_a_128_px_cascade():
    """Each shipped pair loads as one cascade, whatever the base (diffusion or one-shot) and whether the stage shares the
    base's text tower or keeps its own (emoji-superres-128 was trained on another emoji model's tower)."""
    import torch

    from hf_textimg.cli import load_pipeline
    from hf_textimg.pretrained import SUPERRES_STAGES, available_models, pretrained_path

    pairs = [(b, s) for b, s in SUPERRES_STAGES.items() if b in available_models() and s in available_models()]
    if not pairs:
        pytest.skip("no shipped base with its stage")
    for base, stage in pairs:
        cascade = load_pipeline(str(pretrained_path(base)), "cpu", None, [str(pretrained_path(stage))])
        cascade.set_progress_bar_config(disable=True)
        assert cascade.output_sizes() == [32, 128], base
        image = cascade("red heart, noto style", num_inference_steps=1, superres_num_inference_steps=1, output_type="np",
                        generator=torch.Generator().manual_seed(0)).images
        assert image.shape == (1, 128, 128, 3), base


def test_size_adds_the_shipped_stage_of_a_shipped_base_only():
    """`--size 128` on a shipped base adds that base's shipped 4x stage (the default model's without --model); on a
    folder of one's own it adds nothing (the pipeline then refuses the size, as above)."""
    from argparse import Namespace

    from hf_textimg.cli import default_upscale, model_arg
    from hf_textimg.pretrained import SUPERRES_STAGES, available_models, pretrained_path

    def upscale(model, size=128, stages=None):
        return default_upscale(Namespace(model=model, size=size, upscale=stages))

    for base, stage in SUPERRES_STAGES.items():
        if base in available_models() and stage in available_models():
            assert upscale(model_arg(base)) == [str(pretrained_path(stage))]
            assert upscale(model_arg(base), size=32) is None
    assert upscale(None) == [str(pretrained_path(SUPERRES_STAGES["shapes-diffusion-32"]))]
    assert upscale("some/folder") is None
    assert upscale(model_arg("emoji-oneshot-32"), stages=["mine"]) == ["mine"]
