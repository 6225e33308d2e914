"""A cascade called as one pipeline: caption -> base image (32 px) -> one or two super-resolution stages (128 px).

Like diffusers' Kandinsky "combined" pipelines, the cascade holds the components of its parts,
saves and loads them as one folder (`model_index.json` + one subfolder per component), and builds
the part pipelines from them:

    from diffusers import DiffusionPipeline
    import hf_textimg  # registers the pipelines with diffusers
    from hf_textimg.pipelines import ConceptCascadePipeline

    base = DiffusionPipeline.from_pretrained("hf_textimg/pretrained/shapes-diffusion-32")
    stage = DiffusionPipeline.from_pretrained("outputs/superres-shapes-128")
    cascade = ConceptCascadePipeline.from_stages(base, stage)       # checks they share one text tower
    cascade.save_pretrained("outputs/shapes-cascade-128")
    cascade = DiffusionPipeline.from_pretrained("outputs/shapes-cascade-128")
    images = cascade(["a red circle at the top left"], num_images_per_prompt=4).images   # 128 x 128
    small = cascade(["a red circle at the top left"], height=32, width=32).images          # base only

All stages read the base model's text tower (one `tokenizer` / `text_encoder`) when they can: a super-resolution
stage trained with `--concept_model_path <base pipeline folder>` keeps that tower frozen, so the
cascade stores it once. A stage trained on another tower (say, a stage made for another base model)
keeps its own: `from_stages(base, stage, own_text_towers=True)` stores it as `superres_tokenizer` /
`superres_text_encoder`, and the stage reads every caption with it, exactly as the stage alone would.

The base may also be a one-shot `DecoderPipeline` (caption -> concept -> decoder, no denoising loop):
its `decoder` takes the place of `unet` / `scheduler`.
`cascade.base` and `cascade.superres_stages` are the part pipelines, for timing or calling a stage alone.
"""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel
from diffusers.models.modeling_utils import ModelMixin
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from transformers import PreTrainedModel
from .pipeline_decoder import DecoderPipeline
from .pipeline_diffusion import ConceptDiffusionPipeline
from .pipeline_superres import DEFAULT_NOISE_LEVEL, DEFAULT_SUPERRES_GUIDANCE, ConceptSuperResolutionPipeline
from .pipeline_utils import TextToImageMixin, register_with_diffusers

# Component name prefixes of the super-resolution stages, in order.
STAGE_PREFIXES = ("superres", "superres_2")


