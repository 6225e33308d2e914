"""DecoderPipeline: save -> load round trips, seeded noise, output types and input checks (tiny random models)."""

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from transformers import AutoTokenizer

from hf_textimg.decoder import ConceptDecoder
from hf_textimg.concept import ConceptTextConfig, ConceptTextModel
from hf_textimg.data.prompts import split_class_prompt
from hf_textimg.pipelines.pipeline_decoder import DecoderPipeline
from hf_textimg.tokenization import train_tokenizer

PROMPTS = ["a red circle at the top left", "two blue squares", "a green plus left of a pink triangle"]


def make_pipeline(noise_dim: int = 4, seed: int = 0) -> DecoderPipeline:
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(PROMPTS, vocab_size=200, model_max_length=16)
    text_encoder = ConceptTextModel(
        ConceptTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
            max_position_embeddings=16, projection_dim=32,
        )
    ).eval()
    decoder = ConceptDecoder(code_dim=32, noise_dim=noise_dim, block_out_channels=(16, 16, 8, 8), norm_num_groups=4).eval()
    with torch.no_grad():  # make the random decoder's output depend visibly on the noise
        decoder.proj_in.weight.mul_(10)
    pipe = DecoderPipeline(tokenizer=tokenizer, text_encoder=text_encoder, decoder=decoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompt=PROMPTS, seed=0, **kwargs):
    return pipe(prompt, generator=torch.Generator().manual_seed(seed), output_type="pt", **kwargs).images


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    pipe = make_pipeline()
    folder = tmp_path_factory.mktemp("decoder_pipeline")
    pipe.save_pretrained(folder)
    return pipe, folder


@pytest.mark.parametrize("loader", [DecoderPipeline, DiffusionPipeline])
def test_pipeline_round_trip_gives_identical_images(saved, loader):
    pipe, folder = saved
    loaded = loader.from_pretrained(folder)
    assert type(loaded) is DecoderPipeline
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    before = generate(pipe, num_images_per_prompt=2, seed=3)
    after = generate(loaded, num_images_per_prompt=2, seed=3)
    assert before.shape == (6, 3, 32, 32)
    assert torch.equal(before, after)


def test_prompt_normalization_round_trips(tmp_path):
    pipe = make_pipeline()
    swapped, canonical = "a pink triangle right of a green plus", "a green plus left of a pink triangle"
    assert not torch.equal(generate(pipe, [swapped]), generate(pipe, [canonical]))
    DecoderPipeline(**pipe.components, prompt_normalization="shapes_relations").save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert loaded.config.prompt_normalization == "shapes_relations"
    assert torch.equal(generate(loaded, [swapped]), generate(loaded, [canonical]))


