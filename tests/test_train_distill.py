"""Consistency + guidance distillation (`training/train_distill.py`): a few real steps on Shapes data from a tiny
teacher, the student pipeline it saves, and the pieces of the distillation step."""

import pytest
import torch
from diffusers import DiffusionPipeline, LCMScheduler

from hf_textimg.diffusion import guidance_scale_embedding, unet_input
from hf_textimg.pipelines.prompt_embeds import encode_concept
from tests.tiny_pipelines import PROMPTS, tiny_base
from training.train_distill import build_student, ddim_step, ddim_timesteps, guided_teacher, main, x0_and_eps

TINY = [
    "--dataset_name", "shapes", "--num_shapes_train", "256", "--num_shapes_eval", "16", "--train_batch_size", "16",
    "--max_length", "16", "--learning_rate", "1e-3", "--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "2",
    "--eval_prompts_per_category", "1", "--validation_images_per_prompt", "1", "--quiet",
]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    tiny_base().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def distilled(teacher_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    result = main(TINY + ["--teacher_model_name_or_path", str(teacher_dir), "--output_dir", str(out), "--max_train_steps", "40",
                          "--validation_steps", "40", "--checkpointing_steps", "20", "--loss_type", "l2"])
    return out, result


def _mean(history, sl):
    values = [loss for _, loss in history[sl]]
    return sum(values) / len(values)


def test_a_few_distillation_steps_lower_the_loss(distilled):
    _, result = distilled
    assert result["global_step"] == 40
    assert _mean(result["loss_history"], slice(-10, None)) < 0.8 * _mean(result["loss_history"], slice(0, 5))


def test_student_saves_as_a_one_to_four_step_pipeline_that_reloads_identically(distilled):
    out, _ = distilled
    pipe = DiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.guidance_embedded and pipe.default_num_inference_steps == 4
    assert pipe.unet.config.time_cond_proj_dim == 64
    tmp = out / "resaved"
    pipe.save_pretrained(tmp)
    again = DiffusionPipeline.from_pretrained(tmp)
    again.set_progress_bar_config(disable=True)
    for steps in (1, 2, 4):
        a = pipe(PROMPTS, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="np").images
        b = again(PROMPTS, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="np").images
        assert a.shape == (2, 32, 32, 3) and (a == b).all()
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(PROMPTS, num_inference_steps=0)


def test_the_guidance_input_changes_the_image_in_one_pass(distilled):
    out, _ = distilled
    pipe = DiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    calls = []
    pipe.unet.register_forward_hook(lambda module, args, kwargs_out: calls.append(args[0].shape[0]))
    images = {g: pipe(PROMPTS, guidance_scale=g, generator=torch.Generator().manual_seed(0), output_type="np").images for g in (1.0, 5.0)}
    assert set(calls) == {2}  # one row per image at every step: no unconditional rows, whatever the scale
    assert abs(images[1.0] - images[5.0]).max() > 1e-3


def test_the_student_starts_as_the_teachers_conditional_prediction_at_every_scale():
    teacher = tiny_base()
    student = build_student(teacher.unet, 16).eval()
    embeds, _ = teacher.encode_prompt(PROMPTS, do_classifier_free_guidance=False)
    sample, t = torch.randn(2, 3, 32, 32), torch.tensor([500, 500])
    expected = teacher.unet(unet_input(teacher.unet, sample), t, **embeds.unet_kwargs()).sample
    for g in (1.0, 4.0):
        cond = guidance_scale_embedding(torch.full((2,), g), 16)
        got = student(unet_input(student, sample), t, timestep_cond=cond, **embeds.unet_kwargs()).sample
        torch.testing.assert_close(got, expected)


def test_a_guidance_scale_of_one_is_the_conditional_prediction_alone():
    teacher = tiny_base()
    ids = teacher.tokenize_prompt(PROMPTS)
    cond = encode_concept(teacher.text_encoder, **ids)
    uncond = encode_concept(teacher.text_encoder, **teacher.tokenize_prompt(["", ""]))
    noisy, t = torch.randn(2, 3, 32, 32), torch.tensor([300, 700])
    acp = teacher.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    alpha, sigma = acp.sqrt(), (1 - acp).sqrt()
    x0, eps = guided_teacher(teacher.unet, noisy, t, cond, uncond, torch.ones(2), alpha, sigma, "v_prediction")
    v = teacher.unet(unet_input(teacher.unet, noisy), t, **cond.unet_kwargs()).sample
    expected_x0, expected_eps = x0_and_eps(v, noisy, alpha, sigma, "v_prediction")
    torch.testing.assert_close(x0, expected_x0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(eps, expected_eps, rtol=1e-4, atol=1e-5)
    x0_guided, _ = guided_teacher(teacher.unet, noisy, t, cond, uncond, torch.full((2,), 3.0), alpha, sigma, "v_prediction")
    assert not torch.allclose(x0_guided, x0)
    # the student ODE's grid is the LCMScheduler's: 4 steps sample at four of these timesteps
    grid = ddim_timesteps(1000, 50)
    lcm = LCMScheduler.from_config(teacher.scheduler.config, original_inference_steps=50)
    lcm.set_timesteps(4)
    assert grid[0] == 19 and grid[-1] == 999 and set(lcm.timesteps.tolist()) <= set(grid.tolist())


def test_x0_and_eps_invert_the_forward_process():
    x0, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    alpha, sigma = torch.tensor(0.6).view(1, 1, 1, 1), torch.tensor(0.8).view(1, 1, 1, 1)
    noisy = alpha * x0 + sigma * eps
    outputs = {"epsilon": eps, "sample": x0, "v_prediction": alpha * eps - sigma * x0}
    for prediction_type, output in outputs.items():
        got_x0, got_eps = x0_and_eps(output, noisy, alpha, sigma, prediction_type)
        torch.testing.assert_close(got_x0, x0)
        torch.testing.assert_close(got_eps, eps)


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        ([], "--teacher_model_name_or_path"),
        (["--guidance_scale_min", "0.5"], "--guidance_scale_min"),
        (["--eval_num_inference_steps", "60"], "--eval_num_inference_steps"),
    ],
)
def test_bad_settings_are_refused_before_training(flags, match, teacher_dir, tmp_path):
    teacher = [] if match == "--teacher_model_name_or_path" else ["--teacher_model_name_or_path", str(teacher_dir)]
    with pytest.raises(ValueError, match=match):
        main(TINY + teacher + flags + ["--output_dir", str(tmp_path)])


