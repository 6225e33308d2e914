"""ConceptSuperResolutionPipeline and ConceptCascadePipeline on tiny random models: round trips, noise augmentation,
what the cascade hands its stages, and input checks."""

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from tiny_pipelines import PROMPTS, tiny_base, tiny_oneshot, tiny_stage, training_schedule

from hf_textimg.diffusion.superres import check_unet_size, noise_augment, superres_unet_config, superres_unet_kwargs, upsample
from hf_textimg.pipelines.prompt_embeds import ConceptPromptEmbeds
from hf_textimg.pipelines import ConceptCascadePipeline, ConceptSuperResolutionPipeline


@pytest.fixture(scope="module")
def base():
    return tiny_base()


@pytest.fixture(scope="module")
def stage(base):
    return tiny_stage(base)  # 2x, 32 -> 64


@pytest.fixture(scope="module")
def cascade(base, stage):
    return ConceptCascadePipeline.from_stages(base, stage, tiny_stage(base, resolution=128, seed=2))  # 32 -> 64 -> 128


def low_res(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))  # (n, 3, size, size) in [0, 1]


def upscale(stage, image, seed=0, **kwargs):
    kwargs = {"num_inference_steps": 3, "output_type": "pt", "generator": torch.Generator().manual_seed(seed), **kwargs}
    return stage(PROMPTS[: len(image)], image=image, **kwargs).images


def run_cascade(cascade, seed=0, **kwargs):
    kwargs = {"num_inference_steps": 2, "superres_num_inference_steps": 2, "output_type": "pt", **kwargs}
    return cascade(PROMPTS, generator=torch.Generator().manual_seed(seed), **kwargs).images


# -- round trips ----------------------------------------------------------------------------------


def test_stage_save_load_gives_the_same_images(stage, tmp_path):
    before = upscale(stage, low_res())
    stage.save_pretrained(tmp_path)
    assert not list(tmp_path.rglob("*.bin")) and (tmp_path / "image_noising_scheduler").is_dir()
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded) is ConceptSuperResolutionPipeline and loaded.config.upscale_factor == 2
    loaded.set_progress_bar_config(disable=True)
    after = upscale(loaded, low_res())
    assert before.shape == (2, 3, 64, 64)
    assert torch.equal(before, after)
    assert not torch.equal(before, upscale(loaded, low_res(), seed=1))
    # any input size works (fully convolutional): 24 px in, 48 px out
    assert upscale(loaded, low_res(size=24)).shape == (2, 3, 48, 48)


def test_cascade_save_load_gives_the_same_images_at_every_size(cascade, tmp_path):
    before = run_cascade(cascade)
    cascade.save_pretrained(tmp_path)
    assert {"superres_unet", "superres_2_unet", "superres_2_image_noising_scheduler"} <= {p.name for p in tmp_path.iterdir()}
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded) is ConceptCascadePipeline and loaded.output_sizes() == [32, 64, 128]
    loaded.set_progress_bar_config(disable=True)
    assert before.shape == (2, 3, 128, 128)
    assert torch.equal(before, run_cascade(loaded))
    assert run_cascade(loaded, height=64, width=64).shape == (2, 3, 64, 64)  # stops after the first stage
    assert torch.equal(run_cascade(loaded, height=32), cascade.base(PROMPTS, num_inference_steps=2, output_type="pt",
                                                                     generator=torch.Generator().manual_seed(0)).images)


def test_one_stage_cascade_saves_no_second_stage(base, stage, tmp_path):
    ConceptCascadePipeline.from_stages(base, stage).save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert loaded.superres_2_unet is None and len(loaded.superres_stages) == 1 and loaded.output_sizes() == [32, 64]


# -- noise augmentation ---------------------------------------------------------------------------


def test_noise_augmentation_level_zero_is_clean_and_higher_levels_add_more_noise():
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    levels = torch.tensor([0, 0, 100, 600])
    out = noise_augment(images, levels, training_schedule(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:2], images[:2])
    change = (out - images).pow(2).mean(dim=(1, 2, 3))
    assert 0 < change[2] < change[3]


