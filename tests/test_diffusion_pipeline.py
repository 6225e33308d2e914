"""ConceptDiffusionPipeline on a tiny random model: round trips, schedulers, callbacks, generators, input checks."""

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from tiny_pipelines import tiny_base

from hf_textimg.diffusion import ConceptPromptEmbeds
from hf_textimg.pipelines.pipeline_diffusion import ConceptDiffusionPipeline

PROMPTS = ["a red circle at the top left", "two blue squares"]




@pytest.fixture(scope="module")
def pipe():
    return tiny_base(scheduler=DPMSolverMultistepScheduler(prediction_type="v_prediction", thresholding=True, sample_max_value=1.0))


def generate(pipe, prompt=PROMPTS, seed=0, **kwargs):
    kwargs = {"num_inference_steps": 4, "output_type": "pt", **kwargs}
    if "generator" not in kwargs:
        kwargs["generator"] = torch.Generator().manual_seed(seed)
    return pipe(prompt, **kwargs).images


def test_save_load_gives_the_same_images(pipe, tmp_path):
    before = generate(pipe)
    pipe.save_pretrained(tmp_path)
    assert not list(tmp_path.rglob("*.bin"))
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded) is ConceptDiffusionPipeline
    loaded.set_progress_bar_config(disable=True)
    after = generate(loaded)
    assert before.shape == (2, 3, 32, 32)
    assert torch.equal(before, after)
    assert not torch.equal(before, generate(loaded, seed=1))


def test_prompt_normalization_is_saved_and_applied(pipe, tmp_path):
    swapped, canonical = "a pink triangle right of a green plus", "a green plus left of a pink triangle"
    assert not torch.equal(generate(pipe, [swapped]), generate(pipe, [canonical]))
    normalized = ConceptDiffusionPipeline(pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.scheduler, prompt_normalization="shapes_relations")
    normalized.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.prompt_normalization == "shapes_relations"
    assert torch.equal(generate(loaded, [swapped]), generate(loaded, [canonical]))
    # the negative prompt goes through the same rewrite
    assert torch.equal(generate(loaded, PROMPTS[:1], negative_prompt=swapped), generate(loaded, PROMPTS[:1], negative_prompt=canonical))
    with pytest.raises(ValueError, match="`prompt_normalization` must be None or one of"):
        ConceptDiffusionPipeline(pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.scheduler, prompt_normalization="lowercase")


@pytest.mark.parametrize("scheduler_cls", [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler])
def test_every_scheduler_runs_from_config(pipe, scheduler_cls):
    original = pipe.scheduler
    try:
        pipe.scheduler = scheduler_cls.from_config(original.config)
        assert pipe.scheduler.config.prediction_type == "v_prediction"  # the training target survives the swap
        images = generate(pipe, num_inference_steps=3, output_type="np")
        assert images.shape == (2, 32, 32, 3) and images.min() >= 0 and images.max() <= 1
    finally:
        pipe.scheduler = original