def test_a_distilled_model_is_refused_as_teacher(distilled, tmp_path):
    out, _ = distilled
    with pytest.raises(ValueError, match="already a distilled model"):
        main(TINY + ["--teacher_model_name_or_path", str(out), "--output_dir", str(tmp_path), "--max_train_steps", "1"])


def test_a_self_conditioned_teacher_is_refused(tmp_path):
    teacher = tmp_path / "teacher"
    tiny_base(self_conditioning=True).save_pretrained(teacher)
    with pytest.raises(ValueError, match="self-conditioned U-Net"):
        main(TINY + ["--teacher_model_name_or_path", str(teacher), "--output_dir", str(tmp_path / "out"), "--max_train_steps", "1"])


def test_the_ddim_step_matches_diffusers_ddim_with_and_without_clipping():
    # clipped: the noise implied by the clipped estimate (use_clipped_model_output), which is DPM-Solver++'s first-order step
    # with thresholding, the teacher's sampler
    from diffusers import DDIMScheduler

    torch.manual_seed(0)
    sample, v = torch.randn(1, 3, 8, 8) * 1.5, torch.randn(1, 3, 8, 8)
    for clip in (False, True):
        ddim = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=clip, set_alpha_to_one=True)
        ddim.set_timesteps(50)
        t, t_prev = 519, 499
        expected = ddim.step(v, t, sample, use_clipped_model_output=True).prev_sample
        (alpha, sigma), (alpha_prev, sigma_prev) = ((ddim.alphas_cumprod[s].sqrt(), (1 - ddim.alphas_cumprod[s]).sqrt()) for s in (t, t_prev))
        x0, eps = x0_and_eps(v, sample, alpha, sigma, "v_prediction")
        torch.testing.assert_close(ddim_step(sample, x0, eps, alpha, sigma, alpha_prev, sigma_prev, clip), expected, rtol=1e-4, atol=1e-5)
