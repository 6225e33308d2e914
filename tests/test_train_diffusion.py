"""End-to-end: a few real steps of `training/train_diffusion.py` on generated Shapes data."""

import json

import pytest
import torch
from diffusers import DDPMScheduler, DiffusionPipeline
from safetensors.torch import load_file

from hf_textimg.concept import ConceptTextConfig, ConceptTextModel
from hf_textimg.shapes import build_shapes_dataset
from hf_textimg.tokenization import train_tokenizer
from training.train_diffusion import main

TINY = [
    "--dataset_name", "shapes", "--num_shapes_train", "256", "--num_shapes_eval", "16", "--train_batch_size", "16",
    "--max_length", "16", "--unet_block_out_channels", "16", "32", "--unet_attention_head_dim", "8", "--unet_norm_num_groups", "8",
    "--learning_rate", "2e-3", "--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "2",
    "--eval_prompts_per_category", "1", "--eval_num_inference_steps", "2", "--validation_images_per_prompt", "1",
]
NEW_TEXT_TOWER = ["--train_text_encoder", "--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2", "--projection_dim", "32"]




def _mean(history, sl):
    values = [loss for _, loss in history[sl]]
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffusion")
    result = main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(out), "--use_ema", "--ema_decay", "0.9", "--prompt_normalization", "shapes_relations",
                                           "--max_train_steps", "30", "--checkpointing_steps", "15", "--validation_steps", "30",
                                           "--eval_prompt_set", "validation", "--eval_diversity", "2"])
    return out, result


def test_loss_goes_down_and_output_is_a_pipeline(ema_run):
    out, result = ema_run
    assert result["global_step"] == 30
    assert _mean(result["loss_history"], slice(-8, None)) < 0.7 * _mean(result["loss_history"], slice(0, 3))
    assert (out / "validation" / "step-30.png").is_file()
    saved = json.loads((out / "eval_results.json").read_text())
    assert 0.0 <= saved["metrics"]["shapes_overall"] <= 1.0 and "shapes_heldout" in saved["metrics"]
    # --eval_diversity: layout variety of the open-layout validation prompts, per category and its mean
    assert saved["metrics"]["shapes_variety"] > 0 and "shapes_variety_count" in saved["metrics"]
    assert saved["config"]["eval_prompt_set"] == "validation"
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pkl"))

    pipe = DiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(["a red circle", "two blue squares"], num_inference_steps=2, output_type="np").images
    assert images.shape == (2, 32, 32, 3)
    assert pipe.config.prompt_normalization == "shapes_relations"  # --prompt_normalization ships with the pipeline


def test_ema_weights_differ_from_raw_and_are_what_ships(ema_run):
    out, _ = ema_run
    checkpoint = out / "checkpoint-30"
    raw, ema, shipped = (load_file(checkpoint / "unet.safetensors"), load_file(checkpoint / "ema_unet.safetensors"),
                         load_file(out / "unet" / "diffusion_pytorch_model.safetensors"))
    assert int(ema.pop("ema.optimization_step")) == 30
    assert set(raw) == set(ema) == set(shipped)
    assert any(not torch.allclose(raw[k], ema[k]) for k in raw)
    assert all(torch.equal(ema[k], shipped[k]) for k in ema)
    # the text tower was trained too, so it ships as its EMA as well
    text_ema = load_file(checkpoint / "ema_text_encoder.safetensors")
    text_shipped = load_file(out / "text_encoder" / "model.safetensors")
    assert all(torch.equal(text_ema[k], text_shipped[k]) for k in text_shipped)


def test_resume_continues_the_step_count_and_the_ema(ema_run, tmp_path):
    out, first = ema_run
    resumed = main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(tmp_path), "--use_ema", "--ema_decay", "0.9", "--prompt_normalization", "shapes_relations",
                                            "--max_train_steps", "30", "--validation_steps", "30",
                                            "--resume_from_checkpoint", str(out / "checkpoint-15")])
    assert resumed["global_step"] == 30 and resumed["loss_history"][0][0] == 16
    a = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.fixture