class ConceptCascadePipeline(TextToImageMixin, DiffusionPipeline):
    r"""Text-to-image in stages: a base model at its own size ([`ConceptDiffusionPipeline`], or the one-shot
    [`DecoderPipeline`]), then one or two [`ConceptSuperResolutionPipeline`] stages, each `upscale_factors[i]` times larger.

    Components:
        tokenizer, text_encoder: the base model's, shared by every stage that has no tower of its own.
        unet, scheduler: the base model's U-Net and sampler (a diffusion base).
        decoder (*optional*): the base model's decoder (a one-shot base; then `unet` and `scheduler` are None).
        superres_unet, superres_scheduler, superres_image_noising_scheduler: the first super-resolution stage.
        superres_tokenizer, superres_text_encoder (*optional*): the first stage's own text tower, when it was trained
            on another tower than the base's.
        superres_2_unet, superres_2_scheduler, superres_2_image_noising_scheduler (*optional*): a second stage.
        superres_2_tokenizer, superres_2_text_encoder (*optional*): the second stage's own text tower.
        upscale_factors (`list[int]`): each stage's factor.
        prompt_normalization (`str`, *optional*): the caption rewrite every part was trained with.
        tile_sizes (`list`, *optional*): each stage's `tile_size` (see [`ConceptSuperResolutionPipeline`]).
    """

    _optional_components = [
        "unet", "scheduler", "decoder", "superres_tokenizer", "superres_text_encoder",
        "superres_2_unet", "superres_2_scheduler", "superres_2_image_noising_scheduler", "superres_2_tokenizer", "superres_2_text_encoder",
    ]
    model_cpu_offload_seq = "text_encoder->unet->decoder->superres_text_encoder->superres_unet->superres_2_text_encoder->superres_2_unet"

    def __init__(
        self,
        tokenizer,
        text_encoder: PreTrainedModel,
        unet: UNet2DConditionModel | None,
        scheduler: SchedulerMixin | None,
        superres_unet: UNet2DConditionModel,
        superres_scheduler: SchedulerMixin,
        superres_image_noising_scheduler: DDPMScheduler,
        superres_2_unet: UNet2DConditionModel | None = None,
        superres_2_scheduler: SchedulerMixin | None = None,
        superres_2_image_noising_scheduler: DDPMScheduler | None = None,
        upscale_factors: list[int] = (4,),
        prompt_normalization: str | None = None,
        tile_sizes: list[int | None] | None = None,
        decoder: ModelMixin | None = None,
        superres_tokenizer=None,
        superres_text_encoder: PreTrainedModel | None = None,
        superres_2_tokenizer=None,
        superres_2_text_encoder: PreTrainedModel | None = None,
    ):
        super().__init__()
        if (unet is not None, scheduler is not None, decoder is not None) not in ((True, True, False), (False, False, True)):
            raise ValueError("A cascade's base is either a diffusion model (`unet` and `scheduler`) or a one-shot `decoder`; pass one of them.")
        stages = [(superres_unet, superres_scheduler, superres_image_noising_scheduler)]
        second = (superres_2_unet, superres_2_scheduler, superres_2_image_noising_scheduler)
        if any(c is not None for c in second):
            if any(c is None for c in second):
                raise ValueError("A second stage needs all of superres_2_unet, superres_2_scheduler and superres_2_image_noising_scheduler.")
            stages.append(second)
        for prefix, own in zip(STAGE_PREFIXES, ((superres_tokenizer, superres_text_encoder), (superres_2_tokenizer, superres_2_text_encoder))):
            if (own[0] is None) != (own[1] is None):
                raise ValueError(f"A stage's own text tower needs both {prefix}_tokenizer and {prefix}_text_encoder.")
        upscale_factors = [int(f) for f in upscale_factors]
        tile_sizes = [None] * len(stages) if tile_sizes is None else list(tile_sizes)
        if len(upscale_factors) != len(stages) or len(tile_sizes) != len(stages):
            raise ValueError(f"`upscale_factors` {upscale_factors} and `tile_sizes` {tile_sizes} must give one value per super-resolution stage ({len(stages)}).")
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler, decoder=decoder, superres_unet=superres_unet,
            superres_scheduler=superres_scheduler, superres_image_noising_scheduler=superres_image_noising_scheduler,
            superres_tokenizer=superres_tokenizer, superres_text_encoder=superres_text_encoder,
            superres_2_unet=superres_2_unet, superres_2_scheduler=superres_2_scheduler,
            superres_2_image_noising_scheduler=superres_2_image_noising_scheduler,
            superres_2_tokenizer=superres_2_tokenizer, superres_2_text_encoder=superres_2_text_encoder,
        )
        self.register_to_config(upscale_factors=upscale_factors, prompt_normalization=prompt_normalization, tile_sizes=tile_sizes)

    # -- the part pipelines: views on the cascade's current components (so `.to()`, a swapped `scheduler` and the
    # progress-bar settings follow the cascade) --------------------------------------------------------------
    def _part(self, pipe: DiffusionPipeline) -> DiffusionPipeline:
        pipe.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipe

    @property
    def base(self) -> ConceptDiffusionPipeline | DecoderPipeline:
        """The text-to-image pipeline of the first stage."""
        if self.decoder is not None:
            return self._part(DecoderPipeline(self.tokenizer, self.text_encoder, self.decoder, self.config.prompt_normalization))
        return self._part(ConceptDiffusionPipeline(self.tokenizer, self.text_encoder, self.unet, self.scheduler, self.config.prompt_normalization))

    @property
    def superres_stages(self) -> list[ConceptSuperResolutionPipeline]:
        """The super-resolution pipelines, in order, each with its own text tower if it has one, else the base's."""
        stages = []
        for prefix, factor, tile in zip(STAGE_PREFIXES, self.config.upscale_factors, self.config.tile_sizes):
            tokenizer, text_encoder = getattr(self, f"{prefix}_tokenizer", None), getattr(self, f"{prefix}_text_encoder", None)
            if text_encoder is None:
                tokenizer, text_encoder = self.tokenizer, self.text_encoder
            stages.append(self._part(ConceptSuperResolutionPipeline(
                tokenizer, text_encoder, getattr(self, f"{prefix}_unet"), getattr(self, f"{prefix}_scheduler"),
                getattr(self, f"{prefix}_image_noising_scheduler"), factor, self.config.prompt_normalization, tile,
            )))
        return stages

    @classmethod
    def from_stages(
        cls, base: ConceptDiffusionPipeline | DecoderPipeline, *superres_stages: ConceptSuperResolutionPipeline, own_text_towers: bool = False
    ) -> ConceptCascadePipeline:
        """A cascade of loaded pipelines: `base` (diffusion or one-shot), then each stage in order (one or two). A stage
        shares the base's text tower when it was trained on it (`--concept_model_path <base pipeline folder>`); with
        `own_text_towers=True` a stage on another tower keeps its own (stored beside the base's), else that is a
        ValueError. Every part must rewrite prompts the same way (`prompt_normalization`)."""
        if not isinstance(base, (ConceptDiffusionPipeline, DecoderPipeline)) or isinstance(base, ConceptSuperResolutionPipeline):
            raise ValueError(f"`base` must be a ConceptDiffusionPipeline or a DecoderPipeline (text-to-image), got {type(base).__name__}.")
        if not 1 <= len(superres_stages) <= len(STAGE_PREFIXES):
            raise ValueError(f"Pass one or two super-resolution stages, got {len(superres_stages)}.")
        components = {}
        for prefix, stage in zip(STAGE_PREFIXES, superres_stages):
            if not isinstance(stage, ConceptSuperResolutionPipeline):
                raise ValueError(f"Each stage must be a ConceptSuperResolutionPipeline, got {type(stage).__name__}.")
            if not shares_text_tower(base, stage, own_text_towers):
                components.update({f"{prefix}_tokenizer": stage.tokenizer, f"{prefix}_text_encoder": stage.text_encoder})
            components.update({f"{prefix}_unet": stage.unet, f"{prefix}_scheduler": stage.scheduler,
                               f"{prefix}_image_noising_scheduler": stage.image_noising_scheduler})
        if isinstance(base, DecoderPipeline):
            components.update(unet=None, scheduler=None, decoder=base.decoder)
        else:
            components.update(unet=base.unet, scheduler=base.scheduler)
        return cls(
            tokenizer=base.tokenizer, text_encoder=base.text_encoder, **components,
            upscale_factors=[stage.config.upscale_factor for stage in superres_stages], prompt_normalization=base.config.prompt_normalization,
            tile_sizes=[stage.config.tile_size for stage in superres_stages],
        )

    # -- sizes --------------------------------------------------------------------------------------
    def output_sizes(self) -> list[int]:
        """The image sides the cascade makes: the base's, then after each stage."""
        sizes = [self.decoder.config.image_size if self.decoder is not None else self.unet.config.sample_size]
        for factor in self.config.upscale_factors:
            sizes.append(sizes[-1] * factor)
        return sizes

    def stages_for_size(self, height: int | None, width: int | None) -> int:
        """How many super-resolution stages make a `height` x `width` image (default: all of them)."""
        sizes = self.output_sizes()
        height = sizes[-1] if height is None else height
        width = height if width is None else width
        if height != width or height not in sizes:
            raise ValueError(
                f"This cascade makes square images of {', '.join(f'{s}x{s}' for s in sizes)} px (base, then after each stage); "
                f"got height={height}, width={width}."
            )
        return sizes.index(height)

    # -- generation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        superres_num_inference_steps: int = 20,
        superres_guidance_scale: float = DEFAULT_SUPERRES_GUIDANCE,
        noise_level: int | list[int] = DEFAULT_NOISE_LEVEL,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        r"""Generate images for `prompt`, base model first, then each super-resolution stage.

        Args:
            prompt (`str` or `list[str]`): caption(s).
            height, width (`int`, *optional*): final size; one of `output_sizes()` (a smaller one runs fewer stages).
            num_inference_steps, guidance_scale: the base model's sampling (as in [`ConceptDiffusionPipeline`]; a one-shot
                base has none and ignores them).
            negative_prompt (`str` or `list[str]`, *optional*): used by every stage.
            num_images_per_prompt (`int`, defaults to 1): images per caption, prompt 0's images first.
            generator (`torch.Generator` or one per image, *optional*): used by the stages in turn.
            superres_num_inference_steps, superres_guidance_scale: each super-resolution stage's sampling.
            noise_level (`int` or one per stage): the stages' noise augmentation (see [`ConceptSuperResolutionPipeline`]).
            output_type, return_dict: as in [`ConceptDiffusionPipeline`].
        """
        num_stages = self.stages_for_size(height, width)
        # 1. Base model: (N, 3, h, w) in [0, 1], prompt 0's images first
        base = self.base
        base_kwargs = dict(num_images_per_prompt=num_images_per_prompt, generator=generator, output_type="pt" if num_stages else output_type)
        if not isinstance(base, DecoderPipeline):  # a one-shot base has no sampling settings
            base_kwargs.update(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, negative_prompt=negative_prompt)
        images = base(prompt, **base_kwargs).images
        # 2. Each stage upscales every image with its own caption (one prompt row per image)
        prompts = self._per_image(prompt, num_images_per_prompt)
        negative = None if negative_prompt is None or isinstance(negative_prompt, str) else self._per_image(negative_prompt, num_images_per_prompt)
        stages = self.superres_stages
        levels = list(noise_level) if isinstance(noise_level, (list, tuple)) else [noise_level] * len(stages)
        if len(levels) != len(stages):
            raise ValueError(f"`noise_level` gives {len(levels)} levels for {len(stages)} super-resolution stages; pass one, or one per stage.")
        for i, stage in enumerate(stages[:num_stages]):
            images = stage(
                prompts, image=images, num_inference_steps=superres_num_inference_steps, guidance_scale=superres_guidance_scale,
                noise_level=levels[i], negative_prompt=negative_prompt if negative is None else negative, generator=generator,
                output_type="pt" if i + 1 < num_stages else output_type,
            ).images
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def _per_image(self, prompt, num_images_per_prompt: int) -> list[str]:
        return [p for p in self.check_prompt(prompt) for _ in range(num_images_per_prompt)]