def test_each_component_round_trips(saved):
    pipe, folder = saved
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    assert tokenizer(PROMPTS)["input_ids"] == pipe.tokenizer(PROMPTS)["input_ids"]

    text_encoder = ConceptTextModel.from_pretrained(folder / "text_encoder").eval()
    batch = pipe.tokenizer(PROMPTS, padding="max_length", max_length=16, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(
            text_encoder(**batch).text_embeds, pipe.text_encoder(**batch).text_embeds
        )

    decoder = ConceptDecoder.from_pretrained(folder / "decoder").eval()
    assert (folder / "decoder" / "diffusion_pytorch_model.safetensors").is_file()
    # JSON turns tuples into lists; private keys record where the config came from.
    public = lambda config: {k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(decoder.config) == public(pipe.decoder.config)
    code, noise = torch.randn(3, 32), torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(decoder(code, noise).sample, pipe.decoder(code, noise).sample)


def test_noise_gives_varied_but_reproducible_images():
    pipe = make_pipeline(noise_dim=4)
    images = generate(pipe, "a red circle", num_images_per_prompt=2, seed=0)
    assert not torch.equal(images[0], images[1]), "two noise draws gave the same image"
    assert torch.equal(images, generate(pipe, "a red circle", num_images_per_prompt=2, seed=0))
    assert not torch.equal(images, generate(pipe, "a red circle", num_images_per_prompt=2, seed=1))

    # One generator per image: image i is what that generator gives alone (up to batch-size
    # dependent float rounding in the convolutions).
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    per_image = pipe("a red circle", num_images_per_prompt=2, generator=gens, output_type="pt").images
    alone = generate(pipe, "a red circle", seed=6)[0]
    assert torch.allclose(per_image[1], alone, atol=1e-5) and not torch.allclose(per_image[0], alone, atol=1e-3)

    # Passing the noise is the same as drawing it with the generator.
    noise = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pipe("a red circle", num_images_per_prompt=2, noise=noise, output_type="pt").images, images)


def test_without_noise_the_image_is_a_function_of_the_prompt():
    pipe = make_pipeline(noise_dim=0)
    images = generate(pipe, "a red circle", num_images_per_prompt=3, seed=0)
    assert torch.equal(images[0], images[1]) and torch.equal(images[0], images[2])
    assert torch.equal(images, generate(pipe, "a red circle", num_images_per_prompt=3, seed=99))


def test_output_types_and_return_dict():
    pipe = make_pipeline()
    pil = pipe(PROMPTS[0]).images
    assert len(pil) == 1 and isinstance(pil[0], Image.Image) and pil[0].size == (32, 32)
    array = pipe(PROMPTS, output_type="np").images
    assert isinstance(array, np.ndarray) and array.shape == (3, 32, 32, 3) and 0 <= array.min() and array.max() <= 1
    tensor = pipe(PROMPTS, output_type="pt").images
    assert tensor.shape == (3, 3, 32, 32) and 0 <= tensor.min() and tensor.max() <= 1
    (images,) = pipe(PROMPTS, output_type="pt", return_dict=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, generate(pipe, PROMPTS, seed=0))
    # Pixels from the pipeline are the decoder's [-1, 1] output mapped to [0, 1].
    (codes,) = pipe.encode_prompt(PROMPTS)
    noise = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = pipe.decoder(codes, noise).sample
    assert torch.allclose(images, (raw + 1) / 2, atol=1e-6)


def test_encode_prompt_without_a_decoder_and_prompt_embeds_back_into_call():
    pipe = make_pipeline()
    text_only = DecoderPipeline(pipe.tokenizer, pipe.text_encoder, decoder=None)
    (prompt_embeds,) = text_only.encode_prompt(PROMPTS)  # (3, code_dim), unit norm
    assert prompt_embeds.shape == (3, 32) and torch.allclose(prompt_embeds.norm(dim=-1), torch.ones(3), atol=1e-5)
    decoder_only = DecoderPipeline(tokenizer=None, text_encoder=None, decoder=pipe.decoder)
    from_embeds = decoder_only(prompt_embeds=prompt_embeds, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert torch.equal(from_embeds, generate(pipe))
    with pytest.raises(ValueError, match="prompt_embeds"):
        pipe(PROMPTS, prompt_embeds=prompt_embeds)
    with pytest.raises(ValueError, match=r"prompt_embeds` must be a tensor of concept codes \(prompts, 32\)"):
        pipe(prompt_embeds=prompt_embeds[:, :16])


def test_latent_output_is_the_decoders_sample():
    pipe = make_pipeline()
    latent = pipe(PROMPTS, generator=torch.Generator().manual_seed(0), output_type="latent").images
    (codes,) = pipe.encode_prompt(PROMPTS)
    noise = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(latent, pipe.decoder(codes, noise).sample)
    assert torch.equal(pipe.postprocess(latent, "pt"), generate(pipe))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompt": []}, "empty"),
        ({"prompt": ["a red circle", 3]}, r"prompt\[1\]"),
        ({"prompt": 7}, "prompt"),
        ({"prompt": "a red circle", "num_images_per_prompt": 0}, "num_images_per_prompt"),
        ({"prompt": "a red circle", "output_type": "latents"}, "output_type"),
        ({"prompt": ["a", "b"], "generator": [torch.Generator()] * 3}, "generator"),
        ({"prompt": "a red circle", "noise": torch.zeros(2, 4)}, "noise"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_pipeline()(**kwargs)


def test_noise_for_a_deterministic_decoder_and_mismatched_components_are_refused():
    with pytest.raises(ValueError, match="noise_dim=0"):
        make_pipeline(noise_dim=0)("a red circle", noise=torch.zeros(1, 4))
    pipe = make_pipeline()
    with pytest.raises(ValueError, match="code_dim"):
        DecoderPipeline(pipe.tokenizer, pipe.text_encoder, ConceptDecoder(code_dim=64, block_out_channels=(8, 8), norm_num_groups=4))


def test_a_folder_saved_before_the_decoder_moved_still_loads_and_draws_the_same():
    """tests/data/decoder_pipeline_before_move was saved by the code before issue 18 (ConceptDecoder then lived in
    hf_textimg/autoencoder/modeling_autoencoder.py, the module its model_index.json names), with the images it drew
    (2 prompts x 2, seed 0) beside it. The copies of the text tower's code that save_pretrained writes are left out:
    loading through the package does not read them."""
    import json
    from pathlib import Path

    from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES

    folder = Path(__file__).parent / "data" / "decoder_pipeline_before_move"
    assert json.loads((folder / "model_index.json").read_text())["decoder"] == ["hf_textimg.autoencoder.modeling_autoencoder", "ConceptDecoder"]
    assert "hf_textimg.autoencoder.modeling_autoencoder" in LOADABLE_CLASSES  # what a Hub download checks first
    for loader in (DecoderPipeline, DiffusionPipeline):
        pipe = loader.from_pretrained(folder)
        assert type(pipe) is DecoderPipeline and type(pipe.decoder) is ConceptDecoder
        pipe.set_progress_bar_config(disable=True)
        images = pipe(["a red circle", "a blue square right of a red circle"], num_images_per_prompt=2,
                      generator=torch.Generator().manual_seed(0), output_type="np").images
        np.testing.assert_allclose(images, np.load(folder.parent / "decoder_pipeline_before_move_images.npy"), rtol=0, atol=1e-5)


def test_a_new_save_names_the_decoder_module(tmp_path):
    import json

    make_pipeline().save_pretrained(tmp_path)
    # the code file it carries (hf_textimg.remote_code); folders naming the module load too (test above)
    assert json.loads((tmp_path / "model_index.json").read_text())["decoder"] == ["modeling_decoder", "ConceptDecoder"]


# ---- a class input (a style apart from the caption's content) ------------------------------------------------------
STYLES = ["fluent", "noto", "twemoji"]
TEMPLATE = "{prompt}, {class_name} style"


def make_class_pipeline(template: str | None = TEMPLATE) -> DecoderPipeline:
    pipe = make_pipeline(noise_dim=0)
    torch.manual_seed(1)
    decoder = ConceptDecoder(code_dim=32, noise_dim=0, block_out_channels=(16, 16, 8, 8), norm_num_groups=4, num_class_embeds=3,
                             class_embed_dim=8, code_conditioning="scale_shift").eval()
    pipe = DecoderPipeline(pipe.tokenizer, pipe.text_encoder, decoder, class_names=STYLES, class_prompt_template=template)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_split_class_prompt_takes_a_known_class_from_the_template_only():
    assert split_class_prompt("crab, noto style", TEMPLATE, STYLES) == ("crab", "noto")
    assert split_class_prompt("a, b, twemoji style", TEMPLATE, STYLES) == ("a, b", "twemoji")
    assert split_class_prompt("crab, apple style", TEMPLATE, STYLES) == ("crab, apple style", None)  # not a known class
    assert split_class_prompt("crab", TEMPLATE, STYLES) == ("crab", None)
    assert split_class_prompt("noto: crab", "{class_name}: {prompt}", STYLES) == ("crab", "noto")
    with pytest.raises(ValueError, match="class_name"):
        split_class_prompt("crab", "{prompt} style", STYLES)


def test_the_class_changes_the_image_and_the_prompt_names_it():
    pipe = make_class_pipeline()
    named = generate(pipe, ["two blue squares, noto style", "two blue squares, fluent style", "two blue squares"])
    given = generate(pipe, ["two blue squares"] * 3, class_labels=["noto", 0, None])
    assert torch.equal(named, given)  # the template's class is the class_labels' one; the text tower reads the rest
    assert (named[0] - named[1]).abs().max() > 1e-3 and (named[0] - named[2]).abs().max() > 1e-3
    assert torch.equal(pipe.encode_prompt("two blue squares, noto style")[0], pipe.encode_prompt("two blue squares")[0])
    no_template = make_class_pipeline(template=None)  # without a template the prompt is read whole and gets no class
    assert torch.equal(generate(no_template, ["two blue squares"]), generate(no_template, ["two blue squares"], class_labels=[-1]))


def test_a_class_pipeline_round_trips(tmp_path):
    pipe = make_class_pipeline()
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert loaded.config.class_names == STYLES and loaded.config.class_prompt_template == TEMPLATE
    prompts = ["a red circle, twemoji style", "a red circle"]
    assert torch.equal(generate(pipe, prompts), generate(loaded, prompts))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"class_labels": ["apple"]}, "not a class"),
        ({"class_labels": [3]}, "not a class"),
        ({"class_labels": ["noto", "noto"]}, "one label per prompt"),
    ],
)
def test_bad_class_labels_raise_value_error_naming_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_class_pipeline()("a red circle", **kwargs)


