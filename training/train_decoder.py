"""Train the concept decoder (512-d code -> pixels) and save a complete one-shot `DecoderPipeline`.

    # 1. a concept model (text + image towers in one space), e.g. contrastive
    accelerate launch training/train_concept.py --output_dir outputs/concept-shapes
    # 2. the decoder on its codes
    accelerate launch training/train_decoder.py --concept_model_path outputs/concept-shapes \
        --objective both --output_dir outputs/decoder-shapes

Objectives (`--objective`); "the frozen image encoder" is the concept model's image tower, or the auto-encoder's
encoder with `--autoencoder_path`, and never changes:

- `reconstruct`: code = image_encoder(image); loss = reconstruct_weight * pixel_loss(decoder(code), image).
- `consistency`: code 1 = text_encoder(caption); generated = decoder(code 1); code 2 = image_encoder(generated);
  loss = consistency_weight * (1 - cos(code 1, code 2)) + pixel_weight * pixel_loss(generated, image).
  The text tower is frozen unless `--train_text_encoder`; code 1 is then still a fixed target (detached), so the
  text tower learns only through the decoder's input, never by moving the target to what the decoder makes.
- `both`: the sum of the two.

`--reconstruct_consistency_weight w` (reconstruct/both) adds w * (1 - cos(code, image_encoder(decoder(code)))): the image
drawn from an image code must encode back to that code. That is the consistency loss of the unCLIP route
(`train_prior.py`), whose decoder only ever reads image codes (a prior's samples), never text codes.

The pixel loss is MSE (+ `--l1_weight` * L1); with `--pixel_shift_tolerance t`, the smallest over the real image
moved by up to t pixels (for data that jitter objects by a few pixels no caption names, as Shapes does). With
`--noise_dim N` the decoder also reads N numbers that the pipeline draws from a standard normal. A caption leaves
things open (where "a red circle" goes, how big it is); trained with a plain pixel loss the decoder draws the
average of every answer, faint copies in every cell. `--noise_objective` decides how the noise learns to pick one
answer instead:

- `vae` (default; a conditional VAE, https://arxiv.org/abs/1312.6114): a small training-only posterior encoder reads
  the real image and the code and proposes the noise (mean, log-variance); the decoder reconstructs from the code plus that noise,
  and `--kl_weight` * KL(posterior || N(0, I)) keeps the noise close to the standard normal the pipeline draws. The
  posterior also reads the code, so the noise carries only what the code does not say (layout, size).
- `imle` (implicit maximum likelihood): `--noise_samples K` draws are decoded and only the one closest to the real
  image is trained.

A text tower trained with `train_concept.py --objective regress` plugs in the same way: its folder holds the regressed
text tower and the frozen image tower it was taught to predict.

The output folder is a `DecoderPipeline` (`DecoderPipeline.from_pretrained(dir)` or
`DiffusionPipeline.from_pretrained(dir)` after `import hf_textimg`), plus `eval_results.json`; on Shapes that holds
the Shapes scorer's results on its benchmark prompts, which training never sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import datasets
import torch
import torch.nn.functional as F

from hf_textimg.autoencoder import ConceptAutoencoder, ConceptImageEncoder, reconstruction_loss
from hf_textimg.concept import ConceptVisionModel
from hf_textimg.concept.clip import is_clip_checkpoint, load_text_tower
from hf_textimg.data.loading import ImageTextCollator
from hf_textimg.data.prompts import check_class_prompt_template, split_class_prompt
from hf_textimg.decoder import ConceptDecoder
from hf_textimg.hub import write_card_and_push
from hf_textimg.pipelines.pipeline_decoder import DecoderPipeline
from hf_textimg.pipelines.prompt_embeds import text_features
from hf_textimg.data.emoji_arguments import EmojiDataArguments
from hf_textimg.shapes import ShapesDataArguments, evaluate_shapes
from hf_textimg.training import (
    TensorImageTextDataset,
    TrainConfig,
    build_accelerator,
    build_optimizer,
    check_text_encoder_lr,
    build_train_dataloader,
    end_training,
    load_or_train_tokenizer,
    load_split,
    param_groups,
    parse_args,
    run_result,
    set_memory_format,
    tracker_config,
    train_loop,
    write_eval_results,
)
from hf_textimg.training.checkpointing import final_save
from hf_textimg.training.entry import run_script


@dataclass
class DecoderTrainConfig(TrainConfig):
    objective: Literal["reconstruct", "consistency", "both"] = field(
        default="both", metadata={"help": "reconstruct: image code -> image; consistency: caption code -> image whose code matches; both: the sum."}
    )
    concept_model_path: str | None = field(
        default=None,
        metadata={"help": "A trained ConceptModel folder (train_concept.py): text tower, tokenizer and, by default, the frozen image encoder."},
    )
    autoencoder_path: str | None = field(
        default=None, metadata={"help": "A trained ConceptAutoencoder folder whose encoder becomes the frozen image encoder."}
    )
    train_text_encoder: bool = field(default=False, metadata={"help": "consistency/both: also train the text tower (frozen by default)."})
    text_encoder_lr: float | None = field(
        default=None, metadata={"help": "Learning rate of the trained text tower (default: --learning_rate); ~1/10 keeps what the "
                                "concept model learned (see train_diffusion.py)."},
    )
    reconstruct_weight: float = field(default=1.0, metadata={"help": "Weight of the reconstruct loss."})
    consistency_weight: float = field(
        default=0.1,
        metadata={"help": "Weight of 1 - cos(text code, code of the generated image); keep it well below the pixel loss, "
                  "which alone keeps the decoder from drawing patterns that merely fool the image encoder."},
    )
    pixel_weight: float = field(default=1.0, metadata={"help": "consistency: weight of the pixel loss of the generated image against the real one."})
    reconstruct_consistency_weight: float = field(
        default=0.0, metadata={"help": "reconstruct/both: weight of 1 - cos(image code, code of the image decoded from it), the "
                               "consistency loss on image codes (the unCLIP route's decoder: train_prior.py)."},
    )
    l1_weight: float = field(default=0.0, metadata={"help": "Pixel loss = MSE + l1_weight * L1."})
    foreground_weight: float = field(
        default=0.0, metadata={"help": "Pixels that are not white in the target weigh (1 + this) times in the pixel loss."}
    )
    pixel_shift_tolerance: int = field(
        default=0, metadata={"help": "Pixel loss = the smallest over the target moved by up to this many pixels (Shapes' jitter: 1 at "
                             "32 px), so where the caption cannot say does not blur the drawing (hf_textimg.autoencoder.reconstruction_loss)."},
    )
    noise_dim: int = field(default=16, metadata={"help": "Decoder noise inputs (0: one deterministic image per prompt)."})
    noise_objective: Literal["vae", "imle"] = field(
        default="vae", metadata={"help": "How the noise learns what captions leave open: vae (posterior encoder + KL) or imle (best of --noise_samples)."}
    )
    kl_weight: float = field(default=1e-2, metadata={"help": "vae: weight of KL(posterior || N(0, I)), in nats per image, against the mean pixel loss."})
    posterior_block_out_channels: list[int] = field(
        default_factory=lambda: [16, 32, 64, 64], metadata={"help": "vae: width per level of the training-only posterior encoder."}
    )
    noise_samples: int = field(default=4, metadata={"help": "imle: the pixel loss is the best of this many noise draws (> 1 needs --noise_dim)."})
    decoder_block_out_channels: list[int] = field(
        default_factory=lambda: [128, 64, 32, 16], metadata={"help": "Decoder width per level, lowest resolution first."}
    )
    layers_per_block: int = field(default=1, metadata={"help": "Decoder residual blocks per level."})
    decoder_code_conditioning: Literal["input", "scale_shift"] = field(
        default="input", metadata={"help": "Where the decoder reads the code: the first feature map only (input), or also every "
                                   "residual block's scale and shift (scale_shift; ConceptDecoder's code_conditioning)."},
    )
    norm_num_groups: int = field(default=8, metadata={"help": "Decoder GroupNorm groups (must divide every width)."})
    class_column: str | None = field(
        default=None, metadata={"help": "A column of categories (e.g. the Emoji set's `style`) that the decoder reads as its own input, "
                                "apart from the caption's content (ConceptDecoder's num_class_embeds), so that content and style can "
                                "change alone. Its train split's values become the pipeline's class_names."},
    )
    class_prompt_template: str | None = field(
        default=None, metadata={"help": "With --class_column: how a prompt names the class, e.g. \"{prompt}, {class_name} style\". The "
                                "pipeline then reads the class from such a prompt and gives the text tower the rest; training captions "
                                "written that way are cut the same way."},
    )
    class_dropout_prob: float = field(
        default=0.1, metadata={"help": "With --class_column: share of training images decoded with \"no class\", so that a prompt "
                               "that names none still works."},
    )
    class_embed_dim: int = field(default=64, metadata={"help": "With --class_column: size of the learned class vectors."})
    class_conditioning: Literal["code", "scale_shift"] = field(
        default="code", metadata={"help": "With --class_column: where the decoder reads the class vector: wherever it reads the code (code), "
                                  "or only its residual blocks' scale and shift (scale_shift; with --decoder_code_conditioning input the "
                                  "code alone then sets the layout and the class modulates it, as AdaIN gives a style)."},
    )
    eval_prompts_per_category: int = field(
        default=50, metadata={"help": "Benchmark prompts per category (Shapes) or per prompt set (Emoji: "
                              "hf_textimg.evaluation.emoji_eval) at each evaluation; 0 = no scoring."}
    )
    eval_batch_size: int = field(default=64, metadata={"help": "Prompts per pipeline call when scoring a benchmark."})

    def validate(self) -> None:
        super().validate()
        if not self.concept_model_path:
            raise ValueError("Pass --concept_model_path (a train_concept.py output folder): the pipeline needs its text tower and tokenizer.")
        if not self.caption_column:
            raise ValueError("--caption_column is empty, but the decoder pipeline is text-to-image: name the caption column.")
        for name in ("reconstruct_weight", "consistency_weight", "pixel_weight", "l1_weight", "foreground_weight", "pixel_shift_tolerance",
                     "noise_dim", "kl_weight", "reconstruct_consistency_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}.")
        check_text_encoder_lr(self)
        if self.noise_samples < 1:
            raise ValueError(f"--noise_samples must be >= 1, got {self.noise_samples}.")
        if self.noise_objective == "imle" and self.noise_samples > 1 and self.noise_dim == 0:
            raise ValueError("--noise_samples > 1 picks the best of several noise draws; it needs --noise_dim > 0.")
        if self.eval_prompts_per_category < 0:
            raise ValueError(f"--eval_prompts_per_category must be >= 0 (0: no scoring), got {self.eval_prompts_per_category}.")
        if self.eval_batch_size < 1:
            raise ValueError(f"--eval_batch_size must be >= 1, got {self.eval_batch_size}.")
        if self.reconstruct_consistency_weight and self.objective == "consistency":
            raise ValueError("--reconstruct_consistency_weight needs --objective reconstruct or both (it checks decoded image codes).")
        if not 0 <= self.class_dropout_prob < 1:
            raise ValueError(f"--class_dropout_prob must be in [0, 1), got {self.class_dropout_prob}.")
        if self.class_prompt_template is not None and not self.class_column:
            raise ValueError("--class_prompt_template says how prompts name a class; it needs --class_column.")
        check_class_prompt_template(self.class_prompt_template, "--class_prompt_template")
        if self.train_text_encoder and self.objective == "reconstruct":
            raise ValueError("--train_text_encoder has no effect with --objective reconstruct (the text tower is not used); drop it.")


# ---- components ------------------------------------------------------------------------------
def load_image_encoder(cfg: DecoderTrainConfig) -> torch.nn.Module:
    """The frozen image encoder: the auto-encoder's encoder, else the concept model's image tower."""
    if cfg.autoencoder_path:
        encoder = ConceptAutoencoder.from_pretrained(cfg.autoencoder_path).encoder
        image_size = encoder.config.image_size
    else:
        if is_clip_checkpoint(cfg.concept_model_path):
            raise ValueError(
                f"--concept_model_path {cfg.concept_model_path} is a CLIP: its text tower is used, but its image tower (224-px, "
                "CLIP-normalised input) is not supported as the decoder's frozen image encoder; pass --autoencoder_path."
            )
        # base_model_prefix lets a tower load its half of a ConceptModel folder.
        encoder = ConceptVisionModel.from_pretrained(cfg.concept_model_path)
        image_size = encoder.config.image_size
    if image_size != cfg.resolution:
        raise ValueError(f"The frozen image encoder takes {image_size}px images but --resolution is {cfg.resolution}.")
    return encoder.requires_grad_(False).eval()


def load_text_encoder(cfg: DecoderTrainConfig) -> torch.nn.Module:
    text_encoder = load_text_tower(cfg.concept_model_path)  # ours, or a CLIP (hf_textimg.concept.clip)
    if cfg.max_length > text_encoder.config.max_position_embeddings:
        raise ValueError(
            f"--max_length {cfg.max_length} exceeds the text tower's max_position_embeddings "
            f"({text_encoder.config.max_position_embeddings}); pass --max_length {text_encoder.config.max_position_embeddings} or less."
        )
    text_encoder.requires_grad_(cfg.train_text_encoder)
    return text_encoder.train(cfg.train_text_encoder)


def build_decoder(cfg: DecoderTrainConfig, code_dim: int, class_names: list[str] | None = None) -> ConceptDecoder:
    return ConceptDecoder(
        num_class_embeds=len(class_names) if class_names else None,
        class_embed_dim=cfg.class_embed_dim,
        class_conditioning=cfg.class_conditioning,
        image_size=cfg.resolution,
        code_dim=code_dim,
        noise_dim=cfg.noise_dim,
        block_out_channels=tuple(cfg.decoder_block_out_channels),
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        code_conditioning=cfg.decoder_code_conditioning,
    )


def class_names_of(cfg: DecoderTrainConfig, train_data) -> list[str] | None:
    """The sorted values of `--class_column` in the train split (None without it)."""
    if not cfg.class_column:
        return None
    if not isinstance(train_data, datasets.Dataset):  # --streaming, or chosen for a large set (resolve_streaming)
        raise ValueError(f"--class_column {cfg.class_column} is read from a split in memory; drop --streaming.")
    if cfg.class_column not in train_data.column_names:
        raise ValueError(f"--class_column {cfg.class_column!r} is not a column of the train split; its columns are {train_data.column_names}.")
    names = sorted({str(value) for value in train_data[cfg.class_column]})
    if len(names) < 2:
        raise ValueError(f"--class_column {cfg.class_column!r} holds {len(names)} value(s) in the train split; a class input needs at least 2.")
    return names


def captions_without_class(cfg: DecoderTrainConfig, data, class_names: list[str] | None):
    """`data` with every caption written by `--class_prompt_template` cut to its prompt part (the pipeline does the
    same to prompts), so that the text tower reads content only."""
    if not cfg.class_prompt_template or not class_names:
        return data
    cut = lambda text: split_class_prompt(text, cfg.class_prompt_template, class_names)[0]  # noqa: E731
    captions = [cut(c) if isinstance(c, str) else [cut(t) for t in c] for c in data[cfg.caption_column]]
    return data.remove_columns(cfg.caption_column).add_column(cfg.caption_column, captions)


def build_pipeline(cfg: DecoderTrainConfig, tokenizer, text_encoder, decoder, class_names: list[str] | None) -> DecoderPipeline:
    return DecoderPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, decoder=decoder, prompt_normalization=cfg.prompt_normalization,
        class_names=class_names, class_prompt_template=cfg.class_prompt_template,  # validate(): a template only with a class column
    )


class NoisePosterior(torch.nn.Module):
    """vae: (real image, the code being decoded) -> mean and log-variance of the decoder noise (B, 2 * noise_dim).

    It reads the code too, so the noise needs to carry only what the code leaves open: a caption that names the
    position keeps it in the code (free), one that does not leaves it to the noise (paid for in KL). Used in
    training only; the pipeline draws the noise from N(0, I).
    """

    def __init__(self, image_size: int, code_dim: int, noise_dim: int, block_out_channels: tuple[int, ...], hidden_dim: int = 128):
        super().__init__()
        self.image_features = ConceptImageEncoder(
            image_size=image_size, code_dim=hidden_dim, block_out_channels=block_out_channels,
            norm_num_groups=min(8, *block_out_channels), normalize_code=False,
        )
        self.head = torch.nn.Sequential(torch.nn.Linear(hidden_dim + code_dim, hidden_dim), torch.nn.SiLU(), torch.nn.Linear(hidden_dim, 2 * noise_dim))

    def forward(self, pixel_values: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.image_features(pixel_values).code, code], dim=-1))  # (B, 2 * noise_dim)


def build_posterior(cfg: DecoderTrainConfig, code_dim: int) -> NoisePosterior | None:
    if cfg.noise_objective != "vae" or cfg.noise_dim == 0:
        return None
    return NoisePosterior(cfg.resolution, code_dim, cfg.noise_dim, tuple(cfg.posterior_block_out_channels))


def code_dim_of(encoder: torch.nn.Module) -> int:
    return encoder.config.code_dim if hasattr(encoder.config, "code_dim") else encoder.config.projection_dim


# ---- losses ------------------------------------------------------------------------------------
def pixel_loss(cfg: DecoderTrainConfig, sample: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """The configured pixel loss of decoded images against real ones (one value per image with `reduce=False`)."""
    return reconstruction_loss(
        sample, target, cfg.l1_weight, reduce=reduce, foreground_weight=cfg.foreground_weight, shift_tolerance=cfg.pixel_shift_tolerance
    )


def draw_noise(cfg: DecoderTrainConfig, batch_size: int, device) -> torch.Tensor | None:
    return torch.randn(batch_size, cfg.noise_dim, device=device) if cfg.noise_dim else None


@torch.no_grad()
def best_noise(cfg: DecoderTrainConfig, decoder, code: torch.Tensor, target: torch.Tensor, labels=None) -> torch.Tensor | None:
    """Per example, the noise (of `noise_samples` draws) whose decoded image is closest to `target`."""
    batch_size = code.shape[0]
    noise = draw_noise(cfg, batch_size, code.device)
    if cfg.noise_samples == 1 or noise is None:
        return noise
    candidates = torch.randn(cfg.noise_samples, batch_size, cfg.noise_dim, device=code.device)  # (K, B, N)
    labels = None if labels is None else labels.repeat(cfg.noise_samples)
    images = decoder(code.repeat(cfg.noise_samples, 1), candidates.flatten(0, 1), labels).sample  # (K * B, 3, R, R)
    errors = pixel_loss(cfg, images, target.repeat(cfg.noise_samples, 1, 1, 1), reduce=False)
    best = errors.view(cfg.noise_samples, batch_size).argmin(dim=0)  # (B,)
    return candidates[best, torch.arange(batch_size, device=code.device)]  # (B, N)


def posterior_noise(posterior, target: torch.Tensor, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised noise drawn from the posterior of each (image, code), and its KL to N(0, I) (mean over the batch)."""
    mean, log_var = posterior(target, code.detach()).float().chunk(2, dim=-1)  # (B, N) each
    log_var = log_var.clamp(-10.0, 10.0)
    noise = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
    kl = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=-1).mean()
    return noise, kl


