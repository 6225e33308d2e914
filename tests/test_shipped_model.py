"""The shipped model (`hf_textimg/pretrained/shapes-diffusion-32`) keeps drawing exactly what it drew.

`tests/data/shipped_model_images.npy` holds the images (float32, (8, 32, 32, 3) in [0, 1], `output_type="np"`) that
the code before the issue-18 restructuring generated with the settings below (fp32 on the CPU, torch 2.13, diffusers
0.42.1; bit-identical with 1 or 2 threads). Any change to the text tower, the U-Net's conditioning, the prompt
normalisation or the pipeline's sampling loop shows up here. Tolerance: 1e-5, not bit equality, so a CPU with other
vector instructions does not fail on float rounding (the images matched bit for bit when the file was made).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

import hf_textimg  # noqa: F401  (registers the pipeline)
from hf_textimg.pretrained import pretrained_path

REFERENCE = Path(__file__).parent / "data" / "shipped_model_images.npy"
# a relation the prompt normalisation rewrites, a count, a named size and position, a held-out colour-shape pair
PROMPTS = ["a blue square right of a red circle", "three green triangles", "a small orange plus at the top left", "a blue circle"]


def test_shipped_model_images_unchanged():
    pipe = DiffusionPipeline.from_pretrained(pretrained_path())
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    images = pipe(PROMPTS, num_images_per_prompt=2, num_inference_steps=5, generator=generator, output_type="np").images
    np.testing.assert_allclose(images, np.load(REFERENCE), rtol=0, atol=1e-5)


EMOJI_REFERENCE = Path(__file__).parent / "data" / "shipped_emoji_images.npy"
# seen emoji in two styles, a skin-tone variant, and a heldout_style emoji (seen only in other styles)
EMOJI_PROMPTS = ["red heart, noto style", "crab, openmoji style", "thumbs up: medium-dark skin tone, noto style", "anchor, noto style"]


def test_shipped_emoji_model_images_unchanged():
    """The shipped one-shot emoji model (`emoji-oneshot-32`, its decoder stored in float16) keeps drawing what it drew when
    it was shipped (2026-12-05, the same settings): a change to the text tower, the decoder or the pipeline shows here."""
    pipe = DiffusionPipeline.from_pretrained(pretrained_path("emoji-oneshot-32"))
    pipe.set_progress_bar_config(disable=True)
    assert pipe.decoder.dtype == torch.float32  # stored in float16, computed in float32
    images = pipe(EMOJI_PROMPTS, output_type="np").images
    np.testing.assert_allclose(images, np.load(EMOJI_REFERENCE), rtol=0, atol=1e-5)


def test_the_training_hint_gives_the_shipped_configuration(tmp_path, monkeypatch):
    """`hf_textimg.pretrained` prints how to train the shipped model when its folder is missing. Its diffusion command
    must parse to exactly the configuration the shipped eval_results.json records (the layout flags under their
    current name), and its concept command must build the shipped text tower's architecture."""
    import json

    import hf_textimg.pretrained as pretrained
    from hf_textimg.shapes import SCENE_KINDS, ShapesDataArguments
    from hf_textimg.training import config_to_dict, parse_args
    from training.train_concept import ConceptTrainConfig
    from training.train_diffusion import DiffusionTrainConfig

    monkeypatch.chdir(tmp_path)  # the commands' relative --output_dir
    recorded = json.loads((pretrained_path() / "eval_results.json").read_text())["config"]
    parsed = config_to_dict(parse_args(DiffusionTrainConfig, list(pretrained.DIFFUSION_COMMAND[2:]), ShapesDataArguments))
    # --shapes_<kind>_layout canonical, as the model was trained, is --shapes_canonical_layouts <kind> now
    assert parsed.pop("shapes_canonical_layouts") == [k for k in SCENE_KINDS if recorded.pop(f"shapes_{k}_layout", "any") == "canonical"]
    # added after the model was trained: 0 (stop at the first NaN loss) changes nothing for a run that never saw one
    assert parsed.pop("max_skipped_nonfinite_steps") == recorded.pop("max_skipped_nonfinite_steps", 0)
    # added with --streaming: unset chooses by size, and the shipped 50,000 32-px images were decoded into memory
    assert parsed.pop("quiet") is False  # added later: output only
    # added later (session 15): the in-run evaluation scored the benchmark, without variety; no self-conditioning
    assert (parsed.pop("eval_prompt_set"), parsed.pop("eval_diversity")) == ("benchmark", 0)
    assert (parsed.pop("self_conditioning"), parsed.pop("self_conditioning_prob")) == (False, 0.5)
    assert (parsed.pop("streaming"), parsed.pop("shuffle_buffer_size")) == (recorded.pop("streaming", None), recorded.pop("shuffle_buffer_size", 1000))
    assert parsed == recorded

    concept = parse_args(ConceptTrainConfig, list(pretrained.CONCEPT_COMMAND[2:]), ShapesDataArguments)
    shipped = json.loads((pretrained_path() / "text_encoder" / "config.json").read_text())
    built = {"hidden_size": concept.text_hidden_size, "num_layers": concept.text_num_layers, "num_heads": concept.text_num_heads,
             "intermediate_size": 4 * concept.text_hidden_size, "max_position_embeddings": concept.max_length,
             "projection_dim": concept.projection_dim, "encoder_type": concept.text_encoder_type}
    assert built == {k: shipped[k] for k in built}

    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="is missing") as missing:
        pretrained.pretrained_path()
    assert "--shapes_canonical_layouts count relation" in str(missing.value)
    assert " ".join(pretrained.DIFFUSION_COMMAND) in str(missing.value) and " ".join(pretrained.CONCEPT_COMMAND) in str(missing.value)