def test_the_stage_reads_the_augmented_image_and_the_level(stage):
    image = low_res() * 2 - 1  # [-1, 1], as inside the pipeline
    clean, level = stage.prepare_image_condition(image, 64, 64, 0, 1, torch.Generator().manual_seed(0))
    assert torch.equal(clean, upsample(image, (64, 64))) and level.tolist() == [0, 0]
    noisy, level = stage.prepare_image_condition(image, 64, 64, 250, 1, torch.Generator().manual_seed(0))
    assert not torch.allclose(noisy, clean, atol=0.05) and level.tolist() == [250, 250]
    # The level reaches the U-Net beside the concept (diffusers' text_time embedding): same inputs, another level, another output.
    embeds = stage.encode_prompt(PROMPTS, do_classifier_free_guidance=False)[0]
    sample = torch.cat([torch.randn(2, 3, 64, 64), clean], dim=1)
    outputs = [stage.unet(sample, torch.tensor(500), **superres_unet_kwargs(embeds, torch.tensor([v, v]))).sample for v in (0, 250)]
    assert not torch.allclose(outputs[0], outputs[1])
    # and end to end, the noise level changes the result
    assert not torch.equal(upscale(stage, low_res(), noise_level=0), upscale(stage, low_res(), noise_level=250))


def test_the_stage_is_fully_convolutional():
    """No coordinate channels and no self-attention, so nothing depends on where a crop sits in the image; token
    states may still be read, by cross-attention only."""
    config = superres_unet_config(resolution=64, cross_attention_dim=32, concept_dim=32, block_out_channels=(8, 16),
                                  attention_levels=(False, True), attention_head_dim=8, norm_num_groups=8)
    assert config["in_channels"] == 6 and config["mid_block_type"] == "UNetMidBlock2D"
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import Attention

    attentions = [m for m in UNet2DConditionModel(**config).modules() if isinstance(m, Attention)]
    assert attentions and all(a.is_cross_attention for a in attentions)


# -- the cascade ------------------------------------------------------------------------------------


def test_cascade_gives_each_stage_the_output_of_the_one_before(cascade, monkeypatch):
    seen = []
    original = ConceptSuperResolutionPipeline.__call__

    def spy(self, prompt, image=None, **kwargs):
        seen.append((list(prompt), image.clone()))
        return original(self, prompt, image=image, **kwargs)

    monkeypatch.setattr(ConceptSuperResolutionPipeline, "__call__", spy)
    final = run_cascade(cascade, num_images_per_prompt=2)
    base_images = cascade.base(PROMPTS, num_inference_steps=2, num_images_per_prompt=2, output_type="pt",
                               generator=torch.Generator().manual_seed(0)).images
    assert len(seen) == 2 and final.shape == (4, 3, 128, 128)
    prompts, first_input = seen[0]
    assert prompts == [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]]  # one caption per image, in order
    assert torch.equal(first_input, base_images)  # the base model's own output, (4, 3, 32, 32) in [0, 1]
    assert seen[1][1].shape == (4, 3, 64, 64)


def test_cascade_refuses_a_stage_on_another_text_tower(base, stage):
    other = tiny_stage(tiny_base(seed=5))
    with pytest.raises(ValueError, match="another text tower .* --concept_model_path"):
        ConceptCascadePipeline.from_stages(base, other)
    normalized = tiny_stage(tiny_base(prompt_normalization="shapes_relations"))
    with pytest.raises(ValueError, match="rewrites prompts with None but the stage with 'shapes_relations'"):
        ConceptCascadePipeline.from_stages(base, normalized)
    with pytest.raises(ValueError, match="`base` must be a ConceptDiffusionPipeline or a DecoderPipeline"):
        ConceptCascadePipeline.from_stages(stage, stage)


def test_a_one_shot_base_with_a_stage_on_its_own_text_tower(stage, tmp_path):
    """A one-shot base (DecoderPipeline) and a stage made for another base: the stage keeps its own tower, reads each
    caption with it exactly as the stage alone would, and the folder round-trips."""
    oneshot = tiny_oneshot()
    with pytest.raises(ValueError, match="another text tower .*own_text_towers=True"):
        ConceptCascadePipeline.from_stages(oneshot, stage)
    cascade = ConceptCascadePipeline.from_stages(oneshot, stage, own_text_towers=True)
    assert cascade.unet is None and cascade.decoder is oneshot.decoder and cascade.superres_text_encoder is stage.text_encoder
    assert cascade.output_sizes() == [32, 64]
    before = run_cascade(cascade)
    small = oneshot(PROMPTS, output_type="pt").images
    assert torch.equal(before, upscale(stage, small, num_inference_steps=2))  # the stage alone, on the base's images
    cascade.save_pretrained(tmp_path)
    assert {"decoder", "superres_text_encoder", "superres_tokenizer"} <= {p.name for p in tmp_path.iterdir()}
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is ConceptCascadePipeline and loaded.unet is None and loaded.output_sizes() == [32, 64]
    assert torch.equal(before, run_cascade(loaded))
    assert torch.equal(run_cascade(loaded, height=32), small)  # base only
    # a stage on the base's own tower stores no second one
    shared = tiny_stage(oneshot)
    assert ConceptCascadePipeline.from_stages(oneshot, shared).superres_text_encoder is None