def test_callback_sees_and_replaces_latents(pipe):
    seen = []

    def callback(p, step, timestep, tensors):
        seen.append((step, tuple(tensors["latents"].shape), type(tensors["prompt_embeds"]).__name__))
        if step == p.num_timesteps - 1:
            return {"latents": torch.zeros_like(tensors["latents"])}  # an all-zero image is mid grey
        return {}

    images = generate(pipe, num_images_per_prompt=2, callback_on_step_end=callback,
                      callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert all(s[1:] == ((4, 3, 32, 32), "ConceptPromptEmbeds") for s in seen)
    assert torch.allclose(images, torch.full_like(images, 0.5))


def test_generator_list_gives_per_image_results(pipe):
    ddpm = DDPMScheduler.from_config(pipe.scheduler.config)  # stochastic steps also draw from the generators
    original, pipe.scheduler = pipe.scheduler, ddpm
    try:
        def run(seeds, prompt=PROMPTS, n=2):
            return generate(pipe, prompt, num_images_per_prompt=n, generator=[torch.Generator().manual_seed(s) for s in seeds])

        first = run([10, 11, 12, 13])
        assert torch.equal(first, run([10, 11, 12, 13]))
        changed = run([10, 11, 99, 13])
        same = [0, 1, 3]
        assert torch.equal(first[same], changed[same]) and not torch.allclose(first[2], changed[2])
        alone = run([13], prompt=PROMPTS[1], n=1)  # image 3 = prompt 1's second image, generator 13
        assert torch.allclose(first[3], alone[0], atol=1e-4)
    finally:
        pipe.scheduler = original


def test_prompt_embeds_and_negative_prompt(pipe):
    cond, uncond = pipe.encode_prompt(PROMPTS, num_images_per_prompt=1, do_classifier_free_guidance=True)
    assert isinstance(cond, ConceptPromptEmbeds) and cond.token_states.shape == (2, 16, 32) and cond.concept.shape == (2, 32)
    assert torch.allclose(cond.concept.norm(dim=-1), torch.ones(2), atol=1e-5)
    from_text = generate(pipe)
    from_embeds = generate(pipe, prompt=None, prompt_embeds=cond, negative_prompt_embeds=uncond)
    assert torch.equal(from_text, from_embeds)
    assert not torch.allclose(from_text, generate(pipe, negative_prompt="a green plus"))
    assert torch.equal(generate(pipe, guidance_scale=1.0), generate(pipe, guidance_scale=0.5 + 0.5))  # no CFG path


def test_encode_prompt_needs_only_the_text_components_and_its_output_goes_back_into_call(pipe):
    text_only = ConceptDiffusionPipeline(pipe.tokenizer, pipe.text_encoder, unet=None, scheduler=None)
    prompt_embeds, negative_prompt_embeds = text_only.encode_prompt(PROMPTS, negative_prompt="a green plus")
    without_text = ConceptDiffusionPipeline(tokenizer=None, text_encoder=None, unet=pipe.unet, scheduler=pipe.scheduler)
    without_text.set_progress_bar_config(disable=True)
    from_embeds = generate(without_text, prompt=None, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds)
    assert torch.equal(from_embeds, generate(pipe, negative_prompt="a green plus"))
    with pytest.raises(ValueError, match="no tokenizer / text_encoder"):
        generate(without_text)


def test_latent_output_is_the_final_sample_before_postprocessing(pipe):
    latent = generate(pipe, output_type="latent")  # (B, 3, H, W) in [-1, 1], unclamped
    assert latent.shape == (2, 3, 32, 32) and latent.dtype == pipe.unet.dtype
    assert torch.equal(pipe.postprocess(latent, "pt"), generate(pipe, output_type="pt"))
    final = {}
    generate(pipe, callback_on_step_end=lambda p, i, t, tensors: final.update(tensors) or tensors)
    assert torch.equal(latent, final["latents"])


def test_cross_attention_kwargs_reach_the_unet(pipe):
    seen = []
    original = pipe.unet.forward
    pipe.unet.forward = lambda *args, **kwargs: seen.append(kwargs["cross_attention_kwargs"]) or original(*args, **kwargs)
    try:
        generate(pipe, num_inference_steps=1, cross_attention_kwargs={"scale": 1.0})
    finally:
        del pipe.unet.forward
    assert seen == [{"scale": 1.0}]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"generator": [torch.Generator()] * 3}, "generators"),
        ({"output_type": "latents"}, "output_type"),
        ({"height": 33}, "height"),
        ({"width": 0}, "width"),
        ({"num_images_per_prompt": 0}, "num_images_per_prompt"),
        ({"negative_prompt": ["a", "b", "c"]}, "negative_prompt"),
        ({"latents": torch.zeros(2, 3, 16, 16)}, "latents"),
        ({"callback_on_step_end_tensor_inputs": ["noise_pred"]}, "callback_on_step_end_tensor_inputs"),
    ],
)
def test_bad_inputs_raise_value_error_naming_them(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(pipe, **kwargs)


def test_height_and_width_any_multiple_of_the_downsampling_factor(pipe):
    assert generate(pipe, "a red circle", height=48, width=16, num_inference_steps=2).shape == (1, 3, 48, 16)


def test_prompt_embeds_importable_from_its_old_homes():
    import hf_textimg
    from hf_textimg.pipelines.prompt_embeds import ConceptPromptEmbeds as home, encode_concept

    from hf_textimg import diffusion

    assert ConceptPromptEmbeds is home is hf_textimg.ConceptPromptEmbeds and diffusion.encode_concept is encode_concept


def test_prompt_or_embeds_exactly_once(pipe):
    cond, _ = pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False)
    with pytest.raises(ValueError, match="prompt_embeds"):
        generate(pipe, prompt_embeds=cond)
    with pytest.raises(ValueError, match="prompt_embeds"):
        generate(pipe, prompt=None)


