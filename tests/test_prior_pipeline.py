"""The unCLIP route: ConceptPriorPipeline (caption -> image concepts), DecoderPipeline(image_embeds=...) and the combined
ConceptUnCLIPPipeline: save -> load round trips, seeds, guidance, input checks, and `hf-textimg generate` (tiny models)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline, PriorTransformer
from PIL import Image

from hf_textimg.cli import main as cli_main
from hf_textimg.concept import ConceptTextConfig, ConceptTextModel
from hf_textimg.decoder import ConceptDecoder
from hf_textimg.pipelines import ConceptPriorPipeline, ConceptUnCLIPPipeline, DecoderPipeline
from hf_textimg.pipelines.prompt_embeds import text_features
from hf_textimg.prior import (
    build_prior,
    embedding_stats,
    normalize_embeds,
    prior_kwargs,
    prior_loss,
    prior_noise_scheduler,
    set_embedding_stats,
)
from hf_textimg.tokenization import tokenize_captions, train_tokenizer

PROMPTS = ["a red circle at the top left", "two blue squares"]
DIM = 32  # image concepts; the text tower is 24 wide (zero-padded to 32 for the prior)


def tiny_text_tower(seed: int = 0):
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(PROMPTS + ["a green plus left of a pink triangle"], vocab_size=200, model_max_length=16)
    config = ConceptTextConfig(vocab_size=len(tokenizer), hidden_size=24, num_layers=1, num_heads=2, intermediate_size=48,
                               max_position_embeddings=16, projection_dim=DIM)
    return tokenizer, ConceptTextModel(config).eval()


def tiny_prior(seed: int = 0) -> PriorTransformer:
    torch.manual_seed(seed)
    return build_prior(embedding_dim=DIM, text_embed_dim=DIM, text_hidden_size=24, max_length=16, num_layers=1,
                       num_attention_heads=2, attention_head_dim=16).eval()


def tiny_decoder(seed: int = 0) -> ConceptDecoder:
    torch.manual_seed(seed)
    decoder = ConceptDecoder(code_dim=DIM, noise_dim=4, block_out_channels=(16, 16, 8, 8), norm_num_groups=4).eval()
    with torch.no_grad():  # make the random decoder's output depend visibly on its input
        decoder.proj_in.weight.mul_(10)
    return decoder


def make_prior_pipeline(prior=None) -> ConceptPriorPipeline:
    tokenizer, text_encoder = tiny_text_tower()
    pipe = ConceptPriorPipeline(tokenizer, text_encoder, prior if prior is not None else tiny_prior(), prior_noise_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, prompt=PROMPTS, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", 8)
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), **kwargs)


def train_tiny_prior(steps: int = 300, spread: float = 0.6):
    """A tiny prior trained for `steps` steps (seconds) on two captions whose image concepts scatter around two
    different unit vectors, with 20% of captions dropped to "" (so guidance has an unconditional branch to push from).
    Returns the pipeline and the two centres."""
    pipe = make_prior_pipeline()
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(2, DIM), dim=-1)  # (2, D)

    def concepts(which: torch.Tensor) -> torch.Tensor:  # which (B,) in {0, 1} -> (B, D) unit vectors around the centres
        return F.normalize(centres[which] + spread * torch.randn(len(which), DIM) / DIM**0.5, dim=-1)

    prior, scheduler = pipe.prior.train(), prior_noise_scheduler()
    set_embedding_stats(prior, *embedding_stats(concepts(torch.randint(0, 2, (4096,)))))
    tokens = tokenize_captions(pipe.tokenizer, PROMPTS + [""], 16)
    with torch.no_grad():
        states, concept = text_features(pipe.text_encoder, tokens["input_ids"], tokens["attention_mask"])  # (3, L, H), (3, D)
    optimizer = torch.optim.AdamW([p for p in prior.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(steps):
        which = torch.randint(0, 2, (64,))
        caption = torch.where(torch.rand(64) < 0.2, 2, which)  # the empty caption for 20%
        kwargs = prior_kwargs(prior, states[caption], tokens["attention_mask"][caption], concept[caption])
        loss = prior_loss(prior, scheduler, normalize_embeds(prior, concepts(which)), kwargs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    return pipe, centres


@pytest.fixture(scope="module")
def trained():
    return train_tiny_prior()


# -- the prior pipeline ----------------------------------------------------------------------------


def test_prior_learns_the_caption_and_samples_differ_across_seeds(trained):
    pipe, centres = trained
    first = sample(pipe, PROMPTS[0], seed=0, num_images_per_prompt=8, guidance_scale=1.0).image_embeds  # (8, D)
    second = sample(pipe, PROMPTS[0], seed=1, num_images_per_prompt=8, guidance_scale=1.0).image_embeds
    assert first.shape == (8, DIM) and torch.allclose(first.norm(dim=-1), torch.ones(8), atol=1e-5)
    # it learned which centre the caption belongs to ...
    cos = first @ centres.T  # (8, 2)
    assert (cos[:, 0] > cos[:, 1]).all()
    # ... and samples around it rather than one point: other seeds, other concepts; one call, eight different ones
    assert (F.cosine_similarity(first, second, dim=-1) < 0.9999).all()
    pairwise = first @ first.T
    assert pairwise[~torch.eye(8, dtype=torch.bool)].max() < 0.9999
    assert torch.equal(first, sample(pipe, PROMPTS[0], seed=0, num_images_per_prompt=8, guidance_scale=1.0).image_embeds)


def one_step(pipe, prompt, guidance_scale, latents, negative_prompt=None):
    """A single deterministic DDIM step from pure noise: its output is the (guided) clean-embedding prediction itself,
    un-standardised and, with `normalize_image_embeds=False`, not projected onto the sphere."""
    deterministic = ConceptPriorPipeline(pipe.tokenizer, pipe.text_encoder, pipe.prior, DDIMScheduler.from_config(pipe.scheduler.config),
                                         normalize_image_embeds=False)
    deterministic.set_progress_bar_config(disable=True)
    return deterministic([prompt] * len(latents), negative_prompt=negative_prompt, num_inference_steps=1,
                         guidance_scale=guidance_scale, latents=latents).image_embeds


def test_guidance_is_the_classifier_free_combination_of_the_two_branches(trained):
    pipe, _ = trained
    latents = torch.randn(4, DIM, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(999)  # the one trailing DDIM step
    (cond, _), (uncond, _) = (pipe.encode_prompt([p] * 4, 1, False) for p in (PROMPTS[1], ""))
    with torch.no_grad():
        c, u = pipe.model_output(latents, t, cond), pipe.model_output(latents, t, uncond)  # standardised (4, D)
    for scale in (2.0, 5.0):
        expected = pipe.prior.post_process_latents((u + scale * (c - u)).clamp(-10, 10))
        torch.testing.assert_close(one_step(pipe, PROMPTS[1], scale, latents), expected)
    # guidance <= 1 is the conditional branch alone; the negative prompt replaces "" as the unconditional branch
    torch.testing.assert_close(one_step(pipe, PROMPTS[1], 1.0, latents), pipe.prior.post_process_latents(c))
    with torch.no_grad():
        n = pipe.model_output(latents, t, pipe.encode_prompt([PROMPTS[0]] * 4, 1, False)[0])
    torch.testing.assert_close(one_step(pipe, PROMPTS[1], 3.0, latents, negative_prompt=PROMPTS[0]),
                               pipe.prior.post_process_latents((n + 3.0 * (c - n)).clamp(-10, 10)))


def test_guidance_moves_samples_towards_the_caption(trained):
    pipe, centres = trained
    latents = torch.randn(32, DIM, generator=torch.Generator().manual_seed(1))

    def margin(embeds: torch.Tensor) -> float:
        """Mean cosine to the caption's own centre minus that to the other caption's."""
        embeds = F.normalize(embeds, dim=-1)
        return (embeds @ centres[1] - embeds @ centres[0]).mean().item()

    # from pure noise, the prediction moves along (caption - no caption): further towards the caption the larger the scale
    unguided, guided, strong = (margin(one_step(pipe, PROMPTS[1], scale, latents)) for scale in (1.0, 2.0, 4.0))
    assert 0 < unguided < guided < strong
    # full sampling stays on the caption's side at every scale (past the conditional mean guidance trades variety for
    # sharpness: docs/prior.md)
    for scale in (1.0, 4.0):
        assert margin(sample(pipe, PROMPTS[1], num_images_per_prompt=32, guidance_scale=scale).image_embeds) > 0.5


def test_negative_prompt_and_outputs(trained):
    pipe, _ = trained
    out = sample(pipe, PROMPTS, num_images_per_prompt=2, output_type="np")
    assert isinstance(out.image_embeds, np.ndarray) and out.image_embeds.shape == (4, DIM)
    # the "no caption" concept: the training images' mean, on the unit sphere
    mean = F.normalize(pipe.prior.clip_mean, dim=-1).expand(4, -1).numpy()
    np.testing.assert_allclose(out.negative_image_embeds, mean, atol=1e-6)
    embeds, negative = sample(pipe, PROMPTS, return_dict=False)
    assert embeds.shape == negative.shape == (2, DIM)
    # guidance away from another caption than "" changes the samples; without guidance there is no negative branch
    assert not torch.equal(sample(pipe, PROMPTS, negative_prompt=PROMPTS[::-1]).image_embeds, embeds)
    assert torch.equal(sample(pipe, PROMPTS, guidance_scale=1.0, negative_prompt="two blue squares").image_embeds,
                       sample(pipe, PROMPTS, guidance_scale=1.0).image_embeds)
    # any diffusers scheduler made from the saved config (deterministic DDIM here)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    try:
        assert torch.isfinite(sample(pipe, PROMPTS).image_embeds).all()
    finally:
        pipe.scheduler = prior_noise_scheduler()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prompt": None}, "`prompt` must be a string"),
        ({"prompt": []}, "`prompt` is an empty list"),
        ({"num_images_per_prompt": 0}, "`num_images_per_prompt`"),
        ({"num_inference_steps": 0}, "`num_inference_steps`"),
        ({"num_inference_steps": 2000}, "`num_inference_steps`"),
        ({"guidance_scale": -1.0}, "`guidance_scale`"),
        ({"guidance_scale": "4"}, "`guidance_scale`"),
        ({"negative_prompt": ["only one"]}, "`negative_prompt`"),
        ({"generator": [torch.Generator()] * 3}, "generators"),
        ({"generator": 0}, "`generator`"),
        ({"latents": torch.zeros(2, DIM + 1)}, "`latents`"),
        ({"output_type": "pil"}, "`output_type`"),
    ],
)
def test_bad_arguments_to_the_prior_pipeline_name_the_argument(kwargs, match):
    pipe = make_prior_pipeline()
    call = {"prompt": PROMPTS, "num_inference_steps": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        pipe(**call)


def test_mismatched_components_are_refused():
    tokenizer, text_encoder = tiny_text_tower()
    wide = build_prior(embedding_dim=16, text_embed_dim=DIM, text_hidden_size=16, max_length=16, num_layers=1, num_attention_heads=2, attention_head_dim=8)
    with pytest.raises(ValueError, match="token states"):  # 24-wide token states cannot be padded to 16
        ConceptPriorPipeline(tokenizer, text_encoder, wide, prior_noise_scheduler())
    with pytest.raises(ValueError, match="text tower"):
        build_prior(embedding_dim=16, text_hidden_size=24)
    other_concepts = build_prior(embedding_dim=DIM, text_embed_dim=16, text_hidden_size=24, max_length=16, num_layers=1)
    with pytest.raises(ValueError, match="embedding_proj_dim"):
        ConceptPriorPipeline(tokenizer, text_encoder, other_concepts, prior_noise_scheduler())
    longer = build_prior(embedding_dim=DIM, text_embed_dim=DIM, text_hidden_size=24, max_length=20, num_layers=1)
    with pytest.raises(ValueError, match="num_embeddings"):
        ConceptPriorPipeline(tokenizer, text_encoder, longer, prior_noise_scheduler())
    pipe = make_prior_pipeline()
    with pytest.raises(ValueError, match="code_dim"):
        ConceptUnCLIPPipeline.from_parts(pipe, ConceptDecoder(code_dim=16, block_out_channels=(8, 8), norm_num_groups=4))


# -- the decoder on image concepts -------------------------------------------------------------------


def test_decoder_pipeline_decodes_image_embeds():
    tokenizer, text_encoder = tiny_text_tower()
    pipe = DecoderPipeline(tokenizer, text_encoder, tiny_decoder())
    pipe.set_progress_bar_config(disable=True)
    embeds = F.normalize(torch.randn(2, DIM, generator=torch.Generator().manual_seed(0)), dim=-1)

    def decode(**kwargs):
        return pipe(generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images

    images = decode(image_embeds=embeds, num_images_per_prompt=3)
    assert images.shape == (6, 3, 32, 32)
    assert torch.equal(images, decode(prompt_embeds=embeds, num_images_per_prompt=3))  # the same codes, decoded alike
    # Kandinsky's calling convention: a prior's whole output goes in; the one-shot decoder has no use for the negative
    assert torch.equal(images, decode(image_embeds=embeds, negative_image_embeds=torch.zeros(2, DIM), num_images_per_prompt=3))
    no_text = DecoderPipeline(tokenizer=None, text_encoder=None, decoder=pipe.decoder)  # image concepts need no text tower
    assert torch.equal(images, no_text(image_embeds=embeds, num_images_per_prompt=3, generator=torch.Generator().manual_seed(0), output_type="pt").images)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_embeds": torch.zeros(2, DIM + 8)}, r"`image_embeds` must be a tensor of image concepts .*reads 32-d codes; got \(2, 40\)"),
        ({"image_embeds": torch.zeros(DIM)}, "`image_embeds`"),
        ({"image_embeds": np.zeros((2, DIM))}, "`image_embeds`"),
        ({"image_embeds": torch.full((2, DIM), float("nan"))}, "`image_embeds`"),
        ({"image_embeds": torch.zeros(2, DIM), "prompt": "a red circle"}, "exactly one of"),
        ({"image_embeds": torch.zeros(2, DIM), "negative_image_embeds": torch.zeros(3, DIM)}, "`negative_image_embeds`"),
        ({"image_embeds": torch.zeros(2, DIM), "negative_image_embeds": torch.zeros(2, 5)}, "`negative_image_embeds`"),
    ],
)
def test_image_embeds_of_the_wrong_shape_name_the_argument(kwargs, match):
    pipe = DecoderPipeline(tokenizer=None, text_encoder=None, decoder=tiny_decoder())
    with pytest.raises(ValueError, match=match):
        pipe(**kwargs)


# -- the combined pipeline ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_unclip(trained, tmp_path_factory):
    prior_pipe, _ = trained
    pipe = ConceptUnCLIPPipeline.from_parts(prior_pipe, DecoderPipeline(prior_pipe.tokenizer, prior_pipe.text_encoder, tiny_decoder()))
    pipe.set_progress_bar_config(disable=True)
    folders = {"prior": tmp_path_factory.mktemp("prior"), "unclip": tmp_path_factory.mktemp("unclip")}
    prior_pipe.save_pretrained(folders["prior"])
    pipe.save_pretrained(folders["unclip"])
    return prior_pipe, pipe, folders


@pytest.mark.parametrize("loader", [ConceptUnCLIPPipeline, DiffusionPipeline])
def test_save_and_load_give_identical_embeddings_and_images(saved_unclip, loader):
    prior_pipe, pipe, folders = saved_unclip
    loaded_prior = DiffusionPipeline.from_pretrained(folders["prior"])
    loaded = loader.from_pretrained(folders["unclip"])
    assert type(loaded_prior) is ConceptPriorPipeline and type(loaded) is ConceptUnCLIPPipeline
    assert not list(folders["unclip"].rglob("*.bin")) and (folders["unclip"] / "prior" / "diffusion_pytorch_model.safetensors").is_file()
    for before, after in ((prior_pipe, loaded_prior), (pipe.prior_pipe, loaded.prior_pipe)):
        after.set_progress_bar_config(disable=True)
        assert torch.equal(sample(before, num_images_per_prompt=3).image_embeds, sample(after, num_images_per_prompt=3).image_embeds)
    loaded.set_progress_bar_config(disable=True)
    images = sample(pipe, num_images_per_prompt=3, output_type="pt").images
    assert images.shape == (6, 3, 32, 32)
    assert torch.equal(images, sample(loaded, num_images_per_prompt=3, output_type="pt").images)


def test_combined_pipeline_is_prior_then_decoder(saved_unclip):
    _, pipe, _ = saved_unclip
    images = sample(pipe, num_images_per_prompt=2, seed=5, output_type="pt").images
    generator = torch.Generator().manual_seed(5)  # one generator through both parts, as the combined call does
    embeds = pipe.prior_pipe(PROMPTS, num_images_per_prompt=2, num_inference_steps=8, generator=generator).image_embeds
    assert torch.equal(images, pipe.decoder_pipe(image_embeds=embeds, generator=generator, output_type="pt").images)
    assert not torch.equal(images[0], images[1])  # two images of one prompt: two concepts, two images
    pil = sample(pipe, PROMPTS[0]).images
    assert len(pil) == 1 and pil[0].size == (32, 32)
    with pytest.raises(ValueError, match="`height`"):
        sample(pipe, height=64)
    with pytest.raises(ValueError, match="`output_type`"):
        sample(pipe, output_type="latents")


def test_generate_cli_takes_the_combined_pipeline(saved_unclip, tmp_path, capsys):
    _, _, folders = saved_unclip
    out = tmp_path / "grid.png"
    argv = ["generate", *PROMPTS, "--model", str(folders["unclip"]), "--num-images", "2", "--steps", "4", "--out", str(out), "--quiet"]
    assert cli_main(argv) == 0
    assert "num_inference_steps=4" in capsys.readouterr().out and Image.open(out).width > 2 * 32
