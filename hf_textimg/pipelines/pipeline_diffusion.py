"""Text-to-image by denoising: caption -> text tower (token states + pooled concept) -> U-Net + scheduler.

    import torch
    from diffusers import DiffusionPipeline, DDPMScheduler
    import hf_textimg.pipelines.pipeline_diffusion  # registers the class with diffusers

    pipe = DiffusionPipeline.from_pretrained("outputs/diffusion-shapes")
    images = pipe(["a red circle at the top left", "two blue squares"], num_images_per_prompt=4,
                  generator=torch.Generator().manual_seed(0)).images
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)   # any diffusers scheduler
    images = pipe("a green plus", num_inference_steps=1000).images

Conditioning (`prompt_embeds` / `negative_prompt_embeds`): a [`ConceptPromptEmbeds`] holding the
text tower's token states `(B, L, H)` (cross-attention), their attention mask `(B, L)` and the pooled
unit-norm concept `(B, 512)` (added to the timestep embedding). `encode_prompt` returns them; pass
them back to reuse an encoding or to edit it (e.g. mix two concepts). The unconditional branch of
classifier-free guidance is the encoding of the empty caption `""`, exactly what training's
condition dropout (`--cond_dropout`) showed the U-Net, so `negative_prompt` is just another caption.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from diffusers import DiffusionPipeline, LCMScheduler, SchedulerMixin, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from transformers import PreTrainedModel
from ..data.prompts import check_prompt_normalization
from ..diffusion.unet import clean_estimate, downsample_factor, guidance_scale_embedding, is_self_conditioned, unet_input
from ..utils.checks import check_finite_images, check_int, check_number, check_tensor
from ..utils.resolution import check_resolution
from .checks import check_image_size, set_checked_timesteps
from .chunking import concat_outputs, default_max_batch_size, image_chunks, step_generators
from .pipeline_utils import TextToImageMixin, register_with_diffusers
from .prompt_embeds import ConceptPromptEmbeds, encode_concept


def check_widths(text_encoder: PreTrainedModel, unet: UNet2DConditionModel) -> None:
    """The U-Net must read what the text encoder writes: its token states and its concept."""
    if text_encoder.config.hidden_size != unet.config.cross_attention_dim:
        raise ValueError(
            f"text_encoder.config.hidden_size ({text_encoder.config.hidden_size}) must equal "
            f"unet.config.cross_attention_dim ({unet.config.cross_attention_dim})."
        )
    if text_encoder.config.projection_dim != unet.config.projection_class_embeddings_input_dim:
        raise ValueError(
            f"text_encoder.config.projection_dim ({text_encoder.config.projection_dim}) must equal "
            f"unet.config.projection_class_embeddings_input_dim ({unet.config.projection_class_embeddings_input_dim})."
        )


def _rows(prompts_or_embeds, first: int, last: int):
    """Prompts first..last-1 of a list of prompts or a ConceptPromptEmbeds (None stays None)."""
    if prompts_or_embeds is None or isinstance(prompts_or_embeds, (list, tuple)):
        return None if prompts_or_embeds is None else list(prompts_or_embeds[first:last])
    return prompts_or_embeds.map(lambda t: t[first:last])


class ConceptDiffusionPipeline(TextToImageMixin, DiffusionPipeline):
    r"""Generate images by iterative denoising in pixel space, conditioned on a caption's concept.

    Components:
        tokenizer ([`~transformers.PreTrainedTokenizerFast`]): the caption tokenizer the text tower was trained with.
        text_encoder ([`ConceptTextModel`]): caption -> token states (B, L, H) and unit-norm concept (B, 512).
        unet ([`~diffusers.UNet2DConditionModel`]): predicts noise (or v) from a noisy image, the timestep and the
            conditioning; `cross_attention_dim == text_encoder.config.hidden_size` and
            `projection_class_embeddings_input_dim == text_encoder.config.projection_dim`.
        scheduler ([`~diffusers.SchedulerMixin`]): DDPM, DDIM, DPMSolverMultistep, Euler, UniPC, ... built with
            `from_config` from the saved one (which keeps the training betas and `prediction_type`).
        prompt_normalization (`str`, *optional*): the rewrite training applied to every caption (see
            `hf_textimg.data.prompts`); applied to `prompt` and `negative_prompt` before tokenizing.
    """

    model_cpu_offload_seq = "text_encoder->unet"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self, tokenizer, text_encoder: PreTrainedModel, unet: UNet2DConditionModel, scheduler: SchedulerMixin,
        prompt_normalization: str | None = None,
    ):
        super().__init__()
        check_prompt_normalization(prompt_normalization)
        if text_encoder is not None and unet is not None:  # any component may be None, e.g. to only encode prompts
            self.check_components(text_encoder, unet)
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler)
        self.register_to_config(prompt_normalization=prompt_normalization)

    @staticmethod
    def check_components(text_encoder: PreTrainedModel, unet: UNet2DConditionModel) -> None:
        """ValueError unless `unet` reads what `text_encoder` gives (subclasses with other U-Nets override this)."""
        check_widths(text_encoder, unet)

    # -- state read by callbacks (the names diffusers' callbacks use) -------------------------
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        # A guidance-distilled U-Net (`time_cond_proj_dim`) takes the scale as an input and needs no second row,
        # as in diffusers' Stable Diffusion and LCM pipelines.
        return self._guidance_scale > 1.0 and not self.guidance_embedded

    @property
    def guidance_embedded(self) -> bool:
        """Whether the U-Net reads the guidance scale as an input (`timestep_cond`; training/train_distill.py)."""
        return self.unet is not None and self.unet.config.get("time_cond_proj_dim") is not None

    @property
    def self_conditioned(self) -> bool:
        """Whether the U-Net reads its previous clean-image estimate (`hf_textimg.diffusion.unet`, self-conditioning)."""
        return self.unet is not None and is_self_conditioned(self.unet)

    @property
    def default_num_inference_steps(self) -> int:
        """What `num_inference_steps=None` means: 4 for a consistency-distilled model (`LCMScheduler`), else 20."""
        return 4 if isinstance(self.scheduler, LCMScheduler) else 20

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def cross_attention_kwargs(self) -> dict | None:
        return self._cross_attention_kwargs

    # -- stages --------------------------------------------------------------------------------
    def check_inputs(
        self, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, height, width, num_inference_steps,
        guidance_scale, num_images_per_prompt, generator, latents, output_type, callback_on_step_end_tensor_inputs,
    ) -> int:
        """Raise a ValueError naming the argument for anything that cannot work; return the number of prompts."""
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("Pass exactly one of `prompt` and `prompt_embeds`.")
        if prompt_embeds is not None:
            self._check_embeds(prompt_embeds, "prompt_embeds")
        batch_size = len(self.check_prompt(prompt)) if prompt is not None else len(prompt_embeds)
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("Pass at most one of `negative_prompt` and `negative_prompt_embeds`.")
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            if len(self.check_prompt(negative_prompt, "negative_prompt")) != batch_size:
                raise ValueError(f"`negative_prompt` has {len(negative_prompt)} entries for {batch_size} prompts; pass one per prompt or a single string.")
        if negative_prompt_embeds is not None:
            self._check_embeds(negative_prompt_embeds, "negative_prompt_embeds")
            if len(negative_prompt_embeds) != batch_size:
                raise ValueError(f"`negative_prompt_embeds` holds {len(negative_prompt_embeds)} rows for {batch_size} prompts.")
        check_int(num_inference_steps, "`num_inference_steps`")
        check_number(guidance_scale, "`guidance_scale`", minimum=0)
        for name, value in (("height", height), ("width", width)):
            check_resolution(value, downsample_factor(self.unet), f"`{name}`", f" for this U-Net (trained at {self.unet.config.sample_size})")
        check_image_size(height, width, self.unet.config.sample_size)
        self.check_common_inputs(batch_size, num_images_per_prompt, generator, output_type)
        if latents is not None:
            check_tensor(latents, "`latents`", (batch_size * num_images_per_prompt, self.unet.config.out_channels, height, width))
        unknown = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"`callback_on_step_end_tensor_inputs` {unknown} are not among {self._callback_tensor_inputs}.")
        return batch_size

    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: ConceptPromptEmbeds | None = None,
        negative_prompt_embeds: ConceptPromptEmbeds | None = None,
    ) -> tuple[ConceptPromptEmbeds, ConceptPromptEmbeds | None]:
        """Conditional and (with guidance) unconditional conditionings, one row per image
        (each prompt's row repeated `num_images_per_prompt` times in place). Without a negative
        prompt the unconditional branch is the empty caption `""`.

        Needs only the tokenizer and text encoder (the other components may be None); `__call__`
        takes what it returns back as `prompt_embeds` / `negative_prompt_embeds`."""
        if prompt_embeds is None:
            prompt_embeds = self._encode(self.check_prompt(prompt))
        if do_classifier_free_guidance and negative_prompt_embeds is None:
            negative_prompt = "" if negative_prompt is None else negative_prompt
            if isinstance(negative_prompt, str):
                negative_prompt = [negative_prompt] * len(prompt_embeds)
            negative_prompt_embeds = self._encode(self.check_prompt(negative_prompt, "negative_prompt"))
        prompt_embeds = self._prepare(prompt_embeds, num_images_per_prompt)
        negative_prompt_embeds = self._prepare(negative_prompt_embeds, num_images_per_prompt) if do_classifier_free_guidance else None
        return prompt_embeds, negative_prompt_embeds

    def _encode(self, prompts: list[str]) -> ConceptPromptEmbeds:
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("This pipeline has no tokenizer / text_encoder to encode `prompt`; pass `prompt_embeds` (from encode_prompt) instead.")
        return encode_concept(self.text_encoder, **self.tokenize_prompt(prompts))

    def _prepare(self, embeds: ConceptPromptEmbeds, num_images_per_prompt: int) -> ConceptPromptEmbeds:
        dtype = (self.unet if self.unet is not None else self.text_encoder).dtype  # what will read them
        return embeds.to(self._execution_device, dtype).repeat_interleave(num_images_per_prompt)

    def _encode_chunk(self, start, end, num_images_per_prompt, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds):
        """`encode_prompt` for images start..end-1 only: their prompts are encoded, then the rows cut to those images."""
        first, last = start // num_images_per_prompt, (end - 1) // num_images_per_prompt + 1  # prompts [first, last)
        prompt = [prompt] if isinstance(prompt, str) else prompt
        negative_prompt = negative_prompt if isinstance(negative_prompt, str) else _rows(negative_prompt, first, last)
        cond, uncond = self.encode_prompt(
            _rows(prompt, first, last), num_images_per_prompt, self.do_classifier_free_guidance, negative_prompt,
            _rows(prompt_embeds, first, last), _rows(negative_prompt_embeds, first, last),
        )
        cut = slice(start - first * num_images_per_prompt, end - first * num_images_per_prompt)
        return cond.map(lambda t: t[cut]), None if uncond is None else uncond.map(lambda t: t[cut])

    def embeds_widths(self) -> tuple[int, int]:
        """(token-state width, concept width) that prompt embeddings must have: what the text tower makes, which
        `check_components` matched to the U-Net (the U-Net's own config when there is no tower, e.g. in encode-only use)."""
        if self.text_encoder is not None:
            return self.text_encoder.config.hidden_size, self.text_encoder.config.projection_dim
        return self.unet.config.cross_attention_dim, self.unet.config.projection_class_embeddings_input_dim

    def _check_embeds(self, embeds, name: str) -> None:
        """A ConceptPromptEmbeds of this text tower's widths, holding finite numbers."""
        if not isinstance(embeds, ConceptPromptEmbeds):
            raise ValueError(f"`{name}` must be a ConceptPromptEmbeds (see encode_prompt), got {type(embeds).__name__}.")
        widths = (embeds.token_states.shape[-1], embeds.concept.shape[-1])
        expected = self.embeds_widths()
        if widths != expected:
            raise ValueError(f"`{name}` has token states of width {widths[0]} and concepts of width {widths[1]}; this pipeline reads {expected[0]} and {expected[1]}.")
        for tensor in (embeds.token_states, embeds.concept):
            check_tensor(tensor, f"`{name}`")

    def prepare_latents(self, num_images: int, height: int, width: int, generator, latents: torch.Tensor | None) -> torch.Tensor:
        """Starting noise (num_images, 3, height, width); with a list of generators, image i is drawn from generator i."""
        shape = (num_images, self.unet.config.out_channels, height, width)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        return latents.to(device=self._execution_device, dtype=self.unet.dtype) * self.scheduler.init_noise_sigma

    def guide(self, pred_uncond: torch.Tensor, pred_cond: torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance: move from the unconditional prediction past the conditional one."""
        return pred_uncond + self._guidance_scale * (pred_cond - pred_uncond)

    def predict(
        self, latents: torch.Tensor, t: torch.Tensor, prompt_embeds: ConceptPromptEmbeds, negative_prompt_embeds: ConceptPromptEmbeds | None,
        self_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The (guided) model output at timestep `t`, same shape as `latents`. `self_condition`: the previous step's
        clean-image estimate, read by a self-conditioned U-Net (both guidance rows get the guided one)."""
        if not self.do_classifier_free_guidance or negative_prompt_embeds is None:
            return self.model_output(self.scheduler.scale_model_input(latents, t), t, prompt_embeds, self_condition)
        sample = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)  # (2B, 3, H, W)
        both = ConceptPromptEmbeds.cat([negative_prompt_embeds, prompt_embeds])
        if self_condition is not None:
            self_condition = torch.cat([self_condition, self_condition])
        pred_uncond, pred_cond = self.model_output(sample, t, both, self_condition).chunk(2)
        return self.guide(pred_uncond, pred_cond)

    def model_output(
        self, sample: torch.Tensor, t: torch.Tensor, prompt_embeds: ConceptPromptEmbeds, self_condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One U-Net call on a scaled noisy sample (N, 3, H, W) with one conditioning row per sample."""
        timestep_cond = None
        if self.guidance_embedded:  # (N, time_cond_proj_dim)
            scales = torch.full((len(sample),), self._guidance_scale, device=sample.device)
            timestep_cond = guidance_scale_embedding(scales, self.unet.config.time_cond_proj_dim).to(sample.dtype)
        return self.unet(
            unet_input(self.unet, sample, self_condition), t, timestep_cond=timestep_cond, **prompt_embeds.unet_kwargs(),
            cross_attention_kwargs=self._cross_attention_kwargs,
        ).sample

    def _step_kwargs(self, generator) -> dict:
        # Stochastic schedulers (DDPM, Euler, SDE solvers) take a generator; the others do not.
        return {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}

    def denoise(
        self, latents, prompt_embeds, negative_prompt_embeds, generator, callback_on_step_end, callback_on_step_end_tensor_inputs
    ) -> torch.Tensor:
        """Run the scheduler's timesteps; `callback_on_step_end(self, i, t, tensors)` may replace any of the
        tensors it was given (by returning them in its dict)."""
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        step_kwargs = self._step_kwargs(generator)
        self_conditioned = self.self_conditioned
        self_condition = None  # a self-conditioned U-Net's previous clean-image estimate (zeros at the first step)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                model_output = self.predict(latents, t, prompt_embeds, negative_prompt_embeds, self_condition)
                if self_conditioned:
                    self_condition = clean_estimate(self.scheduler, self.scheduler.scale_model_input(latents, t), model_output, t)
                latents = self.scheduler.step(model_output, t, latents, **step_kwargs, return_dict=False)[0]
                if callback_on_step_end is not None:
                    tensors = {"latents": latents, "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
                    outputs = callback_on_step_end(self, i, t, {k: tensors[k] for k in callback_on_step_end_tensor_inputs})
                    if not isinstance(outputs, dict):
                        raise ValueError(f"`callback_on_step_end` must return a dict of the tensors it replaces (e.g. `return callback_kwargs`), got {type(outputs).__name__} at step {i}.")
                    if "latents" in outputs:
                        check_tensor(outputs["latents"], f"The latents `callback_on_step_end` returned at step {i}", tuple(latents.shape))
                    latents = outputs.pop("latents", latents)
                    prompt_embeds = outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = outputs.pop("negative_prompt_embeds", negative_prompt_embeds)
                progress_bar.update()
        return latents

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float = 3.0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: ConceptPromptEmbeds | None = None,
        negative_prompt_embeds: ConceptPromptEmbeds | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        cross_attention_kwargs: dict | None = None,
        callback_on_step_end: Callable[[DiffusionPipeline, int, torch.Tensor, dict], dict] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        max_batch_size: int | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""Generate images for `prompt`.

        Args:
            prompt (`str` or `list[str]`): caption(s); or pass `prompt_embeds` instead.
            height, width (`int`, default `unet.config.sample_size`): image size; a multiple of the U-Net's
                downsampling factor (the model was trained at `sample_size` only).
            num_inference_steps (`int`, *optional*): denoising steps (DPM-Solver++ needs ~20, DDPM 1000, a
                consistency-distilled model with `LCMScheduler` 1-4); default `default_num_inference_steps` (20, or 4
                with `LCMScheduler`).
            guidance_scale (`float`, defaults to 3.0): classifier-free guidance weight; <= 1 disables guidance. A
                guidance-distilled U-Net (`unet.config.time_cond_proj_dim`) reads it as an input and makes one pass. Models
                trained on random-cell count scenes draw extra objects above 2 (docs/experiments/2026-11-22-diffusion.md).
            negative_prompt (`str` or `list[str]`, *optional*): what to steer away from; default the empty caption.
            num_images_per_prompt (`int`, defaults to 1): images per caption, prompt 0's images first.
            generator (`torch.Generator` or one per image, *optional*): with a list, image i's starting noise and
                sampler noise come from generator i only.
            latents (`torch.Tensor` of shape (images, 3, height, width), *optional*): starting noise, unscaled.
            prompt_embeds, negative_prompt_embeds ([`ConceptPromptEmbeds`], *optional*): precomputed conditionings,
                one row per prompt (see `encode_prompt`).
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"` ((B, H, W, 3) in [0, 1]), `"pt"` ((B, 3, H, W)
                in [0, 1]) or `"latent"` (the final sample itself, (B, 3, H, W) in [-1, 1], unclamped).
            return_dict (`bool`, defaults to `True`): return an `ImagePipelineOutput` rather than a tuple.
            cross_attention_kwargs (`dict`, *optional*): passed to the U-Net's attention processors (e.g. `{"scale": 0.5}`
                for a LoRA), as in diffusers' text-to-image pipelines.
            callback_on_step_end (`Callable`, *optional*): called as `fn(pipe, step, timestep, tensors)` after each
                step with the tensors named in `callback_on_step_end_tensor_inputs` (any of `latents`,
                `prompt_embeds`, `negative_prompt_embeds`); the dict it returns replaces them. With more images than
                `max_batch_size` it is called for each chunk of images in turn, with that chunk's tensors.
            max_batch_size (`int`, *optional*): images per denoising pass, which bounds memory (about 5.6 MB per 32-px
                image on the shipped model). Default: as many as make 131,072 pixels (128 images at 32x32, 32 at
                64x64). The images do not depend on it: starting noise is drawn for all images at once, and a
                stochastic sampler's noise comes from one generator per image (see `hf_textimg.pipelines.chunking`).

        Raises:
            ValueError: an argument that cannot work (named in the message), a step count the scheduler cannot take,
                a size far from the trained one (see `hf_textimg.pipelines.checks`), or images that came out
                non-finite (`NonFiniteError`) instead of being returned black.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        height = self.unet.config.sample_size if height is None else height
        width = self.unet.config.sample_size if width is None else width
        num_inference_steps = self.default_num_inference_steps if num_inference_steps is None else num_inference_steps
        # 1. Check inputs
        batch_size = self.check_inputs(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, height, width, num_inference_steps,
            guidance_scale, num_images_per_prompt, generator, latents, output_type, callback_on_step_end_tensor_inputs,
        )
        if max_batch_size is not None:
            check_int(max_batch_size, "`max_batch_size`")
        self._guidance_scale, self._interrupt, self._cross_attention_kwargs = float(guidance_scale), False, cross_attention_kwargs
        # 2. Timesteps, checked once before any work: a count this scheduler cannot take is a ValueError
        set_checked_timesteps(self.scheduler, num_inference_steps, self._execution_device)
        # 3. Starting noise of every image, drawn as one batch draws it, and per-image generators for the
        #    sampler's own noise, so chunking changes no image (hf_textimg.pipelines.chunking)
        num_images = batch_size * num_images_per_prompt
        latents = self.prepare_latents(num_images, height, width, generator, latents)  # (N, 3, H, W)
        sampler_generators = step_generators(generator, num_images) if self._step_kwargs(generator) else None
        # 4. Encode, denoise and post-process at most `max_batch_size` images at a time (bounded memory)
        parts = []
        for start, end in image_chunks(num_images, max_batch_size or default_max_batch_size(height, width)):
            cond, uncond = self._encode_chunk(start, end, num_images_per_prompt, prompt, negative_prompt, prompt_embeds, negative_prompt_embeds)
            set_checked_timesteps(self.scheduler, num_inference_steps, self._execution_device)  # resets the solver's history
            chunk_generators = sampler_generators[start:end] if sampler_generators is not None else generator
            chunk = self.denoise(latents[start:end], cond, uncond, chunk_generators, callback_on_step_end, callback_on_step_end_tensor_inputs)
            # 5. Pixel space: the final sample is the image in [-1, 1] ("latent" returns it as is); NaN or inf is an
            #    error, never a black image
            check_finite_images(chunk, f"after {num_inference_steps} steps of {type(self.scheduler).__name__} (images {start}-{end - 1})")
            parts.append(self.postprocess(chunk, output_type))
        images = concat_outputs(parts, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


register_with_diffusers(ConceptDiffusionPipeline)

__all__ = ["ConceptDiffusionPipeline", "ConceptPromptEmbeds"]
