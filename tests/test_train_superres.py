"""End-to-end: a few real steps of `training/train_superres.py` on Shapes pairs, on a tiny base model's text tower."""

import json

import pytest
import torch
from diffusers import DiffusionPipeline
from tiny_pipelines import PROMPTS, tiny_base

from hf_textimg.pipelines import ConceptCascadePipeline, ConceptSuperResolutionPipeline
from training.train_superres import main

TINY = [
    "--dataset_name", "shapes", "--num_shapes_train", "128", "--num_shapes_eval", "8", "--resolution", "32", "--upscale_factor", "2",
    "--crop_size", "16", "--train_batch_size", "16", "--max_length", "16", "--unet_block_out_channels", "16", "32",
    "--unet_norm_num_groups", "8", "--learning_rate", "3e-3", "--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "2",
    "--eval_num_images", "4", "--eval_num_inference_steps", "2", "--validation_images_per_prompt", "1",
]


def _mean(history, sl):
    values = [loss for _, loss in history[sl]]
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    tiny_base(prompt_normalization="shapes_relations").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def run(base_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("superres")
    result = main(TINY + ["--concept_model_path", str(base_folder), "--output_dir", str(out), "--use_ema", "--ema_decay", "0.9",
                          "--max_train_steps", "40", "--checkpointing_steps", "20", "--validation_steps", "40"])
    return out, result


def test_loss_goes_down_and_output_is_a_stage_on_the_base_tower(run, base_folder):
    out, result = run
    assert result["global_step"] == 40
    assert _mean(result["loss_history"], slice(-10, None)) < 0.7 * _mean(result["loss_history"], slice(0, 3))
    metrics = json.loads((out / "eval_results.json").read_text())["metrics"]
    assert {"psnr", "ssim", "psnr_bicubic", "ssim_bicubic"} <= set(metrics) and metrics["psnr_bicubic"] > 15
    assert (out / "validation" / "step-40.png").is_file() and (out / "README.md").is_file()
    assert (out / "checkpoint-20" / "ema_unet.safetensors").is_file()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pkl"))

    stage = DiffusionPipeline.from_pretrained(out)
    base = DiffusionPipeline.from_pretrained(base_folder)
    assert type(stage) is ConceptSuperResolutionPipeline and stage.config.upscale_factor == 2
    assert stage.config.prompt_normalization == "shapes_relations"  # adopted from the base pipeline folder
    assert all(torch.equal(a, b) for a, b in zip(stage.text_encoder.state_dict().values(), base.text_encoder.state_dict().values()))
    # fully convolutional: trained on 16 px crops, it upscales whole 16 -> 32 px and 24 -> 48 px images
    stage.set_progress_bar_config(disable=True)
    for side in (16, 24):
        images = stage(PROMPTS, image=torch.rand(2, 3, side, side), num_inference_steps=2, output_type="np").images
        assert images.shape == (2, 2 * side, 2 * side, 3)
    cascade = ConceptCascadePipeline.from_stages(base, stage)  # the stage shares the base's tower, so they cascade
    cascade.set_progress_bar_config(disable=True)
    assert cascade(PROMPTS, num_inference_steps=2, superres_num_inference_steps=2, output_type="np").images.shape == (2, 64, 64, 3)


def test_card_describes_the_stage(run):
    out, _ = run
    card = (out / "README.md").read_text()
    assert "pipeline_tag: image-to-image" in card and "super-resolution" in card
    assert "2x larger image" in card and "random 16 px crops of the 32 px images" in card
    assert "python training/train_superres.py" in card and "psnr_bicubic" in card


@pytest.mark.parametrize("extra, message", [
    ([], r"pass --concept_model_path"),
    (["--concept_model_path", "{base}", "--train_text_encoder"], r"no --train_text_encoder"),
    (["--concept_model_path", "{base}", "--crop_size", "15"], r"--crop_size 15 must be a multiple of --upscale_factor 2"),
    (["--concept_model_path", "{base}", "--crop_size", "18", "--unet_block_out_channels", "8", "16", "16"],
     r"`--crop_size` must be a positive multiple of 4 .*: 4, 8, 12, 16, \.\.\.; the nearest are 16 and 20\), got 18"),
    (["--concept_model_path", "{base}", "--unet_coordinate_channels"], r"--unet_coordinate_channels is not available"),
    (["--concept_model_path", "{base}", "--max_noise_level", "1000"], r"--max_noise_level must be in \[0, --num_train_timesteps 1000\)"),
    (["--concept_model_path", "{base}", "--upscale_factor", "3"], r"--upscale_factor must be >= 2 and divide --resolution 32, got 3"),
    (["--concept_model_path", "{base}", "--resolution", "48"], r"--resolution 48 is not a size the Shapes world is drawn at; use one of \(32, 64, 128\)"),
    (["--concept_model_path", "{base}", "--dataset_name", "emoji", "--resolution", "34", "--crop_size", "0", "--unet_block_out_channels", "8", "16", "16"],
     r"`--resolution` must be a positive multiple of 4 \(a U-Net of 3 levels: 4, 8, 12, 16, \.\.\.; the nearest are 32 and 36\), got 34"),
])
def test_bad_arguments_name_the_flag(base_folder, tmp_path, extra, message):
    argv = [a.format(base=base_folder) for a in TINY + extra] + ["--output_dir", str(tmp_path), "--max_train_steps", "1"]
    with pytest.raises(ValueError, match=message):
        main(argv)