def test_a_cascade_needs_one_kind_of_base(base, stage):
    parts = dict(tokenizer=base.tokenizer, text_encoder=base.text_encoder, superres_unet=stage.unet, superres_scheduler=stage.scheduler,
                 superres_image_noising_scheduler=stage.image_noising_scheduler)
    with pytest.raises(ValueError, match="either a diffusion model .* or a one-shot `decoder`"):
        ConceptCascadePipeline(unet=None, scheduler=None, **parts)
    with pytest.raises(ValueError, match="either a diffusion model"):
        ConceptCascadePipeline(unet=base.unet, scheduler=base.scheduler, decoder=tiny_oneshot().decoder, **parts)
    with pytest.raises(ValueError, match="needs both superres_tokenizer and superres_text_encoder"):
        ConceptCascadePipeline(unet=base.unet, scheduler=base.scheduler, superres_text_encoder=base.text_encoder, **parts)


# -- input checks ---------------------------------------------------------------------------------


def test_sizes_that_are_no_multiple_of_the_factor_name_the_allowed_sizes(base, cascade):
    stage = tiny_stage(base, widths=(8, 16, 16))  # three levels: sizes must be multiples of 4
    with pytest.raises(ValueError, match=r"`height` must be a positive multiple of 4 .*: 4, 8, 12, 16, \.\.\.; the nearest are 28 and 32\), got 30"):
        upscale(stage, low_res(size=15))  # 15 px -> 30 px
    with pytest.raises(ValueError, match=r"`width` must be a positive multiple of 4 .*, got 66"):
        upscale(stage, low_res(), width=66)
    with pytest.raises(ValueError, match=r"`resolution` must be a positive multiple of 4 .*the nearest are 96 and 100\), got 98"):
        superres_unet_config(resolution=98, block_out_channels=(16, 32, 32))
    with pytest.raises(ValueError, match=r"makes square images of 32x32, 64x64, 128x128 px .* got height=100"):
        run_cascade(cascade, height=100, width=100)
    check_unet_size(96, 8)  # a multiple is fine


@pytest.mark.parametrize("image, message", [
    (torch.rand(2, 4, 32, 32), r"`image` must have 3 \(RGB\) channels: .* got shape \(2, 4, 32, 32\)"),
    (torch.rand(2, 1, 32, 32), r"`image` must have 3 \(RGB\) channels"),
    (np.random.rand(2, 32, 32, 1).astype(np.float32), r"`image` must have 3 \(RGB\) channels: .* got shape \(2, 1, 32, 32\)"),
    ([Image.new("L", (32, 32))] * 2, r"`image` must be RGB PIL images, got mode\(s\) \['L'\]"),
    ([Image.new("RGB", (32, 32)), Image.new("RGB", (16, 16))], r"PIL images of different sizes"),
    (torch.rand(3, 3, 32, 32), r"`image` holds 3 images for 2 prompts"),
    (torch.rand(2, 3, 32, 32) * 2 - 1, r"`image` values must be in \[0, 1\]"),
    (None, r"`image` is required"),
    ("a picture", r"`image` must be a PIL image, a numpy array or a torch tensor, or a list of one of these, got str"),
    ([torch.rand(3, 32, 32), torch.rand(3, 16, 16)], r"`image` holds images of shapes \[\(3, 16, 16\), \(3, 32, 32\)\]"),
    ([torch.rand(3, 32, 32), np.random.rand(32, 32, 3)], r"`image` mixes numpy arrays and torch tensors"),
])
def test_bad_images_are_value_errors_naming_the_fix(stage, image, message):
    with pytest.raises(ValueError, match=message):
        stage(PROMPTS, image=image, num_inference_steps=1)


def test_wrong_image_size_for_the_asked_output_and_bad_noise_level(stage):
    with pytest.raises(ValueError, match=r"`image` is 32x32 px but this 2x stage was asked for 96x96 images: pass 48x48 px images, or height=64, width=64"):
        upscale(stage, low_res(), height=96, width=96)
    with pytest.raises(ValueError, match=r"`noise_level` must be an integer in \[0, 1000\)"):
        upscale(stage, low_res(), noise_level=1000)
    # PIL and numpy inputs give what the equal tensor gives
    image = low_res()
    as_pil = [Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for x in image]
    quantized = torch.from_numpy(np.stack([np.asarray(p) for p in as_pil])).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(upscale(stage, as_pil), upscale(stage, quantized), atol=1e-5)
    assert torch.allclose(upscale(stage, quantized.permute(0, 2, 3, 1).numpy()), upscale(stage, quantized), atol=1e-5)
    # so do lists of tensors / arrays, each one image or a batch (diffusers' PipelineImageInput)
    assert torch.equal(upscale(stage, list(image)), upscale(stage, image))
    assert torch.equal(upscale(stage, [image[:1], image[1:]]), upscale(stage, image))
    assert torch.equal(upscale(stage, list(image.permute(0, 2, 3, 1).numpy())), upscale(stage, image))


