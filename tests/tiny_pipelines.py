"""Tiny random models for the pipeline and training tests: a base model, super-resolution stages on its text tower, a
concept model saved as train_concept.py saves one."""

import torch
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

from hf_textimg.concept import ConceptConfig, ConceptModel, ConceptTextConfig, ConceptTextModel
from hf_textimg.diffusion import build_superres_unet, build_unet
from hf_textimg.decoder import ConceptDecoder
from hf_textimg.pipelines import ConceptDiffusionPipeline, ConceptSuperResolutionPipeline, DecoderPipeline
from hf_textimg.shapes import build_shapes_dataset
from hf_textimg.tokenization import train_tokenizer

PROMPTS = ["a red circle at the top left", "two blue squares"]


def training_schedule() -> DDPMScheduler:
    return DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", clip_sample=True)


def sampler() -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler.from_config(training_schedule().config, thresholding=True, sample_max_value=1.0)


def tiny_base(seed: int = 0, prompt_normalization: str | None = None, scheduler=None, **unet_kwargs) -> ConceptDiffusionPipeline:
    """A 32 px text-to-image pipeline with a 32-wide text tower (default sampler: DPM-Solver++ on the training schedule);
    `unet_kwargs` go to `build_unet` (e.g. `self_conditioning=True`)."""
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(PROMPTS + ["a green plus left of a pink triangle"], vocab_size=200, model_max_length=16)
    text_encoder = ConceptTextModel(
        ConceptTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                          max_position_embeddings=16, projection_dim=32)
    ).eval()
    unet = build_unet(cross_attention_dim=32, concept_dim=32, block_out_channels=(16, 32), attention_head_dim=8, norm_num_groups=8, **unet_kwargs)
    pipe = ConceptDiffusionPipeline(tokenizer, text_encoder, unet, scheduler or sampler(), prompt_normalization)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_oneshot(seed: int = 3) -> DecoderPipeline:
    """A 32 px one-shot pipeline (its own 32-wide text tower, a random deterministic decoder)."""
    base = tiny_base(seed=seed)
    torch.manual_seed(seed)
    decoder = ConceptDecoder(image_size=32, code_dim=32, noise_dim=0, block_out_channels=(32, 16, 16, 16), norm_num_groups=8)
    pipe = DecoderPipeline(base.tokenizer, base.text_encoder, decoder.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_stage(base: ConceptDiffusionPipeline, upscale_factor: int = 2, resolution: int = 64, widths=(8, 16), seed: int = 1, **unet_kwargs):
    """A super-resolution stage on `base`'s text tower (random U-Net)."""
    torch.manual_seed(seed)
    unet = build_superres_unet(resolution=resolution, cross_attention_dim=32, concept_dim=32, block_out_channels=widths, norm_num_groups=8, **unet_kwargs)
    stage = ConceptSuperResolutionPipeline(
        base.tokenizer, base.text_encoder, unet, sampler(), training_schedule(), upscale_factor, base.config.prompt_normalization
    )
    stage.set_progress_bar_config(disable=True)
    return stage


def save_tiny_concept_model(folder, text_hidden_size: int = 32):
    """A tiny, untrained ConceptModel + tokenizer (16-token Shapes captions, 32-d concepts) saved in `folder` the way
    train_concept.py saves them; returns `folder`."""
    captions = build_shapes_dataset(num_train=200, num_validation=1, num_heldout=1)["train"]["text"]
    tokenizer = train_tokenizer(captions, vocab_size=300, model_max_length=16)
    torch.manual_seed(0)
    model = ConceptModel(ConceptConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=text_hidden_size, num_layers=1, num_heads=2,
                         intermediate_size=2 * text_hidden_size, max_position_embeddings=16),
        vision_config=dict(base_channels=8, num_stages=2, layers_per_stage=1, norm_num_groups=4),
        projection_dim=32,
    ))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
