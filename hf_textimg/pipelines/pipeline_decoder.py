"""One-shot text-to-image: caption -> concept code (text tower) -> pixels (decoder), one forward pass each.

    from hf_textimg.pipelines.pipeline_decoder import DecoderPipeline

    pipe = DecoderPipeline.from_pretrained("outputs/decoder-shapes")   # or DiffusionPipeline.from_pretrained
    images = pipe(["a red circle at the top left", "two blue squares"], num_images_per_prompt=4,
                  generator=torch.Generator().manual_seed(0)).images

Varied images for one prompt: when the decoder was built with `noise_dim > 0`, every image gets its own noise
vector, drawn from a standard normal with `generator` (or passed in as `noise`), which the decoder reads beside the
prompt's code. Training teaches it to spend that noise on what the caption leaves open (where an unplaced object
goes, its size, the layout of a count). With `noise_dim == 0` there is no noise: the image is a deterministic
function of the prompt, and `num_images_per_prompt` copies are identical.

Image concepts instead of a prompt (`image_embeds=`, as diffusers' `KandinskyV22Pipeline` takes them): a decoder trained
with `--objective reconstruct` renders the frozen image encoder's codes, which an unCLIP prior samples from a caption
(`ConceptPriorPipeline`; both in one: `ConceptUnCLIPPipeline`).
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from diffusers.models.modeling_utils import ModelMixin
from transformers import PreTrainedModel
from ..data.prompts import check_class_prompt_template, check_prompt_normalization, split_class_prompt
from ..utils.checks import check_finite_images, check_int, check_tensor
from .chunking import concat_outputs, default_max_batch_size, image_chunks
from .pipeline_utils import TextToImageMixin, register_with_diffusers
from .prompt_embeds import text_features


class DecoderPipeline(TextToImageMixin, DiffusionPipeline):
    r"""Text -> concept -> image in one decoder pass.

    Components:
        tokenizer ([`~transformers.PreTrainedTokenizerFast`]): the caption tokenizer the text tower was trained with.
        text_encoder ([`ConceptTextModel`]): caption -> unit-norm concept code (`text_embeds`, (B, code_dim)).
        decoder ([`ConceptDecoder`]): code [+ noise] -> image in [-1, 1].
        prompt_normalization (`str`, *optional*): the rewrite training applied to every caption (see
            `hf_textimg.data.prompts`); applied to every prompt before tokenizing.
        class_names (`list[str]`, *optional*): with a decoder that reads class labels (`num_class_embeds`), the name
            of each label, e.g. the styles of a data set; `class_labels` may then name them.
        class_prompt_template (`str`, *optional*): how training captions named the class, e.g.
            `"{prompt}, {class_name} style"`. A prompt written that way with one of `class_names` gives the text
            tower its `{prompt}` part only and the decoder that class ("crab, noto style": "crab" and "noto"); any
            other prompt gets "no class" unless `class_labels` says otherwise.
    """

    model_cpu_offload_seq = "text_encoder->decoder"

    def __init__(
        self, tokenizer, text_encoder: PreTrainedModel, decoder: ModelMixin, prompt_normalization: str | None = None,
        class_names: list[str] | None = None, class_prompt_template: str | None = None,
    ):
        super().__init__()
        check_prompt_normalization(prompt_normalization)
        check_class_prompt_template(class_prompt_template)
        num_classes = getattr(decoder.config, "num_class_embeds", None) if decoder is not None else None
        if class_names is not None and (num_classes is None or len(class_names) != num_classes or len(set(class_names)) != len(class_names)):
            raise ValueError(f"class_names ({class_names}) must name each of the decoder's {num_classes or 0} class labels once "
                             "(ConceptDecoder's num_class_embeds).")
        if class_prompt_template is not None and class_names is None:
            raise ValueError("class_prompt_template reads class names from prompts; it needs class_names.")
        # any component may be None (e.g. a pipeline that only encodes prompts); check widths when both are there
        if text_encoder is not None and decoder is not None and text_encoder.config.projection_dim != decoder.config.code_dim:
            raise ValueError(
                f"text_encoder makes {text_encoder.config.projection_dim}-d codes but decoder.config.code_dim is "
                f"{decoder.config.code_dim}; they must match."
            )
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, decoder=decoder)
        self.register_to_config(prompt_normalization=prompt_normalization)
        if class_names is not None:  # only then, so that model_index.json of a decoder without classes is unchanged
            self.register_to_config(class_names=list(class_names), class_prompt_template=class_prompt_template)

    def split_class_prompts(self, prompts: list[str]) -> tuple[list[str], list[str | None]]:
        """Each prompt's part for the text tower and the class it names, per `class_prompt_template` (else the
        prompts unchanged and no class)."""
        template = getattr(self.config, "class_prompt_template", None)
        if template is None:
            return prompts, [None] * len(prompts)
        parts = [split_class_prompt(prompt, template, self.config.class_names) for prompt in prompts]
        return [text for text, _ in parts], [name for _, name in parts]

    def prepare_class_labels(self, prompts: list[str] | None, class_labels, batch_size: int) -> torch.Tensor | None:
        """(batch_size,) labels, -1 for "no class": `class_labels` as given (ints or `class_names`, None for no class),
        else the classes the prompts name; None when the decoder reads no class labels."""
        num_classes = getattr(self.decoder.config, "num_class_embeds", None)
        if num_classes is None:
            if class_labels is not None:
                raise ValueError("`class_labels` was given but this decoder reads none (its num_class_embeds is None); drop it.")
            return None
        if class_labels is None:
            class_labels = self.split_class_prompts(prompts)[1] if prompts is not None else [None] * batch_size
        elif isinstance(class_labels, (int, str)):
            class_labels = [class_labels] * batch_size
        class_labels = class_labels.tolist() if isinstance(class_labels, torch.Tensor) else list(class_labels)
        if len(class_labels) != batch_size:
            raise ValueError(f"`class_labels` must give one label per prompt ({batch_size}), got {len(class_labels)}.")
        names = list(getattr(self.config, "class_names", None) or [])
        labels = []
        for label in class_labels:
            if label is None:
                labels.append(-1)
            elif isinstance(label, str) and label in names:
                labels.append(names.index(label))
            elif isinstance(label, int) and not isinstance(label, bool) and -1 <= label < num_classes:
                labels.append(label)
            else:
                raise ValueError(f"`class_labels` entry {label!r} is not a class of this decoder: pass one of {names or list(range(num_classes))}, "
                                 f"an integer in [-1, {num_classes}) or None (no class).")
        return torch.tensor(labels, dtype=torch.long, device=self._execution_device)

    def check_inputs(
        self, prompt, prompt_embeds, num_images_per_prompt: int, generator, noise, output_type: str, height=None, width=None,
        image_embeds=None, negative_image_embeds=None,
    ) -> int:
        """Raise a ValueError naming the argument for anything that cannot work; return the number of prompts (or of
        `image_embeds` rows)."""
        if sum(x is not None for x in (prompt, prompt_embeds, image_embeds)) != 1:
            raise ValueError("Pass exactly one of `prompt`, `prompt_embeds` and `image_embeds`.")
        what = {"prompt_embeds": "concept codes (prompts, {}) (see encode_prompt)", "image_embeds": "image concepts (rows, {}) (e.g. "
                "ConceptPriorPipeline's image_embeds)", "negative_image_embeds": "image concepts (rows, {}), as many as image_embeds"}
        for name, codes in (("prompt_embeds", prompt_embeds), ("image_embeds", image_embeds), ("negative_image_embeds", negative_image_embeds)):
            self.check_codes(codes, name, what[name])
        if negative_image_embeds is not None and (image_embeds is None or len(negative_image_embeds) != len(image_embeds)):
            raise ValueError("`negative_image_embeds` goes with `image_embeds` (Kandinsky's convention), one row per row of it.")
        batch_size = len(self.check_prompt(prompt)) if prompt is not None else len(prompt_embeds if prompt_embeds is not None else image_embeds)
        self.check_common_inputs(batch_size, num_images_per_prompt, generator, output_type)
        self.check_size(height, width)
        noise_dim, n = self.decoder.config.noise_dim, batch_size * num_images_per_prompt
        if noise is not None:
            if noise_dim == 0:
                raise ValueError("`noise` was given but this decoder has noise_dim=0 (deterministic); pass noise=None.")
            if isinstance(noise, torch.Tensor) and tuple(noise.shape) != (n, noise_dim):
                raise ValueError(f"`noise` must be a tensor of shape ({n}, {noise_dim}) (prompts x images per prompt, noise_dim), got {tuple(noise.shape)}.")
            check_tensor(noise, "`noise`", (n, noise_dim))
        return batch_size

    def check_codes(self, codes, name: str, what: str) -> None:
        """None, or a (rows, decoder.config.code_dim) tensor of finite numbers; else a ValueError naming `name`."""
        if codes is None:
            return
        code_dim = self.decoder.config.code_dim
        if not isinstance(codes, torch.Tensor) or codes.ndim != 2 or codes.shape[1] != code_dim:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"`{name}` must be a tensor of {what.format(code_dim)}: this decoder reads {code_dim}-d codes; got {shape}.")
        check_tensor(codes, f"`{name}`")

    def check_size(self, height: int | None, width: int | None) -> None:
        """`height` / `width` are None or the one size this decoder makes."""
        size = self.decoder.config.image_size
        for name, value in (("height", height), ("width", width)):
            if value is not None and value != size:
                raise ValueError(f"`{name}`={value!r} is not supported: this decoder makes {size}x{size} images only; leave it unset or pass {size}.")

    @torch.no_grad()
    def encode_prompt(
        self, prompt: str | list[str] | None, num_images_per_prompt: int = 1, prompt_embeds: torch.Tensor | None = None
    ) -> tuple[torch.Tensor]:
        """`(prompt_embeds,)`: unit-norm concept codes (prompts * num_images_per_prompt, code_dim), each prompt's code
        repeated in place; a tuple, as diffusers pipelines' `encode_prompt` returns, here of one.

        Needs only the tokenizer and text encoder (the decoder may be None); `__call__` takes the codes back as
        `prompt_embeds` (with `num_images_per_prompt=1` they are one row per prompt)."""
        if prompt_embeds is None:
            if self.text_encoder is None or self.tokenizer is None:
                raise ValueError("This pipeline has no tokenizer / text_encoder to encode `prompt`; pass `prompt_embeds` instead.")
            batch = self.tokenize_prompt(self.split_class_prompts(self.check_prompt(prompt))[0])  # a named class is the decoder's
            prompt_embeds = text_features(self.text_encoder, batch["input_ids"], batch["attention_mask"])[1]  # (B, D)
        prompt_embeds = prompt_embeds.to(self._execution_device).repeat_interleave(num_images_per_prompt, dim=0)  # (B * n, D)
        return (prompt_embeds,)

    def prepare_noise(self, batch_size: int, generator, noise: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """(batch_size, noise_dim) standard-normal noise from `generator` (one generator, or one per image), the
        given `noise`, or None when the decoder takes none."""
        noise_dim = self.decoder.config.noise_dim
        if noise_dim == 0:
            return None
        if noise is None:
            noise = randn_tensor((batch_size, noise_dim), generator=generator, device=self._execution_device, dtype=dtype)
        return noise.to(device=self._execution_device, dtype=dtype)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, noise: torch.Tensor | None, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(codes.to(self.decoder.dtype), noise, class_labels).sample  # (B, 3, S, S) in [-1, 1]

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        noise: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        height: int | None = None,
        width: int | None = None,
        prompt_embeds: torch.Tensor | None = None,
        max_batch_size: int | None = None,
        image_embeds: torch.Tensor | None = None,
        negative_image_embeds: torch.Tensor | None = None,
        class_labels: list[int | str | None] | torch.Tensor | int | str | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""Generate images for `prompt`.

        Args:
            prompt (`str` or `list[str]`): one caption or a non-empty list of captions; or pass `prompt_embeds`.
            num_images_per_prompt (`int`, defaults to 1): images per caption, in order (all images of prompt 0 first).
            generator (`torch.Generator` or a list of one per image, *optional*): seeds the decoder noise. Ignored
                when the decoder has `noise_dim=0`.
            noise (`torch.Tensor` of shape `(len(prompts) * num_images_per_prompt, noise_dim)`, *optional*): the
                decoder noise itself, instead of drawing it with `generator`.
            output_type (`str`, defaults to `"pil"`): `"pil"`, `"np"` ((B, H, W, 3) in [0, 1]), `"pt"`
                ((B, 3, H, W) in [0, 1]) or `"latent"` (the decoder's output itself, (B, 3, H, W) in [-1, 1]).
            return_dict (`bool`, defaults to `True`): return an `ImagePipelineOutput` rather than a tuple.
            height, width (`int`, *optional*): accepted for the common pipeline signature; the decoder makes
                `decoder.config.image_size` square images only, so any other value is a ValueError.
            prompt_embeds (`torch.Tensor` of shape `(prompts, code_dim)`, *optional*): concept codes to decode instead
                of encoding `prompt` (e.g. from `encode_prompt`, or a mix of two); used as given, not re-normalised.
            max_batch_size (`int`, *optional*): images per decoder pass, which bounds memory. Default: as many as make
                131,072 pixels (128 images at 32x32). The images do not depend on it (the noise of all images is drawn
                first; see `hf_textimg.pipelines.chunking`).
            image_embeds (`torch.Tensor` of shape `(rows, code_dim)`, *optional*): image concepts to decode instead of a
                prompt, e.g. the `image_embeds` of a [`ConceptPriorPipeline`] (the unCLIP route: a decoder trained with
                `--objective reconstruct` renders the frozen image encoder's codes); each row gives
                `num_images_per_prompt` images, as in diffusers' `KandinskyV22Pipeline`. Used as given.
            negative_image_embeds (`torch.Tensor` of shape `(rows, code_dim)`, *optional*): accepted (and checked) so that
                a prior's whole output can be passed on as in Kandinsky; a one-shot decoder has no guidance to use it for.
            class_labels (one per prompt, or one for all, *optional*): only for a decoder that reads class labels
                (`num_class_embeds`): a name from `class_names`, an index, or None ("no class"). Default: the class
                each prompt names by `class_prompt_template` (e.g. "crab, noto style"), else none.
        """
        # 1. Check inputs
        batch_size = self.check_inputs(
            prompt, prompt_embeds, num_images_per_prompt, generator, noise, output_type, height, width, image_embeds, negative_image_embeds
        )
        prompt_embeds = image_embeds if image_embeds is not None else prompt_embeds  # from here on both are codes to decode
        labels = self.prepare_class_labels(self.check_prompt(prompt) if prompt is not None else None, class_labels, batch_size)  # (B,) or None
        if labels is not None:
            labels = labels.repeat_interleave(num_images_per_prompt)  # (B * n,), one per image
        if max_batch_size is not None:
            check_int(max_batch_size, "`max_batch_size`")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        num_images, size, parts = batch_size * num_images_per_prompt, self.decoder.config.image_size, []
        for start, end in image_chunks(num_images, max_batch_size or default_max_batch_size(size, size)):
            # 2. Encode the chunk's prompts (or take their codes) into concept codes, one row per image
            first, last = start // num_images_per_prompt, (end - 1) // num_images_per_prompt + 1  # prompts [first, last)
            rows = lambda x: None if x is None else x[first:last]  # noqa: E731
            (codes,) = self.encode_prompt(rows(prompts), num_images_per_prompt, rows(prompt_embeds))
            codes = codes[start - first * num_images_per_prompt : end - first * num_images_per_prompt]  # (chunk, code_dim)
            # 3. The decoder noise of every image, drawn at the first chunk as one batch draws it (so chunking changes no image)
            if start == 0:
                noise = self.prepare_noise(num_images, generator, noise, codes.dtype)  # (B * n, noise_dim) or None
            # 4. Decode; NaN or inf is an error, never a black image
            images = self.decode(codes, None if noise is None else noise[start:end], None if labels is None else labels[start:end])
            check_finite_images(images, f"from the decoder (images {start}-{end - 1})")
            # 5. Post-process
            parts.append(self.postprocess(images, output_type))
        images = concat_outputs(parts, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


# Folders saved before the decoder had its own module name it ["hf_textimg.autoencoder.modeling_autoencoder", "ConceptDecoder"].
register_with_diffusers(DecoderPipeline, former_modules=("hf_textimg.autoencoder.modeling_autoencoder",))

__all__ = ["DecoderPipeline"]
