"""Pipelines shipped inside the package: `save_pretrained` folders (JSON + safetensors only).

    from diffusers import DiffusionPipeline
    from hf_textimg.pretrained import pretrained_path   # importing hf_textimg registers the pipelines

    pipe = DiffusionPipeline.from_pretrained(pretrained_path())   # the default Shapes model

Each folder is exactly what the training script wrote (model_index.json, unet/, text_encoder/,
tokenizer/, scheduler/) plus its eval_results.json; `hf-textimg generate` and `hf-textimg demo`
use `DEFAULT_MODEL` when no `--model` is given.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "shapes-diffusion-32"
PRETRAINED_DIR = Path(__file__).resolve().parent

# How the shipped default was made (README, "Diffusion"); shown when its folder is missing.
TRAIN_HINT = (
    "Train one with the project's scripts (about 40 CPU minutes):\n"
    "  python training/train_concept.py --output_dir outputs/concept-shapes --max_train_minutes 10\n"
    "  python training/train_diffusion.py --concept_model_path outputs/concept-shapes --use_ema "
    "--max_train_minutes 28 --output_dir outputs/diffusion-shapes\n"
    "then pass --model outputs/diffusion-shapes (the README's 'Diffusion' section has the exact flags)."
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


__all__ = ["DEFAULT_MODEL", "PRETRAINED_DIR", "available_models", "pretrained_path"]