def make_loss_fn(cfg: DecoderTrainConfig, text_encoder, image_encoder, decoder, posterior=None):
    """batch -> (weighted total, {term: value}) for the configured objective."""
    use_reconstruct = cfg.objective in ("reconstruct", "both")
    use_consistency = cfg.objective in ("consistency", "both")

    def noise_for(code, target, terms, name):
        if posterior is None:
            return None
        noise, kl = posterior_noise(posterior, target, code)
        terms[name] = (cfg.kl_weight, kl)
        return noise

    def compute_loss(batch):
        target = batch["pixel_values"]  # (B, 3, R, R) in [-1, 1]
        terms = {}
        labels = batch.get("class_labels")  # (B,) with --class_column, else None
        if labels is not None and decoder.training and cfg.class_dropout_prob:  # some images with "no class" (-1)
            labels = labels.masked_fill(torch.rand(labels.shape, device=labels.device) < cfg.class_dropout_prob, -1)
        if use_reconstruct:
            with torch.no_grad():
                code = image_encoder.get_image_features(target).pooler_output  # (B, D), frozen
            noise = noise_for(code, target, terms, "kl_reconstruct") if posterior is not None else draw_noise(cfg, len(code), code.device)
            sample = decoder(code, noise, labels).sample
            terms["reconstruct"] = (cfg.reconstruct_weight, pixel_loss(cfg, sample, target))
            if cfg.reconstruct_consistency_weight:  # the drawing must encode back to the code it was drawn from
                code_again = image_encoder.get_image_features(sample).pooler_output  # (B, D); frozen weights, gradient to the image
                terms["reconstruct_consistency"] = (cfg.reconstruct_consistency_weight, 1 - F.cosine_similarity(code, code_again, dim=-1).mean())
        if use_consistency:
            with torch.set_grad_enabled(cfg.train_text_encoder and torch.is_grad_enabled()):
                code1 = text_features(text_encoder, batch["input_ids"], batch["attention_mask"])[1]  # (B, D), unit norm
            noise = noise_for(code1, target, terms, "kl") if posterior is not None else best_noise(cfg, decoder, code1, target, labels)
            generated = decoder(code1, noise, labels).sample  # (B, 3, R, R)
            code2 = image_encoder.get_image_features(generated).pooler_output  # (B, D); frozen weights, gradient flows to the image
            # code 1 is the target, so it is detached: a trained text tower pulled towards whatever the decoder makes
            # collapses every caption onto the code of one average image.
            terms["consistency"] = (cfg.consistency_weight, 1 - F.cosine_similarity(code1.detach(), code2, dim=-1).mean())
            if cfg.pixel_weight:
                terms["pixel"] = (cfg.pixel_weight, pixel_loss(cfg, generated, target))
        total = sum(weight * value for weight, value in terms.values())
        return total, {name: value.detach() for name, (_, value) in terms.items()}

    return compute_loss


