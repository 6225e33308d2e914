"""End-to-end: a few real steps of `training/train_prior.py` on generated Shapes data, on a tiny concept model's frozen
towers; with a decoder, the combined unCLIP pipeline it writes."""

import json

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file
from transformers import AutoTokenizer

from hf_textimg.autoencoder import ConceptAutoencoder
from hf_textimg.concept import ConceptTextModel
from hf_textimg.decoder import ConceptDecoder
from hf_textimg.pipelines import ConceptPriorPipeline, ConceptUnCLIPPipeline, DecoderPipeline
from tiny_pipelines import save_tiny_concept_model
from training import train_prior

TINY = [
    "--dataset_name", "shapes", "--num_shapes_train", "256", "--num_shapes_eval", "32", "--max_eval_samples", "32",
    "--train_batch_size", "32", "--max_length", "16", "--checkpointing_steps", "1000", "--embedding_stats_samples", "128",
    "--prior_num_layers", "1", "--prior_num_attention_heads", "2", "--prior_attention_head_dim", "16",
    "--learning_rate", "3e-3", "--lr_warmup_steps", "2", "--lr_scheduler", "constant_with_warmup",
    "--eval_num_inference_steps", "3", "--eval_cosine_samples", "16", "--eval_batch_size", "16",
    "--eval_prompts_per_category", "1", "--validation_images_per_prompt", "1",
]


@pytest.fixture(scope="module")
def concept_dir(tmp_path_factory):
    """A tiny, untrained ConceptModel + tokenizer saved the way train_concept.py saves them."""
    return save_tiny_concept_model(tmp_path_factory.mktemp("concept"), text_hidden_size=24)


@pytest.fixture(scope="module")
def decoder_dir(concept_dir, tmp_path_factory):
    """A DecoderPipeline on the concept model's text tower, as train_decoder.py saves one (untrained decoder)."""
    folder = tmp_path_factory.mktemp("decoder")
    torch.manual_seed(1)
    decoder = ConceptDecoder(code_dim=32, noise_dim=4, block_out_channels=(16, 8), norm_num_groups=4)
    DecoderPipeline(AutoTokenizer.from_pretrained(concept_dir), ConceptTextModel.from_pretrained(concept_dir), decoder).save_pretrained(folder)
    (folder / "eval_results.json").write_text(json.dumps({"config": {"objective": "reconstruct", "concept_model_path": str(concept_dir)}}))
    return folder


def run(concept_dir, out, *extra, steps=30):
    return train_prior.main(TINY + ["--concept_model_path", str(concept_dir), "--output_dir", str(out),
                                    "--max_train_steps", str(steps), "--validation_steps", str(steps), *extra])


def mean_loss(result, sl):
    values = [loss for _, loss in result["loss_history"][sl]]
    return sum(values) / len(values)


def test_a_few_steps_lower_the_loss_and_save_a_prior_pipeline(concept_dir, tmp_path):
    result = run(concept_dir, tmp_path, "--checkpointing_steps", "30")
    assert result["global_step"] == 30
    assert mean_loss(result, slice(-5, None)) < 0.7 * mean_loss(result, slice(0, 3))
    metrics = result["metrics"]
    assert {"val_loss", "val_cosine", "val_cosine_mean"} <= set(metrics)
    assert -1.0 <= metrics["val_cosine"] <= 1.0 and not any(k.startswith("shapes_") for k in metrics)  # no decoder: no images

    pipe = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(pipe) is ConceptPriorPipeline and not (tmp_path / "unclip").exists()
    # the standardisation was measured on the training images' codes and ships in the prior's weights (and checkpoints)
    weights = load_file(tmp_path / "prior" / "diffusion_pytorch_model.safetensors")
    assert not torch.equal(weights["clip_std"], torch.ones_like(weights["clip_std"])) and weights["clip_std"].min() > 0
    assert torch.equal(load_file(tmp_path / "checkpoint-30" / "prior.safetensors")["clip_mean"], weights["clip_mean"])
    out = pipe("a red circle", num_images_per_prompt=3, num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    assert out.image_embeds.shape == (3, 32) and torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(3))  # unit-norm, as the tower's codes
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert saved["config"]["cond_dropout"] == 0.1 and "val_cosine" in saved["metrics"]
    assert (tmp_path / "README.md").is_file()


