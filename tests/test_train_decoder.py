"""End-to-end: a few real steps of `training/train_decoder.py` per objective on generated Shapes data."""

import json

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

from hf_textimg.autoencoder import ConceptAutoencoder
from hf_textimg.pipelines.pipeline_decoder import DecoderPipeline
from tiny_pipelines import save_tiny_concept_model
from training import train_decoder

TINY = [
    "--dataset_name", "shapes", "--num_shapes_train", "256", "--num_shapes_eval", "64", "--max_eval_samples", "64",
    "--train_batch_size", "32", "--max_length", "16", "--checkpointing_steps", "1000",
    "--decoder_block_out_channels", "16", "16", "8", "--norm_num_groups", "4",
    "--learning_rate", "3e-3", "--lr_warmup_steps", "2", "--lr_scheduler", "constant_with_warmup",
]


@pytest.fixture(scope="module")
def concept_dir(tmp_path_factory):
    """A tiny, untrained ConceptModel + tokenizer saved the way train_concept.py saves them."""
    return save_tiny_concept_model(tmp_path_factory.mktemp("concept"))


def run(concept_dir, out, *extra, steps=12, capture=None, monkeypatch=None):
    if capture is not None:  # keep the frozen image encoder the script builds, to inspect it afterwards
        load = train_decoder.load_image_encoder
        monkeypatch.setattr(train_decoder, "load_image_encoder", lambda cfg: capture.setdefault("image_encoder", load(cfg)))
    return train_decoder.main(TINY + ["--concept_model_path", str(concept_dir), "--output_dir", str(out),
                                      "--max_train_steps", str(steps), "--validation_steps", str(steps), *extra])


def mean_loss(result, sl):
    values = [loss for _, loss in result["loss_history"][sl]]
    return sum(values) / len(values)


@pytest.mark.parametrize("objective", ["reconstruct", "consistency", "both"])
def test_each_objective_lowers_its_loss(concept_dir, tmp_path, objective):
    result = run(concept_dir, tmp_path, "--objective", objective, "--noise_dim", "4", "--kl_weight", "1e-3", "--checkpointing_steps", "12")
    assert result["global_step"] == 12
    assert mean_loss(result, slice(-3, None)) < 0.8 * mean_loss(result, slice(0, 3))
    terms = {"reconstruct": {"reconstruct", "kl_reconstruct"}, "consistency": {"consistency", "pixel", "kl"},
             "both": {"reconstruct", "kl_reconstruct", "consistency", "pixel", "kl"}}
    assert {f"val_{term}" for term in terms[objective]} <= set(result["metrics"])
    # the training-only posterior encoder is checkpointed (resume) but is not part of the pipeline
    assert (tmp_path / "checkpoint-12" / "posterior.safetensors").is_file() and not (tmp_path / "posterior").exists()


def test_consistency_keeps_the_image_encoder_frozen_and_saves_a_pipeline(concept_dir, tmp_path, monkeypatch):
    captured = {}
    result = run(concept_dir, tmp_path, "--objective", "consistency", "--train_text_encoder", "--pixel_weight", "0.5",
                 "--noise_dim", "4", "--noise_objective", "imle", "--noise_samples", "3", "--eval_prompts_per_category", "2", capture=captured, monkeypatch=monkeypatch)
    assert mean_loss(result, slice(-3, None)) < mean_loss(result, slice(0, 3))

    # The image encoder the loss back-propagated through is bit-identical to the saved one ...
    saved = load_file(concept_dir / "model.safetensors")
    encoder = captured["image_encoder"]
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    assert all(torch.equal(value, saved[f"vision_model.{name}"]) for name, value in encoder.state_dict().items())
    # ... while the text tower (trained here) moved.
    pipe = DecoderPipeline.from_pretrained(tmp_path)
    moved = [not torch.equal(v, saved[f"text_model.{k}"]) for k, v in pipe.text_encoder.state_dict().items()]
    assert any(moved)

    # The output folder is a complete pipeline, under either class, with the scorer's results.
    assert {"tokenizer", "text_encoder", "decoder", "model_index.json"} <= {p.name for p in tmp_path.iterdir()}
    assert type(DiffusionPipeline.from_pretrained(tmp_path)) is DecoderPipeline
    images = pipe(["a red circle", "two blue squares"], num_images_per_prompt=2, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.shape == (4, 3, 32, 32)
    metrics = json.loads((tmp_path / "eval_results.json").read_text())["metrics"]
    assert {"shapes_single", "shapes_color", "shapes_position", "shapes_heldout", "shapes_overall"} <= set(metrics)


def test_deterministic_decoder_with_shift_tolerant_loss_on_canonical_layouts(concept_dir, tmp_path):
    """The one-shot recipe: no noise, a pixel loss that forgives Shapes' 1 px jitter, canonical layouts (and the
    code read by every decoder block)."""
    result = run(concept_dir, tmp_path, "--objective", "both", "--train_text_encoder", "--noise_dim", "0", "--pixel_shift_tolerance", "1",
                 "--shapes_canonical_layouts", "single", "pair", "--eval_prompts_per_category", "1",
                 "--decoder_code_conditioning", "scale_shift")
    assert mean_loss(result, slice(-3, None)) < 0.8 * mean_loss(result, slice(0, 3))
    assert not any(name.startswith("val_kl") for name in result["metrics"])  # no noise, no posterior
    pipe = DecoderPipeline.from_pretrained(tmp_path)
    assert pipe.decoder.config.noise_dim == 0 and pipe.decoder.config.code_conditioning == "scale_shift"
    first, second = (pipe("a red circle", generator=torch.Generator().manual_seed(s), output_type="pt").images for s in (0, 1))
    assert torch.equal(first, second)  # one image per prompt, whatever the seed
    config = json.loads((tmp_path / "eval_results.json").read_text())["config"]
    assert config["pixel_shift_tolerance"] == 1 and config["shapes_canonical_layouts"] == ["single", "pair"]


def test_reconstruct_with_the_consistency_loss_on_image_codes(concept_dir, tmp_path):
    """The unCLIP route's decoder: image codes only, the drawing encoding back to its code (--reconstruct_consistency_weight)."""
    result = run(concept_dir, tmp_path, "--objective", "reconstruct", "--noise_dim", "0", "--reconstruct_consistency_weight", "1",
                 "--eval_prompts_per_category", "0")
    assert {"val_reconstruct", "val_reconstruct_consistency"} <= set(result["metrics"])
    assert mean_loss(result, slice(-3, None)) < 0.8 * mean_loss(result, slice(0, 3))
    with pytest.raises(ValueError, match="--reconstruct_consistency_weight"):
        run(concept_dir, tmp_path / "bad", "--objective", "consistency", "--reconstruct_consistency_weight", "1")


def test_reconstruct_through_an_autoencoder_encoder(concept_dir, tmp_path):
    ae_dir = tmp_path / "ae"
    ConceptAutoencoder(code_dim=32, encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), norm_num_groups=4).save_pretrained(ae_dir)
    result = run(concept_dir, tmp_path / "out", "--objective", "reconstruct", "--autoencoder_path", str(ae_dir), steps=8)
    assert mean_loss(result, slice(-2, None)) < mean_loss(result, slice(0, 2))