def test_prompt_sensitivity_probe(pipe):
    from hf_textimg.evaluation.probes import predicted_x0, prompt_sensitivity

    same = prompt_sensitivity(pipe, PROMPTS[0], PROMPTS[0], num_images=2)
    other = prompt_sensitivity(pipe, PROMPTS[0], PROMPTS[1], num_images=2)
    assert same.concept_distance == 0 and set(same.x0_difference.values()) == {0.0}
    assert other.concept_distance > 0 and all(v > 0 for v in other.x0_difference.values())
    assert list(other.x0_difference) == [950, 800, 500]
    # x0 from a v-prediction: with v = sqrt(ab) * eps - sqrt(1 - ab) * x0 and x_t = sqrt(ab) * x0 + sqrt(1 - ab) * eps
    x0, eps, ab = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor(0.3)
    noisy, v = ab.sqrt() * x0 + (1 - ab).sqrt() * eps, ab.sqrt() * eps - (1 - ab).sqrt() * x0
    assert torch.allclose(predicted_x0(pipe.scheduler.config, v, noisy, ab), x0, atol=1e-5)
    with pytest.raises(ValueError, match="timesteps"):
        prompt_sensitivity(pipe, PROMPTS[0], PROMPTS[1], timesteps=(1000,))


def test_self_conditioned_unet_reads_its_previous_clean_estimate(tmp_path):
    """Self-conditioning: zeros at the first step, then the previous step's guided clean-image estimate (in [-1, 1],
    the same for both guidance rows); the option lives in the U-Net's channel count, so it survives a round trip."""
    pipe = tiny_base(seed=4, scheduler=DPMSolverMultistepScheduler(prediction_type="v_prediction", thresholding=True, sample_max_value=1.0),
                     self_conditioning=True)
    assert pipe.self_conditioned and pipe.unet.config.in_channels == 6
    seen = []
    hook = pipe.unet.conv_in.register_forward_pre_hook(lambda module, args: seen.append(args[0][:, 3:].clone()))
    before = generate(pipe, num_inference_steps=3, guidance_scale=3.0)
    hook.remove()
    assert len(seen) == 3 and seen[0].shape == (4, 3, 32, 32)  # two prompts x [unconditional, conditional]
    assert torch.count_nonzero(seen[0]) == 0
    for estimate in seen[1:]:
        assert 0 < estimate.abs().amax() <= 1
        assert torch.equal(estimate[:2], estimate[2:])
    assert not torch.equal(seen[1], seen[2])

    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.self_conditioned
    assert torch.equal(before, generate(loaded, num_inference_steps=3, guidance_scale=3.0))


def test_clean_estimate_inverts_the_noising_for_each_prediction_type():
    from hf_textimg.diffusion import clean_estimate

    clean = torch.rand(3, 3, 8, 8) * 2 - 1
    noise = torch.randn_like(clean)
    timesteps = torch.tensor([5, 400, 900])
    for prediction_type in ("v_prediction", "epsilon", "sample"):
        scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        output = {"epsilon": noise, "sample": clean, "v_prediction": scheduler.get_velocity(clean, noise, timesteps)}[prediction_type]
        assert torch.allclose(clean_estimate(scheduler, noisy, output, timesteps), clean, atol=1e-4), prediction_type


def test_unet_input_channel_layouts_and_refusals():
    from hf_textimg.diffusion import build_unet, unet_input

    sample = torch.randn(2, 3, 16, 16)
    tiny = dict(cross_attention_dim=32, concept_dim=32, block_out_channels=(16, 32), attention_head_dim=8, norm_num_groups=8, resolution=16)
    both = build_unet(coordinate_channels=True, self_conditioning=True, **tiny)
    assert both.config.in_channels == 8
    estimate = torch.full_like(sample, 0.5)
    stacked = unet_input(both, sample, estimate)
    assert torch.equal(stacked[:, :3], sample) and torch.equal(stacked[:, 5:], estimate)
    assert torch.count_nonzero(unet_input(both, sample)[:, 5:]) == 0
    with pytest.raises(ValueError, match="not built with self-conditioning"):
        unet_input(build_unet(**tiny), sample, estimate)
    odd = build_unet(**tiny)
    odd.register_to_config(in_channels=7)
    with pytest.raises(ValueError, match="in_channels 7 and out_channels 3"):
        unet_input(odd, sample)