def test_class_labels_for_a_decoder_without_classes_and_mismatched_names_are_refused():
    with pytest.raises(ValueError, match="reads none"):
        make_pipeline()("a red circle", class_labels=["noto"])
    pipe = make_class_pipeline()
    with pytest.raises(ValueError, match="class_names"):
        DecoderPipeline(pipe.tokenizer, pipe.text_encoder, pipe.decoder, class_names=["noto", "fluent"])
    with pytest.raises(ValueError, match="needs class_names"):
        DecoderPipeline(pipe.tokenizer, pipe.text_encoder, pipe.decoder, class_prompt_template=TEMPLATE)
    with pytest.raises(ValueError, match="class_labels"):
        pipe.decoder(torch.zeros(2, 32), class_labels=torch.tensor([0, 5]))


def test_a_class_read_by_the_blocks_only_leaves_the_first_feature_map_to_the_code():
    torch.manual_seed(0)
    decoder = ConceptDecoder(code_dim=32, block_out_channels=(16, 16, 8), norm_num_groups=4, num_class_embeds=3, class_embed_dim=8,
                             code_conditioning="input", class_conditioning="scale_shift").eval()
    assert decoder.proj_in.in_features == 32 and decoder.up_blocks[0][0].time_emb_proj.in_features == 8  # blocks read the class only
    code, maps = torch.randn(2, 32), {}
    decoder.proj_in.register_forward_hook(lambda module, args, out: maps.setdefault(len(maps), out))
    images = [decoder(code, class_labels=torch.tensor([label, label])).sample for label in (0, 2)]
    assert torch.equal(maps[0], maps[1])  # the layout map does not see the class
    assert (images[0] - images[1]).abs().max() > 1e-4  # the modulation does
    with pytest.raises(ValueError, match="class_conditioning"):
        ConceptDecoder(code_dim=32, block_out_channels=(16, 16), norm_num_groups=4, num_class_embeds=3, class_conditioning="input")
