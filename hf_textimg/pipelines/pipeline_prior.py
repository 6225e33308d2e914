"""The unCLIP prior as a pipeline: caption -> image concepts (`image_embeds`), as diffusers' `KandinskyV22PriorPipeline`.

    import torch
    from diffusers import DiffusionPipeline
    import hf_textimg  # registers the pipelines with diffusers

    prior = DiffusionPipeline.from_pretrained("outputs/prior-shapes")            # a ConceptPriorPipeline
    out = prior(["a red circle", "two blue squares"], num_images_per_prompt=8, generator=torch.Generator().manual_seed(0))
    out.image_embeds            # (16, D): one image concept per image, prompt 0's first
    out.negative_image_embeds   # (16, D): the "no caption in particular" concept (see __call__)

The image concepts are codes of the frozen image encoder the prior was trained on (a concept model's image tower or an
auto-encoder's encoder), which a decoder trained to render those codes turns into pixels (`DecoderPipeline(image_embeds=...)`,
or both in one `ConceptUnCLIPPipeline`). A caption leaves things open (where an object goes, how big it is); the prior
samples them, so images of one prompt differ from seed to seed. The model is diffusers' `PriorTransformer`; the glue to
our text tower and the choices behind it are in `hf_textimg.prior`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, PriorTransformer, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from transformers import PreTrainedModel
from ..data.prompts import check_prompt_normalization
from ..prior.prior_transformer import check_text_width, prior_kwargs
from ..utils.checks import check_finite_images, check_generator, check_int, check_number, check_tensor
from .checks import set_checked_timesteps
from .pipeline_utils import TextToImageMixin, register_with_diffusers
from .prompt_embeds import ConceptPromptEmbeds, encode_concept

EMBEDS_OUTPUT_TYPES = ("pt", "np")


@dataclass
class ConceptPriorPipelineOutput(BaseOutput):
    """What the prior pipeline returns: the fields of diffusers' `KandinskyPriorPipelineOutput` (not imported from
    there: that module imports transformers' CLIP image processor, which warns at import time without torchvision).

    Args:
        image_embeds (`torch.Tensor` of shape (images, D)): sampled image concepts, one row per image.
        negative_image_embeds (`torch.Tensor` of shape (images, D)): the concept of no caption in particular.
    """

    image_embeds: torch.Tensor
    negative_image_embeds: torch.Tensor


def check_prior_components(tokenizer, text_encoder: PreTrainedModel, prior: PriorTransformer) -> None:
    """ValueError unless `prior` reads what `text_encoder` (and `tokenizer`, when given) make: the concept width, token
    states no wider than the image embedding, and captions of `num_embeddings` tokens."""
    concept_width = prior.config.embedding_proj_dim or prior.config.embedding_dim
    if text_encoder.config.projection_dim != concept_width:
        raise ValueError(
            f"text_encoder makes {text_encoder.config.projection_dim}-d concepts but the prior reads {concept_width}-d ones "
            "(prior.config.embedding_proj_dim); train the prior on this text tower."
        )
    check_text_width(text_encoder.config.hidden_size, prior.config.embedding_dim)
    if tokenizer is not None and tokenizer.model_max_length != prior.config.num_embeddings:
        raise ValueError(
            f"The tokenizer pads captions to {tokenizer.model_max_length} tokens but the prior reads {prior.config.num_embeddings} "
            "(prior.config.num_embeddings); set tokenizer.model_max_length to it (training's --max_length)."
        )


class ConceptPriorPipeline(TextToImageMixin, DiffusionPipeline):
    r"""Caption -> image concepts, by denoising in the image encoder's code space.

    Components:
        tokenizer ([`~transformers.PreTrainedTokenizerFast`]): the caption tokenizer of the text tower.
        text_encoder ([`ConceptTextModel`] or a CLIP text tower with projection): caption -> token states (B, L, H)
            and unit-norm concept (B, P).
        prior ([`~diffusers.PriorTransformer`]): predicts the clean standardised image embedding (B, D) from a noisy
            one, the timestep and the caption; holds the standardisation (`clip_mean`, `clip_std`).
        scheduler ([`~diffusers.SchedulerMixin`]): `DDPMScheduler` with `prediction_type="sample"` as trained (any
            diffusers scheduler made `from_config` of it takes its place).
        prompt_normalization (`str`, *optional*): the rewrite training applied to every caption (`hf_textimg.data.prompts`).
        normalize_image_embeds (`bool`, defaults to `True`): project samples onto the unit sphere, where the image
            encoder's codes live (False for an encoder with unnormalised codes).
    """

    model_cpu_offload_seq = "text_encoder->prior"

    def __init__(
        self, tokenizer, text_encoder: PreTrainedModel, prior: PriorTransformer, scheduler: SchedulerMixin,
        prompt_normalization: str | None = None, normalize_image_embeds: bool = True,
    ):
        super().__init__()
        check_prompt_normalization(prompt_normalization)
        if text_encoder is not None and prior is not None:
            check_prior_components(tokenizer, text_encoder, prior)
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, prior=prior, scheduler=scheduler)
        self.register_to_config(prompt_normalization=prompt_normalization, normalize_image_embeds=bool(normalize_image_embeds))

    @property
    def image_embeds_dim(self) -> int:
        """D, the width of the image concepts this prior makes (the decoder's `code_dim`)."""
        return self.prior.config.clip_embed_dim or self.prior.config.embedding_dim

    # -- stages --------------------------------------------------------------------------------
    def check_inputs(
        self, prompt, negative_prompt, num_images_per_prompt, num_inference_steps, guidance_scale, generator, latents, output_type
    ) -> int:
        """Raise a ValueError naming the argument for anything that cannot work; return the number of prompts."""
        batch_size = len(self.check_prompt(prompt))
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            if len(self.check_prompt(negative_prompt, "negative_prompt")) != batch_size:
                raise ValueError(f"`negative_prompt` has {len(negative_prompt)} entries for {batch_size} prompts; pass one per prompt or a single string.")
        check_int(num_images_per_prompt, "`num_images_per_prompt`")
        check_int(num_inference_steps, "`num_inference_steps`")
        check_number(guidance_scale, "`guidance_scale`", minimum=0)
        num_images = batch_size * num_images_per_prompt
        check_generator(generator, num_images)
        if isinstance(generator, (list, tuple)) and len(generator) != num_images:
            raise ValueError(f"Got a list of {len(generator)} generators for {num_images} image embeddings; pass one per image or a single generator.")
        if latents is not None:
            check_tensor(latents, "`latents`", (num_images, self.image_embeds_dim))
        if output_type not in EMBEDS_OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {EMBEDS_OUTPUT_TYPES} (image embeddings, as KandinskyV22PriorPipeline), got {output_type!r}.")
        return batch_size

    @torch.no_grad()
    def encode_prompt(
        self, prompt: str | list[str], num_images_per_prompt: int = 1, do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
    ) -> tuple[ConceptPromptEmbeds, ConceptPromptEmbeds | None]:
        """The caption conditioning and (with guidance) the unconditional one, one row per image embedding. The
        unconditional caption is `negative_prompt`, by default the empty caption training dropped captions to."""
        prompts = self.check_prompt(prompt)
        cond = encode_concept(self.text_encoder, **self.tokenize_prompt(prompts))
        uncond = None
        if do_classifier_free_guidance:
            negative = "" if negative_prompt is None else negative_prompt
            negative = [negative] * len(prompts) if isinstance(negative, str) else negative
            uncond = encode_concept(self.text_encoder, **self.tokenize_prompt(self.check_prompt(negative, "negative_prompt")))
            uncond = uncond.to(self._execution_device, self.prior.dtype).repeat_interleave(num_images_per_prompt)
        return cond.to(self._execution_device, self.prior.dtype).repeat_interleave(num_images_per_prompt), uncond

    def prepare_latents(self, num_images: int, generator, latents: torch.Tensor | None) -> torch.Tensor:
        """Starting noise (num_images, D) in the standardised space; with a list of generators, row i from generator i."""
        if latents is None:
            latents = randn_tensor((num_images, self.image_embeds_dim), generator=generator, device=self._execution_device, dtype=self.prior.dtype)
        return latents.to(device=self._execution_device, dtype=self.prior.dtype) * self.scheduler.init_noise_sigma

    def predict(self, latents: torch.Tensor, t, cond: ConceptPromptEmbeds, uncond: ConceptPromptEmbeds | None, guidance_scale: float) -> torch.Tensor:
        """The (guided) clean-embedding prediction at timestep `t`, (N, D)."""
        if uncond is None:
            return self.model_output(self.scheduler.scale_model_input(latents, t), t, cond)
        sample = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)  # (2N, D)
        pred_uncond, pred_cond = self.model_output(sample, t, ConceptPromptEmbeds.cat([uncond, cond])).chunk(2)
        return pred_uncond + guidance_scale * (pred_cond - pred_uncond)

    def model_output(self, sample: torch.Tensor, t, embeds: ConceptPromptEmbeds) -> torch.Tensor:
        kwargs = prior_kwargs(self.prior, embeds.token_states, embeds.attention_mask, embeds.concept)
        return self.prior(sample, timestep=t, **kwargs).predicted_image_embedding

    def denoise(self, latents, cond, uncond, guidance_scale: float, generator) -> torch.Tensor:
        """Run the scheduler's timesteps from `latents` (N, D); the result is in the standardised space."""
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}
        with self.progress_bar(total=len(self.scheduler.timesteps)) as progress_bar:
            for t in self.scheduler.timesteps:
                model_output = self.predict(latents, t, cond, uncond, guidance_scale)
                latents = self.scheduler.step(model_output, t, latents, **step_kwargs, return_dict=False)[0]
                progress_bar.update()
        return latents

    def postprocess_embeds(self, latents: torch.Tensor) -> torch.Tensor:
        """Standardised samples (N, D) -> image embeddings: undo the standardisation, then (by default) unit norm."""
        embeds = self.prior.post_process_latents(latents)
        return F.normalize(embeds, dim=-1) if self.config.normalize_image_embeds else embeds

    def mean_image_embeds(self, num_images: int) -> torch.Tensor:
        """(num_images, D): the training images' mean embedding (through `postprocess_embeds`), the centre of what
        the prior samples from."""
        zeros = torch.zeros(num_images, self.image_embeds_dim, device=self._execution_device, dtype=self.prior.dtype)
        return self.postprocess_embeds(zeros)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int = 25,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        guidance_scale: float = 4.0,
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> ConceptPriorPipelineOutput | tuple:
        r"""Sample image concepts for `prompt`, with the arguments and output of diffusers' `KandinskyV22PriorPipeline`.

        Args:
            prompt (`str` or `list[str]`): caption(s).
            negative_prompt (`str` or `list[str]`, *optional*): the unconditional caption of guidance; default `""`.
            num_images_per_prompt (`int`, defaults to 1): image concepts per caption, prompt 0's first.
            num_inference_steps (`int`, defaults to 25): denoising steps.
            generator (`torch.Generator` or one per image concept, *optional*): the starting noise and the sampler's noise.
            latents (`torch.Tensor` of shape (images, D), *optional*): starting noise, in the standardised space.
            guidance_scale (`float`, defaults to 4.0): classifier-free guidance weight; <= 1 disables guidance.
            output_type (`str`, defaults to `"pt"`): `"pt"` (tensors) or `"np"` (arrays).
            return_dict (`bool`, defaults to `True`): a `ConceptPriorPipelineOutput` rather than a tuple.

        Returns:
            `ConceptPriorPipelineOutput` (or the tuple `(image_embeds, negative_image_embeds)`): `image_embeds` (images, D),
            the sampled concepts; `negative_image_embeds` (images, D), the training images' mean concept, which plays the
            part of Kandinsky's embedding of a blank image (the decoder pipelines accept it for Kandinsky's calling
            convention; a one-shot decoder has no guidance to use it for).
        """
        # 1. Check inputs
        batch_size = self.check_inputs(prompt, negative_prompt, num_images_per_prompt, num_inference_steps, guidance_scale, generator, latents, output_type)
        num_images = batch_size * num_images_per_prompt
        # 2. Encode the captions (and the unconditional caption for guidance), one row per image concept
        cond, uncond = self.encode_prompt(prompt, num_images_per_prompt, guidance_scale > 1.0, negative_prompt)
        # 3. Timesteps, and the starting noise of every image concept
        set_checked_timesteps(self.scheduler, num_inference_steps, self._execution_device)
        latents = self.prepare_latents(num_images, generator, latents)  # (N, D)
        # 4. Denoise in the standardised space, then back to image-encoder codes
        latents = self.denoise(latents, cond, uncond, float(guidance_scale), generator)
        check_finite_images(latents, f"as image embeddings from the prior after {num_inference_steps} steps of {type(self.scheduler).__name__}")
        image_embeds, negative_image_embeds = self.postprocess_embeds(latents), self.mean_image_embeds(num_images)
        if output_type == "np":
            image_embeds, negative_image_embeds = image_embeds.float().cpu().numpy(), negative_image_embeds.float().cpu().numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return (image_embeds, negative_image_embeds)
        return ConceptPriorPipelineOutput(image_embeds=image_embeds, negative_image_embeds=negative_image_embeds)


register_with_diffusers(ConceptPriorPipeline)

__all__ = ["ConceptPriorPipeline", "ConceptPriorPipelineOutput", "check_prior_components"]