def fresh_accelerator_state():
    # accelerate keeps one process-wide state, whose mixed precision cannot change once set.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_frozen_concept_tower_under_bf16(tmp_path, fresh_accelerator_state):
    concept = tmp_path / "concept"
    captions = build_shapes_dataset(num_train=64, num_validation=1, num_heldout=1)["train"]["text"]
    tokenizer = train_tokenizer(captions, vocab_size=200, model_max_length=16)
    text = ConceptTextModel(ConceptTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=1, num_heads=2,
                                              intermediate_size=64, max_position_embeddings=16, projection_dim=32))
    text.save_pretrained(concept)
    tokenizer.save_pretrained(concept)
    out = tmp_path / "run"
    result = main(TINY + ["--output_dir", str(out), "--concept_model_path", str(concept), "--mixed_precision", "bf16",
                          "--max_train_steps", "4", "--checkpointing_steps", "4", "--validation_steps", "4",
                          "--eval_prompts_per_category", "0"])
    assert result["global_step"] == 4
    before, after = load_file(concept / "model.safetensors"), load_file(out / "text_encoder" / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    # trainable weights (and so their gradients and Adam states) stay fp32 under mixed precision
    assert all(v.dtype == torch.float32 for v in load_file(out / "checkpoint-4" / "unet.safetensors").values())
    assert not (out / "checkpoint-4" / "ema_unet.safetensors").exists()


def test_text_encoder_lr_is_the_text_towers_own_rate(tmp_path, fresh_accelerator_state):
    concept = tmp_path / "concept"
    captions = build_shapes_dataset(num_train=64, num_validation=1, num_heldout=1)["train"]["text"]
    tokenizer = train_tokenizer(captions, vocab_size=200, model_max_length=16)
    ConceptTextModel(ConceptTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                       max_position_embeddings=16, projection_dim=32)).save_pretrained(concept)
    tokenizer.save_pretrained(concept)
    before = load_file(concept / "model.safetensors")

    def text_change(*extra):
        out = tmp_path / f"run{len(extra)}"
        main(TINY + ["--output_dir", str(out), "--concept_model_path", str(concept), "--train_text_encoder", "--max_train_steps", "3",
                     "--lr_warmup_steps", "0", "--checkpointing_steps", "3", "--validation_steps", "3", "--eval_prompts_per_category", "0",
                     *extra])
        after = load_file(out / "text_encoder" / "model.safetensors")
        return max((after[k] - before[k]).abs().max().item() for k in before)

    assert text_change() > 1e-3  # the U-Net's rate (2e-3) moves the tower
    assert text_change("--text_encoder_lr", "1e-9") < 1e-7  # its own rate, three steps of Adam


def test_bad_arguments_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--train_text_encoder"):
        main(TINY + ["--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--cond_dropout"):
        main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(tmp_path), "--cond_dropout", "1.5"])
    with pytest.raises(ValueError, match="--prompt_normalization"):
        main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(tmp_path), "--prompt_normalization", "swap"])
    with pytest.raises(ValueError, match="--snr_gamma"):
        main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(tmp_path), "--snr_gamma", "-1"])
    with pytest.raises(ValueError, match="--text_encoder_lr .* needs --train_text_encoder"):
        main(TINY + ["--output_dir", str(tmp_path), "--concept_model_path", "x", "--text_encoder_lr", "1e-4"])
    with pytest.raises(ValueError, match=r"--self_conditioning_prob must be in \(0, 1\)"):
        main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(tmp_path), "--self_conditioning", "--self_conditioning_prob", "1"])
    with pytest.raises(ValueError, match=r"--eval_diversity must be 0 \(off\) or >= 2"):
        main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(tmp_path), "--eval_diversity", "1"])
    with pytest.raises(ValueError, match=r"--eval_prompts_per_category must be >= 0"):
        main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(tmp_path), "--eval_prompts_per_category", "-1"])


def test_the_unet_takes_any_multiple_of_its_downsampling_factor(tmp_path):
    """Not only the Shapes world's 32 and 64 px: any side the U-Net's levels can halve (issue 18)."""
    from hf_textimg.diffusion import unet_config
    from hf_textimg.shapes import ShapesDataArguments
    from hf_textimg.training import parse_args
    from training.train_diffusion import DiffusionTrainConfig

    assert unet_config(resolution=48, block_out_channels=(16, 32, 32), norm_num_groups=8, attention_head_dim=8)["sample_size"] == 48
    assert unet_config(resolution=128, block_out_channels=(16, 32, 32, 32, 32), norm_num_groups=8, attention_head_dim=8)["sample_size"] == 128
    with pytest.raises(ValueError, match=r"resolution must be a positive multiple of 4 for 3 levels, got 50"):
        unet_config(resolution=50, block_out_channels=(16, 32, 32), norm_num_groups=8, attention_head_dim=8)
    with pytest.raises(ValueError, match=r"No default block_out_channels for resolution 128"):
        unet_config(resolution=128)
    argv = ["--dataset_name", "emoji", "--train_text_encoder", "--output_dir", str(tmp_path)]
    cfg = parse_args(DiffusionTrainConfig, [*argv, "--resolution", "128", "--unet_block_out_channels", "16", "32", "32", "32"], ShapesDataArguments)
    assert cfg.resolution == 128
    with pytest.raises(ValueError, match=r"--resolution 128 has no default U-Net widths .* pass --unet_block_out_channels"):
        parse_args(DiffusionTrainConfig, [*argv, "--resolution", "128"], ShapesDataArguments)
    with pytest.raises(ValueError, match=r"--resolution must be a positive multiple of 8 for a U-Net of 4 levels, got 60"):
        parse_args(DiffusionTrainConfig, [*argv, "--resolution", "60", "--unet_block_out_channels", "16", "32", "32", "32"], ShapesDataArguments)