# ---- evaluation ----------------------------------------------------------------------------------
def make_evaluator(cfg: DecoderTrainConfig, accelerator, tokenizer, text_encoder, decoder, compute_loss, class_names=None):
    """Validation loss terms (every data set) and the benchmark of the data set (Shapes scorer, or the Emoji retrieval)."""
    val_data = captions_without_class(cfg, load_split(cfg, cfg.validation_split, cfg.max_eval_samples), class_names)
    val_set = TensorImageTextDataset.from_dataset(val_data, cfg.resolution, cfg.image_column, cfg.caption_column, cfg.class_column, class_names)
    val_batches = torch.utils.data.DataLoader(val_set, batch_size=cfg.train_batch_size, collate_fn=ImageTextCollator(tokenizer, cfg.max_length, cfg.prompt_normalization))
    unwrapped_text, unwrapped_decoder = accelerator.unwrap_model(text_encoder), accelerator.unwrap_model(decoder)

    @torch.no_grad()
    def evaluate(state) -> dict:
        unwrapped_decoder.eval()
        unwrapped_text.eval()
        rng_state = torch.get_rng_state()
        torch.manual_seed(cfg.seed)  # same caption choices and noise at every evaluation
        sums, count = {}, 0
        for batch in val_batches:
            batch = {k: v.to(accelerator.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            _, logs = compute_loss(batch)
            for name, value in logs.items():
                sums[f"val_{name}"] = sums.get(f"val_{name}", 0.0) + value.item()
            count += 1
        metrics = {name: total / max(count, 1) for name, total in sums.items()}
        if cfg.eval_prompts_per_category > 0 and (cfg.uses_shapes or cfg.uses_emoji):
            pipeline = build_pipeline(cfg, tokenizer, unwrapped_text, unwrapped_decoder, class_names)
            pipeline.set_progress_bar_config(disable=True)
            if cfg.uses_shapes:
                metrics.update(evaluate_shapes(pipeline, cfg.eval_prompts_per_category, cfg.seed, cfg.eval_batch_size).to_metrics())
            else:
                from hf_textimg.evaluation.emoji_eval import evaluate_emoji_for_config

                generator = torch.Generator().manual_seed(cfg.seed)
                metrics.update(evaluate_emoji_for_config(cfg, lambda batch: pipeline(batch, generator=generator, output_type="np").images))
        torch.set_rng_state(rng_state)
        unwrapped_decoder.train()
        unwrapped_text.train(cfg.train_text_encoder)
        return metrics

    return evaluate


# ---- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(DecoderTrainConfig, argv, ShapesDataArguments, EmojiDataArguments)
    accelerator = build_accelerator(cfg)

    tokenizer = load_or_train_tokenizer(cfg, None, accelerator, pretrained=cfg.concept_model_path)
    text_encoder = load_text_encoder(cfg)
    image_encoder = load_image_encoder(cfg).to(accelerator.device)
    code_dim = text_encoder.config.projection_dim
    if code_dim_of(image_encoder) != code_dim:
        raise ValueError(
            f"The frozen image encoder makes {code_dim_of(image_encoder)}-d codes but the text tower makes {code_dim}-d codes; "
            "the decoder reads both, so they must match (check --autoencoder_path / --concept_model_path)."
        )
    train_data = load_split(cfg, "train", cfg.max_train_samples)
    class_names = class_names_of(cfg, train_data)
    decoder = build_decoder(cfg, code_dim, class_names)
    train_data = captions_without_class(cfg, train_data, class_names)
    dataloader = build_train_dataloader(cfg, train_data, tokenizer, class_column=cfg.class_column, class_names=class_names)
    posterior = build_posterior(cfg, code_dim)
    trained = {"decoder": decoder} | ({"text_encoder": text_encoder} if cfg.train_text_encoder else {}) | ({"posterior": posterior} if posterior else {})
    set_memory_format(cfg, decoder, image_encoder)
    optimizer, lr_scheduler = build_optimizer(cfg, param_groups(trained, {"text_encoder": cfg.text_encoder_lr}))
    prepared = accelerator.prepare(*trained.values(), optimizer, dataloader, lr_scheduler)
    trained = dict(zip(trained, prepared[: len(trained)]))
    optimizer, dataloader, lr_scheduler = prepared[len(trained) :]
    decoder = trained["decoder"]
    text_encoder = trained.get("text_encoder", text_encoder.to(accelerator.device))

    compute_loss = make_loss_fn(cfg, text_encoder, image_encoder, decoder, trained.get("posterior"))
    evaluate = make_evaluator(cfg, accelerator, tokenizer, text_encoder, decoder, compute_loss, class_names)
    if accelerator.is_main_process:
        accelerator.init_trackers("train_decoder", config=tracker_config(cfg))
    state = train_loop(accelerator, cfg, trained, optimizer, lr_scheduler, dataloader, compute_loss, evaluate=evaluate)
    result = run_result(state)
    if accelerator.is_main_process:
        pipeline = build_pipeline(cfg, tokenizer, accelerator.unwrap_model(text_encoder).eval(), accelerator.unwrap_model(decoder).eval(), class_names)
        with final_save(cfg.output_dir) as folder:  # the model already there stays whole if saving fails
            pipeline.save_pretrained(folder)
        write_eval_results(cfg, result)
        write_card_and_push(cfg, argv, __file__)  # README.md model card; --push_to_hub uploads
    end_training(accelerator, cfg)
    return result


if __name__ == "__main__":
    run_script(main)
