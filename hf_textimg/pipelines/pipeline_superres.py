"""Super-resolution by denoising: a small image + its caption -> an image 2x or 4x larger.

Shaped like diffusers' `IFSuperResolutionPipeline` (components `tokenizer`, `text_encoder`, `unet`,
`scheduler`, `image_noising_scheduler`; arguments `image`, `noise_level`, ...):

    import torch
    from diffusers import DiffusionPipeline
    import hf_textimg  # registers the pipelines with diffusers

    base = DiffusionPipeline.from_pretrained("hf_textimg/pretrained/shapes-diffusion-32")
    stage = DiffusionPipeline.from_pretrained("outputs/superres-shapes-128")
    small = base("a red circle at the top left", output_type="pt").images        # (1, 3, 32, 32) in [0, 1]
    big = stage("a red circle at the top left", image=small, noise_level=100).images[0]   # 128 x 128 PIL image

The low-resolution image is upsampled bilinearly to the output size, noised to `noise_level` by
`image_noising_scheduler` (noise conditioning augmentation: the stage was trained on levels drawn
uniformly from [0, max_noise_level], so it learned to look past noise of that size, and so past
the base model's small flaws), and concatenated channel-wise with the noisy sample at every step;
`noise_level` itself goes to the U-Net beside the concept (`hf_textimg.diffusion.superres`).
Everything else (prompt encoding, guidance, callbacks, schedulers) is `ConceptDiffusionPipeline`'s.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import PIL.Image
import torch
from diffusers import DDPMScheduler, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from transformers import PreTrainedModel
from ..diffusion.superres import (
    check_unet_size,
    check_superres_unet,
    noise_augment,
    superres_concept_dim,
    superres_unet_input,
    superres_unet_kwargs,
    tile_origins,
    upsample,
)
from ..diffusion.unet import downsample_factor
from .pipeline_diffusion import ConceptDiffusionPipeline
from .pipeline_utils import register_with_diffusers
from .prompt_embeds import ConceptPromptEmbeds

DEFAULT_NOISE_LEVEL = 100  # of the noising scheduler's 1000 timesteps (cosine betas: noise std 0.15 on [-1, 1] pixels)
DEFAULT_SUPERRES_GUIDANCE = 1.0  # no guidance: the image fixes the content, and guidance would double the cost


class ConceptSuperResolutionPipeline(ConceptDiffusionPipeline):
    r"""Upscale images 2x or 4x (`upscale_factor`) by iterative denoising, conditioned on the small image and its caption.

    Components:
        tokenizer ([`~transformers.PreTrainedTokenizerFast`]) and text_encoder ([`ConceptTextModel`]): as in
            [`ConceptDiffusionPipeline`]; in a cascade, the base model's own (frozen) text tower.
        unet ([`~diffusers.UNet2DConditionModel`]): a super-resolution U-Net (`build_superres_unet`): reads the noisy
            sample and the noise-augmented upsampled image (6 channels), the token states, and the concept with
            the noise level (`addition_embed_type="text_time"`).
        scheduler ([`~diffusers.SchedulerMixin`]): the sampler, as in [`ConceptDiffusionPipeline`].
        image_noising_scheduler ([`~diffusers.DDPMScheduler`]): noises the upsampled image to `noise_level`.
        upscale_factor (`int`): output side / input side, as trained (2 or 4).
        prompt_normalization (`str`, *optional*): as in [`ConceptDiffusionPipeline`].
        tile_size (`int`, *optional*): run the U-Net on overlapping windows of this side (the crop size a stage
            trained on crops saw), averaged where they overlap; None: on the whole image.
    """

    def __init__(
        self, tokenizer, text_encoder: PreTrainedModel, unet: UNet2DConditionModel, scheduler: SchedulerMixin,
        image_noising_scheduler: DDPMScheduler, upscale_factor: int = 4, prompt_normalization: str | None = None,
        tile_size: int | None = None,
    ):
        if not isinstance(upscale_factor, int) or upscale_factor < 2:
            raise ValueError(f"`upscale_factor` must be an integer >= 2 (output side / input side), got {upscale_factor!r}.")
        super().__init__(tokenizer, text_encoder, unet, scheduler, prompt_normalization)
        if tile_size is not None:
            check_unet_size(tile_size, downsample_factor(unet) if unet is not None else 1, "tile_size")
        self.register_modules(image_noising_scheduler=image_noising_scheduler)
        self.register_to_config(upscale_factor=upscale_factor, tile_size=tile_size)
        # set by __call__: (augmented upsampled image (N, 3, H, W), noise level (N,)), and the tile side (0: whole image)
        self._image_condition, self._tile_size = None, 0

    @staticmethod
    def check_components(text_encoder: PreTrainedModel, unet: UNet2DConditionModel) -> None:
        check_superres_unet(unet, text_encoder)

    def embeds_widths(self) -> tuple[int, int]:
        """As [`ConceptDiffusionPipeline.embeds_widths`]; without a text tower, the concept width is what the U-Net's
        projection takes less the noise level's embedding."""
        if self.text_encoder is not None:
            return super().embeds_widths()
        return self.unet.config.cross_attention_dim, superres_concept_dim(self.unet)

    # -- the image input ------------------------------------------------------------------------
    def preprocess_image(self, image) -> torch.Tensor:
        """PIL image(s), numpy (h, w, 3) / (B, h, w, 3) or torch (3, h, w) / (B, 3, h, w) in [0, 1] (what the
        pipelines return as "pil", "np" and "pt"), or a list of such arrays / tensors (diffusers' `PipelineImageInput`)
        -> (B, 3, h, w) in [-1, 1] on the pipeline's device."""
        if image is None:
            raise ValueError("`image` is required: the low-resolution image(s) to upscale, one per prompt.")
        if isinstance(image, PIL.Image.Image):
            image = [image]
        if isinstance(image, (list, tuple)) and image and all(isinstance(i, PIL.Image.Image) for i in image):
            modes, sizes = {i.mode for i in image}, {i.size for i in image}
            if modes != {"RGB"}:
                raise ValueError(f"`image` must be RGB PIL images, got mode(s) {sorted(modes)}; convert them with image.convert('RGB').")
            if len(sizes) > 1:
                raise ValueError(f"`image` holds PIL images of different sizes {sorted(sizes)}; pass images of one size.")
            image = VaeImageProcessor.pil_to_numpy(list(image))  # (B, h, w, C) in [0, 1]
        elif isinstance(image, (list, tuple)) and image and all(isinstance(i, (np.ndarray, torch.Tensor)) for i in image):
            image = join_image_list(image)
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image[None] if image.ndim == 3 else image)).permute(0, 3, 1, 2)
        elif isinstance(image, torch.Tensor):
            image = image[None] if image.ndim == 3 else image
        else:
            raise ValueError(f"`image` must be a PIL image, a numpy array or a torch tensor, or a list of one of these, got {type(image).__name__}.")
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(
                f"`image` must have 3 (RGB) channels: (B, 3, h, w) for tensors, (B, h, w, 3) for numpy arrays; got shape {tuple(image.shape)}."
            )
        image = image.float()
        low, high = image.min().item(), image.max().item()
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(f"`image` values must be in [0, 1] (as output_type 'pt' / 'np' give them), got [{low:.3g}, {high:.3g}]; map [-1, 1] with (x + 1) / 2.")
        return (image * 2 - 1).to(device=self._execution_device, dtype=self.unet.dtype)

    def output_size(self, image: torch.Tensor, height: int | None, width: int | None) -> tuple[int, int]:
        """(height, width) of the result: `upscale_factor` x the image's, a multiple of the U-Net's factor."""
        factor = self.config.upscale_factor
        expected = (image.shape[-2] * factor, image.shape[-1] * factor)
        height, width = expected[0] if height is None else height, expected[1] if width is None else width
        check_unet_size(height, downsample_factor(self.unet), "height")
        check_unet_size(width, downsample_factor(self.unet), "width")
        if (height, width) != expected:
            raise ValueError(
                f"`image` is {image.shape[-2]}x{image.shape[-1]} px but this {factor}x stage was asked for {height}x{width} images: "
                f"pass {height // factor}x{width // factor} px images, or height={expected[0]}, width={expected[1]}."
            )
        return height, width

    def check_noise_level(self, noise_level) -> None:
        steps = self.image_noising_scheduler.config.num_train_timesteps
        if not isinstance(noise_level, int) or isinstance(noise_level, bool) or not 0 <= noise_level < steps:
            raise ValueError(f"`noise_level` must be an integer in [0, {steps}) (0 = no noise augmentation), got {noise_level!r}.")

    def prepare_image_condition(self, image, height, width, noise_level: int, num_images_per_prompt: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, h, w) -> the U-Net's image input (N, 3, H, W), upsampled and noise-augmented, and the level (N,).
        Image i's augmentation noise comes from generator i when a list is given."""
        image = upsample(image.repeat_interleave(num_images_per_prompt, dim=0), (height, width))
        levels = torch.full((len(image),), noise_level, device=image.device, dtype=torch.long)
        if isinstance(generator, list):
            augmented = torch.cat([noise_augment(image[i : i + 1], levels[i : i + 1], self.image_noising_scheduler, g) for i, g in enumerate(generator)])
        else:
            augmented = noise_augment(image, levels, self.image_noising_scheduler, generator)
        return augmented, levels

    @property
    def self_conditioned(self) -> bool:
        return False  # the U-Net's extra input channels are the low-resolution image (superres_unet_input)

    def model_output(self, sample: torch.Tensor, t: torch.Tensor, prompt_embeds: ConceptPromptEmbeds, self_condition: torch.Tensor | None = None) -> torch.Tensor:
        """One U-Net call on the scaled noisy sample (N or 2N under guidance, 3, H, W) beside the image condition
        (`self_condition` is always None: these U-Nets are not self-conditioned)."""
        condition, levels = self._image_condition
        repeats = len(sample) // len(condition)  # 2 under classifier-free guidance: [unconditional, conditional]
        model_input = superres_unet_input(sample, condition.repeat(repeats, 1, 1, 1))  # (N', 6, H, W)
        kwargs = {**superres_unet_kwargs(prompt_embeds, levels.repeat(repeats)), "cross_attention_kwargs": self._cross_attention_kwargs}
        if not self._tile_size:
            return self.unet(model_input, t, **kwargs).sample
        return self.tiled_model_output(model_input, t, kwargs, self._tile_size)

    def tiled_model_output(self, model_input: torch.Tensor, t: torch.Tensor, unet_kwargs: dict, tile: int) -> torch.Tensor:
        """The U-Net on `tile` x `tile` windows of `model_input` (N', 6, H, W) overlapping by a quarter tile, each output
        pixel the mean over the windows that hold it (MultiDiffusion's blending, https://arxiv.org/abs/2302.08113)."""
        height, width = model_input.shape[-2:]
        tile_h, tile_w = min(tile, height), min(tile, width)
        out = model_input.new_zeros(len(model_input), self.unet.config.out_channels, height, width)
        count = model_input.new_zeros(1, 1, height, width)
        for y in tile_origins(height, tile_h, tile_h // 4):
            for x in tile_origins(width, tile_w, tile_w // 4):
                window = (Ellipsis, slice(y, y + tile_h), slice(x, x + tile_w))
                out[window] += self.unet(model_input[window], t, **unet_kwargs).sample
                count[window] += 1
        return out / count

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: PipelineImageInput | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = DEFAULT_SUPERRES_GUIDANCE,
        noise_level: int = DEFAULT_NOISE_LEVEL,
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
        tile_size: int | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""Upscale `image` guided by `prompt`.

        Args:
            prompt (`str` or `list[str]`): caption(s), one per image; or pass `prompt_embeds` instead.
            image (PIL image(s), numpy (B, h, w, 3) or torch (B, 3, h, w) in [0, 1], or a list of arrays / tensors): the
                low-resolution images, one per prompt (each used `num_images_per_prompt` times).
            height, width (`int`, *optional*): output size; `upscale_factor` x the image's (the only size it makes).
            num_inference_steps (`int`, defaults to 20): denoising steps.
            guidance_scale (`float`, defaults to 1.0): classifier-free guidance on the caption; <= 1 disables it.
            noise_level (`int`, defaults to 100): noise augmentation of the upsampled image, a timestep of
                `image_noising_scheduler` in [0, 1000); 0 = none. Higher hides more of the input's flaws, and more detail.
            negative_prompt, num_images_per_prompt, generator, latents, prompt_embeds, negative_prompt_embeds,
            output_type, return_dict, cross_attention_kwargs, callback_on_step_end, callback_on_step_end_tensor_inputs:
                as in [`ConceptDiffusionPipeline.__call__`].
            tile_size (`int`, *optional*): U-Net window side (see the class docstring); None: `config.tile_size`; 0: the
                whole image at once.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        # 1. Check inputs: the image and noise level here, the rest as the text-to-image pipeline checks them
        image = self.preprocess_image(image)  # (B, 3, h, w) in [-1, 1]
        height, width = self.output_size(image, height, width)
        self.check_noise_level(noise_level)
        tile_size = self.config.tile_size if tile_size is None else tile_size
        if tile_size:
            check_unet_size(tile_size, downsample_factor(self.unet), "tile_size")
        batch_size = self.check_inputs(
            prompt, negative_prompt, prompt_embeds, negative_prompt_embeds, height, width, num_inference_steps,
            guidance_scale, num_images_per_prompt, generator, latents, output_type, callback_on_step_end_tensor_inputs,
        )
        if len(image) != batch_size:
            raise ValueError(f"`image` holds {len(image)} images for {batch_size} prompts; pass one image per prompt.")
        self._guidance_scale, self._interrupt, self._cross_attention_kwargs = guidance_scale, False, cross_attention_kwargs
        # 2. Encode the prompts: conditional and unconditional, one row per output image
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, num_images_per_prompt, self.do_classifier_free_guidance, negative_prompt, prompt_embeds, negative_prompt_embeds
        )
        # 3. The image condition: upsampled (N, 3, H, W), noised to noise_level
        self._image_condition = self.prepare_image_condition(image, height, width, noise_level, num_images_per_prompt, generator)
        self._tile_size = tile_size or 0
        # 4. Timesteps and starting noise (N, 3, H, W)
        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        latents = self.prepare_latents(len(prompt_embeds), height, width, generator, latents)
        # 5. Denoise
        latents = self.denoise(latents, prompt_embeds, negative_prompt_embeds, generator, callback_on_step_end, callback_on_step_end_tensor_inputs)
        self._image_condition = None
        # 6. Post-process
        images = self.postprocess(latents, output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


def join_image_list(images: list[np.ndarray] | list[torch.Tensor]) -> np.ndarray | torch.Tensor:
    """A list of numpy arrays or tensors, each one image (3-d) or a batch (4-d), -> one batch, as diffusers' image
    processors join a `PipelineImageInput` list."""
    if len({type(i) for i in images}) > 1:
        raise ValueError("`image` mixes numpy arrays and torch tensors; pass a list of one kind.")
    shapes = {tuple(i.shape[-3:]) for i in images}
    if len(shapes) > 1 or any(i.ndim not in (3, 4) for i in images):
        raise ValueError(f"`image` holds images of shapes {sorted(tuple(i.shape) for i in images)}; pass 3-d images or 4-d batches of one size.")
    batches = [i[None] if i.ndim == 3 else i for i in images]
    return np.concatenate(batches) if isinstance(images[0], np.ndarray) else torch.cat(batches)


register_with_diffusers(ConceptSuperResolutionPipeline)

__all__ = ["DEFAULT_NOISE_LEVEL", "ConceptSuperResolutionPipeline"]