@pytest.mark.parametrize("snr_gamma", [0.0, 5.0])
def test_loss_is_the_same_x0_error_for_every_prediction_type(snr_gamma):
    # One denoised estimate x0_hat, written as each target: Min-SNR weighting must give all three the same loss.
    from training.train_diffusion import diffusion_loss

    losses = {}
    for prediction_type in ("epsilon", "v_prediction", "sample"):
        scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)
        generator = torch.Generator().manual_seed(0)
        x0, noise = torch.rand(6, 3, 8, 8, generator=generator) * 2 - 1, torch.randn(6, 3, 8, 8, generator=generator)
        t = torch.tensor([0, 10, 100, 400, 800, 999])
        x0_hat = x0 + 0.1 * torch.randn(6, 3, 8, 8, generator=generator)
        alpha = scheduler.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)
        sigma = (1 - scheduler.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
        x_t = scheduler.add_noise(x0, noise, t)
        eps_hat = (x_t - alpha * x0_hat) / sigma
        output, target = {
            "epsilon": (eps_hat, noise),
            "v_prediction": (alpha * eps_hat - sigma * x0_hat, scheduler.get_velocity(x0, noise, t)),
            "sample": (x0_hat, x0),
        }[prediction_type]
        losses[prediction_type] = diffusion_loss(output, target, t, scheduler, snr_gamma).item()
    if snr_gamma:
        assert losses["epsilon"] == pytest.approx(losses["v_prediction"], rel=1e-3)
        assert losses["epsilon"] == pytest.approx(losses["sample"], rel=1e-3)
    else:  # unweighted, the three targets weight timesteps differently
        assert losses["epsilon"] > 10 * losses["sample"] and losses["v_prediction"] > 10 * losses["sample"]


def test_speed_options_train_the_same_model(tmp_path, fresh_accelerator_state):
    """--channels_last and --adam_fused change how the step runs (memory layout, optimizer kernel), not what it computes."""
    from hf_textimg.training import TrainConfig, set_memory_format

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(4, 4))
    set_memory_format(TrainConfig(channels_last=True), conv)
    assert conv[0].weight.is_contiguous(memory_format=torch.channels_last) and not conv[0].weight.is_contiguous()

    runs = {}
    for name, extra in {"plain": [], "fast": ["--channels_last", "--adam_fused"]}.items():
        out = tmp_path / name
        result = main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(out), "--max_train_steps", "4", "--validation_steps", "4",
                                               "--eval_prompts_per_category", "0", *extra])
        runs[name] = load_file(out / "unet" / "diffusion_pytorch_model.safetensors"), result["loss_history"]
    (plain, plain_losses), (fast, fast_losses) = runs["plain"], runs["fast"]
    assert [loss for _, loss in fast_losses] == pytest.approx([loss for _, loss in plain_losses], rel=1e-3)
    assert all(torch.allclose(plain[k], fast[k], atol=1e-4) for k in plain)


def test_self_conditioning_trains_and_ships_a_self_conditioned_pipeline(tmp_path):
    result = main(TINY + NEW_TEXT_TOWER + ["--output_dir", str(tmp_path), "--self_conditioning", "--max_train_steps", "24",
                                           "--checkpointing_steps", "100", "--validation_steps", "100", "--eval_prompts_per_category", "0"])
    assert _mean(result["loss_history"], slice(-8, None)) < 0.7 * _mean(result["loss_history"], slice(0, 3))
    pipe = DiffusionPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.self_conditioned and pipe.unet.config.in_channels == 3 + 2 + 3  # image, coordinates, previous estimate
    kwargs = dict(num_inference_steps=3, output_type="np")
    first = pipe(["a red circle"], generator=torch.Generator().manual_seed(0), **kwargs).images
    again = DiffusionPipeline.from_pretrained(tmp_path)
    again.set_progress_bar_config(disable=True)
    assert (first == again(["a red circle"], generator=torch.Generator().manual_seed(0), **kwargs).images).all()


def test_first_pass_estimate_fills_the_chosen_share_of_the_batch():
    from hf_textimg.diffusion import build_unet, encode_concept
    from training.train_diffusion import first_pass_estimate

    unet = build_unet(cross_attention_dim=32, concept_dim=32, block_out_channels=(16, 32), attention_head_dim=8, norm_num_groups=8,
                      self_conditioning=True)
    text = ConceptTextModel(ConceptTextConfig(vocab_size=50, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                              max_position_embeddings=8, projection_dim=32))
    cond = encode_concept(text, torch.randint(0, 50, (64, 8)), torch.ones(64, 8, dtype=torch.long))
    noisy, timesteps = torch.randn(64, 3, 32, 32), torch.randint(0, 1000, (64,))
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    torch.manual_seed(0)
    estimate = first_pass_estimate(unet, unet, noisy, timesteps, cond, scheduler, 0.5)
    filled = estimate.flatten(1).abs().amax(dim=1) > 0
    assert 16 <= int(filled.sum()) <= 48 and estimate.abs().amax() <= 1
    assert int((first_pass_estimate(unet, unet, noisy, timesteps, cond, scheduler, 1e-9).flatten(1).abs().amax(dim=1) > 0).sum()) == 0