def test_a_text_to_image_unet_is_not_a_stage(base):
    with pytest.raises(ValueError, match="`unet` is not a super-resolution U-Net: it needs in_channels == 2 \\* out_channels"):
        ConceptSuperResolutionPipeline(base.tokenizer, base.text_encoder, base.unet, base.scheduler, training_schedule())
    with pytest.raises(ValueError, match="`upscale_factor` must be an integer >= 2"):
        ConceptSuperResolutionPipeline(base.tokenizer, base.text_encoder, tiny_stage(base).unet, base.scheduler, training_schedule(), 1)


def test_guidance_and_prompt_embeds_work_like_the_base_pipeline(stage):
    embeds, negative = stage.encode_prompt(PROMPTS, do_classifier_free_guidance=True)
    assert isinstance(embeds, ConceptPromptEmbeds)
    by_text = upscale(stage, low_res(), guidance_scale=3.0)
    by_embeds = stage(prompt_embeds=embeds, negative_prompt_embeds=negative, image=low_res(), num_inference_steps=3, output_type="pt",
                      guidance_scale=3.0, generator=torch.Generator().manual_seed(0)).images
    assert torch.allclose(by_text, by_embeds, atol=1e-6)
    assert not torch.allclose(by_text, upscale(stage, low_res()))  # guidance 1 (the default) differs
    # a stage without its text tower takes the embeddings (its U-Net's concept width excludes the noise level's)
    no_tower = ConceptSuperResolutionPipeline(None, None, stage.unet, stage.scheduler, stage.image_noising_scheduler, 2)
    no_tower.set_progress_bar_config(disable=True)
    by_embeds_alone = no_tower(prompt_embeds=embeds, negative_prompt_embeds=negative, image=low_res(), num_inference_steps=3, output_type="pt",
                               guidance_scale=3.0, generator=torch.Generator().manual_seed(0)).images
    assert torch.allclose(by_text, by_embeds_alone, atol=1e-6)


# -- tiles (a stage trained on crops) ----------------------------------------------------------------


def test_tile_origins_cover_the_image_with_overlap():
    from hf_textimg.diffusion.superres import tile_origins

    assert tile_origins(128, 64, 16) == [0, 48, 64]
    assert tile_origins(64, 64, 16) == [0] and tile_origins(48, 64, 16) == [0]
    assert tile_origins(100, 32, 8) == [0, 24, 48, 68]


def test_a_stage_with_tile_size_runs_the_unet_on_overlapping_tiles(base, tmp_path, monkeypatch):
    tiled = tiny_stage(base)
    tiled.register_to_config(tile_size=32)  # as train_superres saves a stage trained on 32 px crops
    tiled.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.tile_size == 32
    shapes = []
    forward = type(loaded.unet).forward
    monkeypatch.setattr(type(loaded.unet), "forward", lambda self, sample, *a, **k: shapes.append(tuple(sample.shape)) or forward(self, sample, *a, **k))
    images = upscale(loaded, low_res(), num_inference_steps=1)
    assert images.shape == (2, 3, 64, 64)
    assert shapes == [(2, 6, 32, 32)] * 9  # 3 x 3 windows of 32 px at offsets 0, 24, 32 (a quarter tile of overlap)
    shapes.clear()
    whole = upscale(loaded, low_res(), num_inference_steps=1, tile_size=0)
    assert shapes == [(2, 6, 64, 64)] and not torch.allclose(images, whole)
    cascade = ConceptCascadePipeline.from_stages(base, loaded)  # the cascade keeps the stage's tiles
    assert cascade.config.tile_sizes == [32] and cascade.superres_stages[0].config.tile_size == 32
    # a tile as large as the image is the whole image
    assert torch.equal(upscale(loaded, low_res(), num_inference_steps=1, tile_size=64), whole)
    with pytest.raises(ValueError, match=r"`tile_size` must be a positive multiple of 2 .*, got 33"):
        upscale(loaded, low_res(), tile_size=33)
