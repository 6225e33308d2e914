"""Pipelines never report garbage as success and never take unbounded memory (issue 21; docs/reliability.md).

- non-finite inputs (guidance, latents, noise, prompt embeddings) and wrong argument types are ValueErrors naming
  the argument (the rows added to `PIPELINE_CASES` in test_bad_input.py, and the tables here);
- an image that comes out NaN/inf is a `NonFiniteError`, never a black image;
- a step count the scheduler cannot take is refused before any work, with the largest count it takes;
- sizes far from the trained one: a warning with the cost up to 64x the pixels, an error beyond;
- images are generated in chunks of at most `max_batch_size`, and the chunk size changes no image.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DEISMultistepScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from test_bad_input import PROMPTS, decoder_pipe, diffusion_pipe, tokenizer  # noqa: F401  (fixtures)

from hf_textimg.pipelines import chunking
from hf_textimg.pipelines.checks import set_checked_timesteps
from hf_textimg.utils.checks import NonFiniteError

V = dict(prediction_type="v_prediction")


def call(pipe, **kwargs):
    kwargs = {"prompt": PROMPTS, "output_type": "pt", "generator": torch.Generator().manual_seed(0), **kwargs}
    if hasattr(pipe, "unet"):
        kwargs.setdefault("num_inference_steps", 2)
    return pipe(**kwargs).images


# ---- a NaN anywhere in the model is an error, not a black image -----------------------------------------------------
@pytest.mark.parametrize("pipe_name, module", [("diffusion_pipe", "unet"), ("decoder_pipe", "decoder"), ("diffusion_pipe", "text_encoder")])
def test_non_finite_output_is_an_error_not_a_black_image(request, pipe_name, module):
    pipe = request.getfixturevalue(pipe_name)
    with torch.no_grad():
        next(getattr(pipe, module).parameters()).fill_(float("nan"))  # weights of a run that diverged
    with pytest.raises(NonFiniteError, match=r"2 of 2 images came out non-finite .*images \[0, 1\].*Nothing was returned"):
        call(pipe)


# ---- step counts ------------------------------------------------------------------------------------------------------
SCHEDULER_CASES = [
    # (scheduler, steps, None = accepted, else the error pattern)
    (DPMSolverMultistepScheduler, 999, None),
    (DPMSolverMultistepScheduler, 1000, r"DPMSolverMultistepScheduler repeats timestep 500 at this count \(with 1000 training timesteps\).* at most 999 steps here"),
    (DPMSolverMultistepScheduler, 2000, r"DPMSolverMultistepScheduler repeats timestep .* at most 999 steps here"),
    (UniPCMultistepScheduler, 1000, r"UniPCMultistepScheduler repeats timestep .* at most 999 steps"),
    (DEISMultistepScheduler, 1500, r"DEISMultistepScheduler repeats timestep"),
    (DDPMScheduler, 1000, None),
    (DDPMScheduler, 1001, r"`num_inference_steps`=1001: DDPMScheduler cannot take this count .* up to 1000 steps"),
    (DDIMScheduler, 2000, r"DDIMScheduler cannot take this count"),
    (EulerDiscreteScheduler, 2000, None),  # sigmas are interpolated: diffusers handles it
    (EulerAncestralDiscreteScheduler, 1000, None),
    (HeunDiscreteScheduler, 500, None),  # repeats timesteps on purpose (2nd order); not a multistep solver
]


@pytest.mark.parametrize("scheduler_cls, steps, message", SCHEDULER_CASES, ids=[f"{c[0].__name__}-{c[1]}" for c in SCHEDULER_CASES])
def test_step_counts_the_scheduler_cannot_take(scheduler_cls, steps, message):
    scheduler = scheduler_cls(**V)
    if message is None:
        set_checked_timesteps(scheduler, steps)
    else:
        with pytest.raises(ValueError, match=message):
            set_checked_timesteps(scheduler, steps)


def test_a_refused_step_count_fails_before_any_work(diffusion_pipe, monkeypatch):
    monkeypatch.setattr(diffusion_pipe.unet, "forward", lambda *a, **k: pytest.fail("the U-Net ran"))
    with pytest.raises(ValueError, match=r"`num_inference_steps`=1000: DPMSolverMultistepScheduler repeats"):
        call(diffusion_pipe, num_inference_steps=1000)


# ---- sizes ------------------------------------------------------------------------------------------------------------
def test_sizes_far_from_the_trained_one_warn_with_the_cost_then_fail(diffusion_pipe, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_textimg.pipelines.checks"):
        call(diffusion_pipe, height=64, width=32, num_inference_steps=1)  # within 2x: silent
        assert not caplog.records
        images = call(diffusion_pipe, height=96, width=96, num_inference_steps=1, prompt=PROMPTS[0])
    assert images.shape == (1, 3, 96, 96)
    (warning,) = caplog.records
    assert "96x96 with a model trained at 32x32: 9x the pixels, so about 9x the time and memory" in warning.getMessage()
    with pytest.raises(ValueError, match=r"`height` x `width` = 1024x1024 is 1024 times the pixels .* up to 64x .* 256x256"):
        call(diffusion_pipe, height=1024, width=1024)


# ---- bounded memory: chunks, and results that do not depend on them -------------------------------------------------
def unet_batch_sizes(pipe, monkeypatch) -> list[int]:
    seen, forward = [], pipe.unet.forward

    def recording(sample, *args, **kwargs):
        seen.append(len(sample))
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(pipe.unet, "forward", recording)
    return seen


def test_the_unet_never_sees_more_than_max_batch_size_images(diffusion_pipe, monkeypatch):
    seen = unet_batch_sizes(diffusion_pipe, monkeypatch)
    images = call(diffusion_pipe, prompt=PROMPTS * 3, num_images_per_prompt=2, max_batch_size=5, num_inference_steps=1)
    assert len(images) == 12 and seen == [10, 10, 4]  # 5 + 5 + 2 images, each row twice for guidance
    seen.clear()
    monkeypatch.setattr(chunking, "MAX_PIXELS_PER_BATCH", 4 * 32 * 32)  # the default follows the pixel budget
    call(diffusion_pipe, prompt=PROMPTS * 3, num_inference_steps=1)
    assert seen == [8, 4]


SCHEDULERS = {"dpm++": lambda: DPMSolverMultistepScheduler(**V, thresholding=True, sample_max_value=1.0),
              "ddpm": lambda: DDPMScheduler(**V), "euler_ancestral": lambda: EulerAncestralDiscreteScheduler(**V)}


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("generators", ["one", "per image"])
def test_chunk_size_changes_no_image(diffusion_pipe, scheduler, generators):
    diffusion_pipe.scheduler = SCHEDULERS[scheduler]()
    prompts = ["a red circle", "two blue squares", "a green plus"]

    def run(max_batch_size):
        generator = torch.Generator().manual_seed(7) if generators == "one" else [torch.Generator().manual_seed(s) for s in range(6)]
        return call(diffusion_pipe, prompt=prompts, num_images_per_prompt=2, generator=generator, max_batch_size=max_batch_size,
                    negative_prompt=["a blue circle", "", "a plus"], num_inference_steps=3)

    whole = run(None)
    for size in (1, 4):
        torch.testing.assert_close(run(size), whole, atol=2e-5, rtol=0)  # float rounding of other batch sizes only
    assert not torch.allclose(whole[0], whole[1])  # the images of one prompt differ: each has its own noise


def test_chunked_decoder_equals_one_pass(decoder_pipe):
    whole = call(decoder_pipe, prompt=PROMPTS * 2, num_images_per_prompt=3)
    torch.testing.assert_close(call(decoder_pipe, prompt=PROMPTS * 2, num_images_per_prompt=3, max_batch_size=5), whole, atol=1e-5, rtol=0)


def test_chunks_keep_prompt_embeds_and_latents_in_order(diffusion_pipe):
    cond, uncond = diffusion_pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=True)
    latents = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    kwargs = dict(prompt=None, prompt_embeds=cond, negative_prompt_embeds=uncond, latents=latents, num_images_per_prompt=2)
    torch.testing.assert_close(call(diffusion_pipe, max_batch_size=3, **kwargs), call(diffusion_pipe, **kwargs), atol=2e-5, rtol=0)


def test_numpy_integers_are_accepted(diffusion_pipe):
    images = call(diffusion_pipe, num_inference_steps=np.int64(1), num_images_per_prompt=np.int32(1), guidance_scale=np.float32(2))
    assert images.shape == (2, 3, 32, 32)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_one_generator_advances_by_the_starting_noise_only(diffusion_pipe, scheduler):
    # what keeps `hf-textimg evaluate` (one generator across batches) reproducing eval_results.json
    from diffusers.utils.torch_utils import randn_tensor

    diffusion_pipe.scheduler = SCHEDULERS[scheduler]()
    generator = torch.Generator().manual_seed(5)
    call(diffusion_pipe, generator=generator, num_images_per_prompt=3, max_batch_size=4)
    expected = torch.Generator().manual_seed(5)
    randn_tensor((6, 3, 32, 32), generator=expected)
    assert torch.equal(generator.get_state(), expected.get_state())


# ---- loading: a broken pipeline folder is named, file by file --------------------------------------------------------------
def edit_json(path, change):
    import json

    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


FOLDER_CASES = [
    ("truncated U-Net weights", lambda d: cut_in_half(d / "unet" / "diffusion_pytorch_model.safetensors"),
     r"unet/diffusion_pytorch_model.safetensors is truncated or corrupt"),
    ("no _class_name", lambda d: edit_json(d / "model_index.json", lambda j: j.pop("_class_name")),
     r"model_index.json has no '_class_name' \(the pipeline class to build\)"),
    ("unknown pipeline class", lambda d: edit_json(d / "model_index.json", lambda j: j.update(_class_name="FooPipeline")),
     r"model_index.json names the pipeline class 'FooPipeline', which neither diffusers nor hf_textimg provides"),
    ("model_index.json not JSON", lambda d: (d / "model_index.json").write_text("{"), r"model_index.json cannot be read as JSON"),
    ("component folder missing", lambda d: __import__("shutil").rmtree(d / "unet"),
     r"model_index.json lists the component 'unet' \(UNet2DConditionModel\), but .*unet is missing"),
    ("text-encoder width edited", lambda d: edit_json(d / "text_encoder" / "config.json", lambda j: j.update(hidden_size=64)),
     r"text_encoder/config.json does not match the weights saved beside it \(.* is \[\d+, 32\] in model.safetensors but \[\d+, 64\] by the config"),
]


@pytest.mark.parametrize("case, damage, message", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_broken_pipeline_folders_name_the_file(case, damage, message, diffusion_pipe, tmp_path):
    from hf_textimg.pipelines import ConceptDiffusionPipeline

    diffusion_pipe.save_pretrained(tmp_path)
    damage(tmp_path)
    with pytest.raises(ValueError, match=message):
        ConceptDiffusionPipeline.from_pretrained(tmp_path)


CALLBACK_CASES = [
    ("returns None", lambda pipe, i, t, tensors: None, r"`callback_on_step_end` must return a dict .* got NoneType at step 0"),
    ("wrong shape", lambda pipe, i, t, tensors: {"latents": tensors["latents"][:1]}, r"The latents `callback_on_step_end` returned at step 0 must have shape \(2, 3, 32, 32\)"),
    ("NaN latents", lambda pipe, i, t, tensors: {"latents": tensors["latents"] * float("nan")}, r"The latents `callback_on_step_end` returned at step 0 contains NaN"),
]


@pytest.mark.parametrize("case, callback, message", CALLBACK_CASES, ids=[c[0] for c in CALLBACK_CASES])
def test_a_callback_that_breaks_the_latents_is_named(case, callback, message, diffusion_pipe):
    with pytest.raises(ValueError, match=message):
        call(diffusion_pipe, callback_on_step_end=callback)