@pytest.mark.parametrize(
    "extra, flag",
    [
        ([], "--concept_model_path"),
        (["--noise_objective", "imle", "--noise_dim", "0", "--noise_samples", "4"], "--noise_dim"),
        (["--caption_column", ""], "--caption_column"),
        (["--max_length", "32"], "--max_length"),
        (["--pixel_weight", "-1"], "--pixel_weight"),
        (["--pixel_shift_tolerance", "-1"], "--pixel_shift_tolerance"),
        (["--objective", "reconstruct", "--train_text_encoder"], "--train_text_encoder"),
        (["--objective", "consistency", "--text_encoder_lr", "1e-4"], "--text_encoder_lr"),
    ],
)
def test_bad_arguments_name_the_flag(concept_dir, tmp_path, extra, flag):
    args = TINY + ["--output_dir", str(tmp_path)] + extra
    if flag != "--concept_model_path":
        args += ["--concept_model_path", str(concept_dir)]
    with pytest.raises(ValueError, match=flag):
        train_decoder.main(args)


def test_text_encoder_lr_is_the_text_towers_own_rate(concept_dir, tmp_path):
    run(concept_dir, tmp_path, "--objective", "consistency", "--train_text_encoder", "--text_encoder_lr", "1e-9",
        "--eval_prompts_per_category", "1", steps=3)
    before, after = load_file(concept_dir / "model.safetensors"), load_file(tmp_path / "text_encoder" / "model.safetensors")
    text = {k.removeprefix("text_model."): v for k, v in before.items() if k.startswith("text_model.")}
    assert set(after) <= set(text)
    assert max((after[k] - text[k]).abs().max().item() for k in after) < 1e-7  # while the decoder trains at 3e-3


def test_class_column_names_and_captions_cut_by_the_template():
    import datasets

    from hf_textimg.training import parse_args

    data = datasets.Dataset.from_dict({"text": ["crab, noto style", "crab, fluent style", "a crab"], "style": ["noto", "fluent", "noto"]})
    alternatives = datasets.Dataset.from_dict({"text": [["crab, fluent style", "crab"]], "style": ["fluent"]})  # as --emoji_caption_style sometimes
    cfg = parse_args(train_decoder.DecoderTrainConfig, ["--concept_model_path", "x", "--output_dir", "out", "--class_column", "style",
                                                        "--class_prompt_template", "{prompt}, {class_name} style"])
    names = train_decoder.class_names_of(cfg, data)
    assert names == ["fluent", "noto"]
    assert train_decoder.captions_without_class(cfg, data, names)["text"] == ["crab", "crab", "a crab"]
    assert train_decoder.captions_without_class(cfg, alternatives, names)["text"] == [["crab", "crab"]]
    cfg.class_prompt_template = None  # without a template the captions are left as they are
    assert train_decoder.captions_without_class(cfg, data, names)["text"] == data["text"]
    with pytest.raises(ValueError, match="at least 2"):
        train_decoder.class_names_of(cfg, data.filter(lambda row: row["style"] == "noto"))
    with pytest.raises(ValueError, match="needs --class_column"):
        parse_args(train_decoder.DecoderTrainConfig, ["--concept_model_path", "x", "--output_dir", "out", "--class_prompt_template", "{prompt}, {class_name}"])
