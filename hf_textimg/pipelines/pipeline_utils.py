"""What every hf-textimg pipeline shares: input checks, prompt tokenisation, output
conversion, and registration with diffusers.

`DiffusionPipeline.from_pretrained(folder)` looks the `_class_name` of `model_index.json`
up as an attribute of the `diffusers` module, so a pipeline class defined outside
diffusers is only found there if it is registered. `register_with_diffusers` does that,
and `import hf_textimg` calls it (as `import hf_textimg.concept` registers the concept
models with `AutoModel`). Folders saved now name their code files instead
(`hf_textimg.remote_code`), which `register_with_diffusers` maps back to the installed classes.
"""

from __future__ import annotations

import functools
import logging
import os

import torch
from diffusers.image_processor import VaeImageProcessor

from ..utils.safe_loading import PICKLE_SUFFIXES
from ..data.prompts import normalize_prompts
from ..remote_code import write_remote_code
from ..utils.checks import check_generator, check_int
from .checks import check_pipeline_folder

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def register_with_diffusers(*pipeline_classes, former_modules: tuple[str, ...] = ()) -> None:
    """Make `DiffusionPipeline.from_pretrained` resolve these classes by name, from a folder or the Hub.

    `former_modules`: modules that saved folders name for a component that has since moved; each must still
    export the class (e.g. `hf_textimg.autoencoder.modeling_autoencoder` exports `ConceptDecoder`)."""
    import typing

    import diffusers
    from diffusers.pipelines.pipeline_loading_utils import LOADABLE_CLASSES

    from ..remote_code import prefer_installed_code

    prefer_installed_code()  # folders naming our code files load without trust_remote_code
    # Folders saved before they carried code name their components ["hf_textimg.<module>", "<Class>"].
    former_modules = (*former_modules, "hf_textimg.concept.modeling_concept", "hf_textimg.decoder.modeling_decoder")
    for cls in pipeline_classes:
        # diffusers looks pipeline classes up in both (`DiffusionPipeline.from_pretrained`; its tools and tests)
        setattr(diffusers, cls.__name__, cls)
        setattr(diffusers.pipelines, cls.__name__, cls)
        # Our components are saved as ["hf_textimg.<module>", "<Class>"]. Loading a folder finds that module in
        # sys.modules, but downloading from the Hub first rejects any library missing from LOADABLE_CLASSES.
        hinted = [c.__module__ for c in typing.get_type_hints(cls.__init__).values() if getattr(c, "__module__", "").startswith("hf_textimg.")]
        for module in (*hinted, *former_modules):
            LOADABLE_CLASSES.setdefault(module, {})


class TextToImageMixin:
    """Shared pieces of `__call__` for pipelines with `tokenizer` and `text_encoder` components.

    Images inside a pipeline are (B, 3, H, W) tensors in [-1, 1].
    """

    _warned_truncation = False

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """`DiffusionPipeline.from_pretrained` reading safetensors only: a local component folder holding only
        pickle weights (`*.bin`) is refused with a ValueError naming it, and every component, diffusers' own
        U-Net included, loads with `use_safetensors=True`. (`DiffusionPipeline.from_pretrained(folder)` gets the
        same refusal from this package's models; diffusers' U-Net then follows diffusers' own default.)"""
        folder = str(pretrained_model_name_or_path)
        if os.path.isdir(folder):
            check_pipeline_folder(folder)  # model_index.json, component folders, whole safetensors: named errors
            for name in sorted(os.listdir(folder)):
                sub = os.path.join(folder, name)
                files = os.listdir(sub) if os.path.isdir(sub) else []
                pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
                if pickles and not any(f.endswith(".safetensors") for f in files):
                    raise ValueError(
                        f"{sub} holds only pickle weights ({', '.join(sorted(pickles))}); {cls.__name__} reads safetensors "
                        "only, since unpickling can run arbitrary code. Re-save the component with save_pretrained."
                    )
        kwargs.setdefault("use_safetensors", True)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def save_config(self, save_directory, *args, **kwargs):
        """`model_index.json`, then the code files that let the folder load with `trust_remote_code=True` where
        hf-textimg is not installed (`hf_textimg.remote_code`). diffusers' `save_pretrained` calls this after saving
        the components and before its `push_to_hub` upload, so the code goes up with the weights."""
        super().save_config(save_directory, *args, **kwargs)
        write_remote_code(save_directory)

    @functools.cached_property
    def image_processor(self) -> VaeImageProcessor:
        # Pixel-space models: no VAE and no resizing, only [-1, 1] -> output type conversion.
        return VaeImageProcessor(vae_scale_factor=1, do_resize=False, do_normalize=True)

    @staticmethod
    def check_prompt(prompt, name: str = "prompt") -> list[str]:
        """A str or a non-empty list of str -> list of str; anything else is a ValueError."""
        if isinstance(prompt, str):
            return [prompt]
        if not isinstance(prompt, (list, tuple)):
            raise ValueError(f"`{name}` must be a string or a list of strings, got {type(prompt).__name__}.")
        if len(prompt) == 0:
            raise ValueError(f"`{name}` is an empty list; pass at least one prompt.")
        for i, p in enumerate(prompt):
            if not isinstance(p, str):
                raise ValueError(f"`{name}[{i}]` must be a string, got {type(p).__name__}.")
        return list(prompt)

    @staticmethod
    def check_common_inputs(batch_size: int, num_images_per_prompt: int, generator, output_type: str) -> None:
        check_int(num_images_per_prompt, "`num_images_per_prompt`")
        if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        n = batch_size * num_images_per_prompt
        check_generator(generator, n)
        if isinstance(generator, (list, tuple)) and len(generator) != n:
            raise ValueError(
                f"Got a list of {len(generator)} generators for {n} images ({batch_size} prompts x "
                f"{num_images_per_prompt} images per prompt); pass one generator per image or a single generator."
            )

    def tokenize_prompt(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Fixed-length `input_ids`/`attention_mask` (B, L) on the pipeline's device, after the pipeline's
        `prompt_normalization` (hf_textimg.data.prompts). Prompts longer than the tokenizer's limit are
        truncated, with one warning per pipeline."""
        prompts = normalize_prompts(prompts, getattr(self.config, "prompt_normalization", None))
        max_length = self.tokenizer.model_max_length
        batch = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        if not self._warned_truncation:
            # verbose=False: this check is the one warning; transformers would add its own "indexing errors" one
            full = self.tokenizer(prompts, padding="longest", return_tensors="pt", verbose=False)["input_ids"]
            if full.shape[1] > max_length:
                logger.warning("A prompt is longer than the tokenizer's limit of %d tokens and was truncated.", max_length)
                self._warned_truncation = True
        return {k: v.to(self._execution_device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    def postprocess(self, images: torch.Tensor, output_type: str):
        """(B, 3, H, W) in [-1, 1] -> list of PIL images, (B, H, W, 3) numpy in [0, 1], or (B, 3, H, W) tensor in [0, 1];
        `"latent"`: the model's output itself, as diffusers pipelines return their latents (here pixels)."""
        if output_type == "latent":
            return images
        return self.image_processor.postprocess(images.detach().float().clamp(-1, 1), output_type=output_type)