def shares_text_tower(base: DiffusionPipeline, stage: DiffusionPipeline, own_text_towers: bool = False) -> bool:
    """Whether `stage` reads captions exactly as `base` does (same tokenizer vocabulary and text tower weights). A
    different prompt normalization is always a ValueError; a different tower is one unless `own_text_towers`."""
    if base.config.prompt_normalization != stage.config.prompt_normalization:
        raise ValueError(
            f"The base pipeline rewrites prompts with {base.config.prompt_normalization!r} but the stage with "
            f"{stage.config.prompt_normalization!r}; train the stage with the base's --prompt_normalization."
        )
    same = base.tokenizer.get_vocab() == stage.tokenizer.get_vocab()
    if same and base.text_encoder is not stage.text_encoder:
        ours, theirs = base.text_encoder.state_dict(), stage.text_encoder.state_dict()
        same = ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k].to(ours[k].device)) for k in ours)
    if not same and not own_text_towers:
        raise ValueError(
            "The super-resolution stage has another text tower (or tokenizer) than the base pipeline, so one cascade cannot "
            "share it; train the stage with --concept_model_path <the base pipeline folder> (its tower, kept frozen), or "
            "keep the stage's own tower beside the base's (own_text_towers=True; `hf-textimg cascade --own-text-towers`)."
        )
    return same


register_with_diffusers(ConceptCascadePipeline)

__all__ = ["ConceptCascadePipeline", "shares_text_tower"]
