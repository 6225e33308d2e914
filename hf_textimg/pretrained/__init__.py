"""Pipelines shipped inside the package: `save_pretrained` folders (JSON, safetensors, and the generated code files
that let them load with `trust_remote_code=True` without the package: `hf_textimg.remote_code`).

    from diffusers import DiffusionPipeline
    from hf_textimg.pretrained import pretrained_path   # importing hf_textimg registers the pipelines

    pipe = DiffusionPipeline.from_pretrained(pretrained_path())   # the default Shapes model

Each folder is exactly what the training script wrote (model_index.json, unet/, text_encoder/,
tokenizer/, scheduler/) plus its eval_results.json; `hf-textimg generate` and `hf-textimg demo`
use `DEFAULT_MODEL` when no `--model` is given.
"""

from __future__ import annotations

import shlex
from pathlib import Path

DEFAULT_MODEL = "shapes-diffusion-32"
EMOJI_DEMO_MODEL = "emoji-oneshot-32"  # the shipped emoji model `hf-textimg demo` draws a second grid with
# The shipped 4x super-resolution stage behind each shipped base model: `--size 128` on that base adds it, and the
# web app offers the pair as a cascade. emoji-superres-128 was trained on the text tower of the earlier emoji model
# (emoji-diffusion-32, in git history) and keeps that tower in the cascade (ConceptCascadePipeline's own_text_towers).
SUPERRES_STAGES = {"shapes-diffusion-32": "shapes-superres-128", "emoji-oneshot-32": "emoji-superres-128"}
PRETRAINED_DIR = Path(__file__).resolve().parent

# How the shipped default was made: the concept model whose text tower it starts from, then the command its model
# card and eval_results.json record, with the Shapes layout flags under their current name (`--shapes_canonical_layouts
# count relation` is what `--shapes_relation_layout canonical --shapes_count_layout canonical` was: the same
# configuration; tests/test_shipped_model.py checks that this command parses to the recorded one).
CONCEPT_COMMAND = (
    "python", "training/train_concept.py", "--output_dir", "outputs/concept-shapes", "--num_shapes_train", "50000",
    "--max_train_steps", "1500", "--max_train_minutes", "10", "--train_batch_size", "256", "--text_hidden_size", "128",
    "--text_num_layers", "2", "--vision_base_channels", "16", "--vision_num_stages", "3", "--learning_rate", "2e-3",
    "--lr_scheduler", "cosine", "--lr_warmup_steps", "50", "--validation_steps", "250", "--max_eval_samples", "1000",
)
DIFFUSION_COMMAND = (
    "python", "training/train_diffusion.py", "--concept_model_path", "outputs/concept-shapes", "--num_shapes_train", "50000",
    "--shapes_kind_probs", "0.35", "0.25", "0.15", "0.25", "--shapes_canonical_layouts", "count", "relation",
    "--prompt_normalization", "shapes_relations", "--train_batch_size", "64", "--mixed_precision", "bf16", "--use_ema",
    "--learning_rate", "1e-3", "--lr_scheduler", "cosine", "--lr_warmup_steps", "100", "--max_train_steps", "3200",
    "--validation_steps", "800", "--checkpointing_steps", "800", "--eval_prompts_per_category", "40",
    "--eval_guidance_scale", "2.0", "--snr_gamma", "0", "--train_text_encoder", "--text_encoder_lr", "1e-4",
    "--output_dir", "outputs/diffusion-count",
)
TRAIN_HINT = (
    "Train it with the project's scripts (about an hour on 2 CPU cores: the concept model stops at 10 minutes, the "
    f"diffusion model took 50):\n  {shlex.join(CONCEPT_COMMAND)}\n  {shlex.join(DIFFUSION_COMMAND)}\n"
    "then pass --model outputs/diffusion-count."
)


def available_models() -> list[str]:
    """Names of the shipped pipelines (folders holding a model_index.json)."""
    return sorted(p.parent.name for p in PRETRAINED_DIR.glob("*/model_index.json"))


def pretrained_path(name: str = DEFAULT_MODEL) -> Path:
    """The folder of a shipped pipeline, ready for `DiffusionPipeline.from_pretrained`.

    Raises FileNotFoundError (saying how to train one) when it is not there."""
    path = PRETRAINED_DIR / name
    if not (path / "model_index.json").is_file():
        shipped = ", ".join(available_models()) or "none"
        raise FileNotFoundError(f"The shipped model {name!r} is missing (no {path / 'model_index.json'}; shipped: {shipped}). {TRAIN_HINT}")
    return path


__all__ = ["DEFAULT_MODEL", "EMOJI_DEMO_MODEL", "PRETRAINED_DIR", "available_models", "pretrained_path"]