def test_cached_image_concepts_train_exactly_as_concepts_computed_at_every_step(concept_dir, tmp_path):
    """--cache_image_codes (the default) attaches each image's concept to its row: the same losses, step for step, as
    running the frozen encoder on every batch; a streamed split computes them per batch and trains too."""
    cached = run(concept_dir, tmp_path / "cached", steps=8)
    computed = run(concept_dir, tmp_path / "computed", "--cache_image_codes", "false", steps=8)
    assert torch.allclose(torch.tensor(cached["loss_history"]), torch.tensor(computed["loss_history"]), rtol=1e-4, atol=1e-5)
    streamed = run(concept_dir, tmp_path / "streamed", "--streaming", steps=8)
    assert streamed["global_step"] == 8 and mean_loss(streamed, slice(-3, None)) < mean_loss(streamed, slice(0, 3))


def test_resume_continues_the_run_with_its_statistics(concept_dir, tmp_path):
    first = run(concept_dir, tmp_path / "a", "--checkpointing_steps", "4", "--embedding_stats_samples", "64", steps=8)
    resumed = run(concept_dir, tmp_path / "b", "--embedding_stats_samples", "200",  # other statistics: the checkpoint's win
                  "--resume_from_checkpoint", str(tmp_path / "a" / "checkpoint-4"), steps=8)
    assert resumed["loss_history"][0][0] == 5 and resumed["global_step"] == 8
    a, b = (load_file(tmp_path / d / "prior" / "diffusion_pytorch_model.safetensors") for d in ("a", "b"))
    assert torch.equal(a["clip_std"], b["clip_std"]) and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_with_a_decoder_it_writes_and_scores_the_combined_pipeline(concept_dir, decoder_dir, tmp_path):
    result = run(concept_dir, tmp_path, "--decoder_path", str(decoder_dir), steps=6)
    assert {"shapes_single", "shapes_heldout", "shapes_overall"} <= set(result["metrics"])
    unclip_dir = tmp_path / "unclip"
    assert (unclip_dir / "validation" / "step-6.png").is_file() and (unclip_dir / "README.md").is_file()
    assert "shapes_overall" in json.loads((unclip_dir / "eval_results.json").read_text())["metrics"]
    pipe = DiffusionPipeline.from_pretrained(unclip_dir)
    assert type(pipe) is ConceptUnCLIPPipeline
    pipe.set_progress_bar_config(disable=True)
    images = pipe(["a red circle", "two blue squares"], num_images_per_prompt=2, num_inference_steps=3,
                  generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (4, 32, 32, 3)
    # the combined pipeline's decoder is the one given, unchanged
    given = load_file(decoder_dir / "decoder" / "diffusion_pytorch_model.safetensors")
    shipped = load_file(unclip_dir / "decoder" / "diffusion_pytorch_model.safetensors")
    assert given.keys() == shipped.keys() and all(torch.equal(given[k], shipped[k]) for k in given)


def test_an_autoencoder_gives_the_image_concepts_and_the_decoder(concept_dir, tmp_path):
    ae_dir = tmp_path / "ae"
    ConceptAutoencoder(code_dim=48, encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), norm_num_groups=4).save_pretrained(ae_dir)
    result = run(concept_dir, tmp_path / "out", "--autoencoder_path", str(ae_dir), "--decoder_path", str(ae_dir),
                 "--unclip_output_dir", str(tmp_path / "combined"), "--eval_prompts_per_category", "0", steps=6)
    assert result["global_step"] == 6
    pipe = ConceptUnCLIPPipeline.from_pretrained(tmp_path / "combined")
    assert pipe.prior.config.embedding_dim == 48 and pipe.decoder.config.code_dim == 48  # the auto-encoder's width, not the text tower's 32


@pytest.mark.parametrize(
    "extra, flag",
    [
        ([], "--concept_model_path"),
        (["--unclip_output_dir", "x"], "--unclip_output_dir"),
        (["--cond_dropout", "1"], "--cond_dropout"),
        (["--prior_num_layers", "0"], "--prior_num_layers"),
        (["--eval_guidance_scale", "-1"], "--eval_guidance_scale"),
        (["--max_length", "32"], "--max_length"),
        (["--caption_column", ""], "--caption_column"),
    ],
)
def test_bad_arguments_name_the_flag(concept_dir, tmp_path, extra, flag):
    args = TINY + ["--output_dir", str(tmp_path)] + extra
    if flag != "--concept_model_path":
        args += ["--concept_model_path", str(concept_dir)]
    with pytest.raises(ValueError, match=flag):
        train_prior.main(args)


def test_a_decoder_of_another_width_is_refused_before_training(concept_dir, tmp_path):
    ae_dir = tmp_path / "ae"
    ConceptAutoencoder(code_dim=16, encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), norm_num_groups=4).save_pretrained(ae_dir)
    with pytest.raises(ValueError, match="--decoder_path"):
        run(concept_dir, tmp_path / "out", "--decoder_path", str(ae_dir), steps=2)
