"""Bring your own CLIP (hf_textimg.concept.clip): a transformers CLIPModel / CLIPTextModelWithProjection folder as the
text tower, in the pipelines and in training. The CLIP here is tiny, random, and built offline with its tokenizer."""

import json
import string

import pytest
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionConfig

from hf_textimg.concept.clip import is_clip_checkpoint, load_text_tower
from hf_textimg.diffusion import build_unet
from hf_textimg.pipelines import ConceptDiffusionPipeline
from tiny_pipelines import sampler

PROMPTS = ["a red circle at the top left", "two blue squares"]
HIDDEN, PROJECTION = 32, 24


def tiny_clip_tokenizer(folder) -> CLIPTokenizer:
    """A byte-level BPE vocabulary of single letters (word-final forms too) and a few whole words: enough for Shapes captions."""
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(string.ascii_lowercase + string.digits) + [c + "</w>" for c in string.ascii_lowercase + string.digits]
    merges = ["#version: 0.2", "r e", "re d</w>", "c i", "ci r", "cir c", "circ l", "circl e</w>"]
    tokens += ["re", "red</w>", "ci", "cir", "circ", "circl", "circle</w>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split()) for m in merges[1:]], model_max_length=16)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny random CLIPModel (both towers) saved with its tokenizer, as a Hub CLIP repository holds them."""
    folder = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = tiny_clip_tokenizer(folder)
    torch.manual_seed(0)
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                          max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=PROJECTION)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8,
                              projection_dim=PROJECTION)
    CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=PROJECTION)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def clip_pipeline(clip_folder, cross_attention_dim=HIDDEN) -> ConceptDiffusionPipeline:
    torch.manual_seed(0)
    unet = build_unet(cross_attention_dim=cross_attention_dim, concept_dim=PROJECTION, block_out_channels=(16, 32), attention_head_dim=8, norm_num_groups=8)
    pipe = ConceptDiffusionPipeline(CLIPTokenizer.from_pretrained(clip_folder), load_text_tower(clip_folder), unet, sampler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_a_clip_model_folder_loads_as_its_text_tower(clip_folder, tmp_path):
    assert is_clip_checkpoint(clip_folder)
    tower = load_text_tower(clip_folder)
    full = CLIPModel.from_pretrained(clip_folder)
    assert type(tower) is CLIPTextModelWithProjection
    assert torch.equal(tower.text_projection.weight, full.text_projection.weight)
    tower.save_pretrained(tmp_path)  # a CLIPTextModelWithProjection folder loads the same
    assert is_clip_checkpoint(tmp_path) and type(load_text_tower(tmp_path)) is CLIPTextModelWithProjection


def test_pipeline_reads_token_states_and_the_projected_embedding(clip_folder, tmp_path):
    pipe = clip_pipeline(clip_folder)
    cond, _ = pipe.encode_prompt(PROMPTS, 1, False)
    batch = pipe.tokenizer(PROMPTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = pipe.text_encoder(**batch)
    assert torch.equal(cond.token_states, out.last_hidden_state)  # (B, L, 32) for cross-attention
    assert torch.allclose(cond.concept, F.normalize(out.text_embeds, dim=-1))  # (B, 24), the unit-norm concept
    images = pipe(PROMPTS, num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["text_encoder"] == ["transformers", "CLIPTextModelWithProjection"]
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(loaded(PROMPTS, num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0)).images, images)


def test_a_width_mismatch_names_both_widths(clip_folder):
    with pytest.raises(ValueError, match=r"hidden_size \(32\) must equal unet.config.cross_attention_dim \(16\)"):
        clip_pipeline(clip_folder, cross_attention_dim=16)


def test_training_on_a_clip_text_tower(clip_folder, tmp_path):
    from test_train_diffusion import TINY
    from training.train_diffusion import main

    result = main(TINY + ["--concept_model_path", str(clip_folder), "--max_train_steps", "3", "--validation_steps", "3",
                          "--checkpointing_steps", "3", "--output_dir", str(tmp_path)])
    assert result["global_step"] == 3
    pipe = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(pipe.text_encoder) is CLIPTextModelWithProjection
    assert pipe.unet.config.cross_attention_dim == HIDDEN and pipe.unet.config.projection_class_embeddings_input_dim == PROJECTION
    # frozen by default: the saved tower is the CLIP's own
    assert torch.equal(pipe.text_encoder.text_projection.weight, CLIPModel.from_pretrained(clip_folder).text_projection.weight)
