"""Text-to-image the unCLIP way, as one pipeline: caption -> prior -> image concept -> one-shot decoder -> pixels.

Like diffusers' `KandinskyV22CombinedPipeline`, it holds the components of its two parts, saves and loads them as one
folder, and builds the part pipelines from them (`pipe.prior_pipe`, `pipe.decoder_pipe`):

    import torch
    from diffusers import DiffusionPipeline
    import hf_textimg  # registers the pipelines with diffusers
    from hf_textimg.pipelines import ConceptUnCLIPPipeline

    prior = DiffusionPipeline.from_pretrained("outputs/prior-shapes")           # ConceptPriorPipeline
    decoder = DiffusionPipeline.from_pretrained("outputs/decoder-reconstruct")  # DecoderPipeline, --objective reconstruct
    pipe = ConceptUnCLIPPipeline.from_parts(prior, decoder)                     # checks the code widths match
    pipe.save_pretrained("outputs/unclip-shapes")
    images = pipe(["a red circle", "two blue squares"], num_images_per_prompt=8, generator=torch.Generator().manual_seed(0)).images

Why two moves: a caption leaves things open (where "a red circle" goes, how big it is). The prior samples those choices
in the image encoder's code space, a few tens of cheap steps on one vector per image; the decoder only renders a code
that has already made them, in one forward pass. `training/train_prior.py` trains the prior and writes this pipeline.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline, PriorTransformer, SchedulerMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from transformers import PreTrainedModel
from ..data.prompts import check_prompt_normalization
from .pipeline_decoder import DecoderPipeline
from .pipeline_prior import ConceptPriorPipeline, check_prior_components
from .pipeline_utils import TextToImageMixin, register_with_diffusers


class ConceptUnCLIPPipeline(TextToImageMixin, DiffusionPipeline):
    r"""[`ConceptPriorPipeline`] then [`DecoderPipeline`] on its `image_embeds`.

    Components:
        tokenizer, text_encoder: the prior's caption tokenizer and text tower.
        prior ([`~diffusers.PriorTransformer`]), scheduler: the prior and its sampler (see [`ConceptPriorPipeline`]).
        decoder ([`ConceptDecoder`]): image concept [+ noise] -> image; trained to render the codes of the image
            encoder the prior was trained on (`train_decoder.py --objective reconstruct`, or an auto-encoder's decoder).
        prompt_normalization (`str`, *optional*), normalize_image_embeds (`bool`): the prior pipeline's settings.
    """

    model_cpu_offload_seq = "text_encoder->prior->decoder"

    def __init__(
        self, tokenizer, text_encoder: PreTrainedModel, prior: PriorTransformer, scheduler: SchedulerMixin, decoder: ModelMixin,
        prompt_normalization: str | None = None, normalize_image_embeds: bool = True,
    ):
        super().__init__()
        check_prompt_normalization(prompt_normalization)
        if text_encoder is not None and prior is not None:
            check_prior_components(tokenizer, text_encoder, prior)
        if prior is not None and decoder is not None:
            check_decoder_reads_prior(prior, decoder)
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, prior=prior, scheduler=scheduler, decoder=decoder)
        self.register_to_config(prompt_normalization=prompt_normalization, normalize_image_embeds=bool(normalize_image_embeds))

    @classmethod
    def from_parts(cls, prior_pipe: ConceptPriorPipeline, decoder: DecoderPipeline | ModelMixin) -> ConceptUnCLIPPipeline:
        """The combined pipeline of a loaded prior pipeline and a decoder (a `DecoderPipeline`, whose decoder is taken,
        or a `ConceptDecoder`, e.g. `ConceptAutoencoder.from_pretrained(path).decoder`)."""
        if not isinstance(prior_pipe, ConceptPriorPipeline):
            raise ValueError(f"`prior_pipe` must be a ConceptPriorPipeline, got {type(prior_pipe).__name__}.")
        decoder = decoder.decoder if isinstance(decoder, DecoderPipeline) else decoder
        return cls(
            prior_pipe.tokenizer, prior_pipe.text_encoder, prior_pipe.prior, prior_pipe.scheduler, decoder,
            prior_pipe.config.prompt_normalization, prior_pipe.config.normalize_image_embeds,
        )

    # -- the part pipelines: views on the current components (a swapped scheduler, `.to()` and the progress-bar
    # settings follow the combined pipeline) -----------------------------------------------------------------
    def _part(self, pipe: DiffusionPipeline) -> DiffusionPipeline:
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipe

    @property
    def prior_pipe(self) -> ConceptPriorPipeline:
        return self._part(ConceptPriorPipeline(
            self.tokenizer, self.text_encoder, self.prior, self.scheduler, self.config.prompt_normalization, self.config.normalize_image_embeds
        ))

    @property
    def decoder_pipe(self) -> DecoderPipeline:
        """The decoder alone (no text tower: it decodes `image_embeds`)."""
        return self._part(DecoderPipeline(tokenizer=None, text_encoder=None, decoder=self.decoder))

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 4.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        max_batch_size: int | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""Generate images for `prompt`: the prior samples one image concept per image, the decoder draws each.

        Args:
            prompt (`str` or `list[str]`): caption(s).
            negative_prompt (`str` or `list[str]`, *optional*): the prior's unconditional caption (default `""`).
            num_inference_steps (`int`, defaults to 25), guidance_scale (`float`, defaults to 4.0): the prior's sampling
                (the only loop: the decoder is one forward pass), as `prior_num_inference_steps` / `prior_guidance_scale`
                in Kandinsky's combined pipelines.
            num_images_per_prompt (`int`, defaults to 1): images per caption, prompt 0's first.
            generator (`torch.Generator` or one per image, *optional*): the prior's noise, then the decoder's.
            latents (`torch.Tensor` of shape (images, D), *optional*): the prior's starting noise.
            noise (`torch.Tensor` of shape (images, noise_dim), *optional*): the decoder's noise input (when it has one).
            height, width (`int`, *optional*): only the decoder's own size is accepted.
            output_type (`str`, defaults to `"pil"`), return_dict, max_batch_size: as in [`DecoderPipeline`].
        """
        # 1. Check what the decoder will need before the prior runs
        batch_size = len(self.check_prompt(prompt))
        self.check_common_inputs(batch_size, num_images_per_prompt, generator, output_type)
        self.decoder_pipe.check_size(height, width)
        # 2. Prior: one image concept per image (N, D), prompt 0's first
        image_embeds = self.prior_pipe(
            prompt, negative_prompt=negative_prompt, num_images_per_prompt=num_images_per_prompt, num_inference_steps=num_inference_steps,
            generator=generator, latents=latents, guidance_scale=guidance_scale,
        ).image_embeds
        # 3. Decoder: each concept to pixels, one image per row
        images = self.decoder_pipe(
            image_embeds=image_embeds, generator=generator, noise=noise, output_type=output_type, max_batch_size=max_batch_size
        ).images
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def check_decoder_reads_prior(prior: PriorTransformer, decoder: ModelMixin) -> None:
    width = prior.config.clip_embed_dim or prior.config.embedding_dim
    if decoder.config.code_dim != width:
        raise ValueError(
            f"The prior makes {width}-d image concepts but the decoder reads {decoder.config.code_dim}-d codes "
            "(decoder.config.code_dim); use a decoder trained on the prior's image encoder (train_decoder.py --objective reconstruct)."
        )


register_with_diffusers(ConceptUnCLIPPipeline)

__all__ = ["ConceptUnCLIPPipeline", "check_decoder_reads_prior"]
