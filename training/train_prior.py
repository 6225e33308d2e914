"""Train the unCLIP prior (caption -> image concept) and save a `ConceptPriorPipeline`, and with a decoder the
combined text-to-image `ConceptUnCLIPPipeline`.

    # 1. a concept model (text + image towers in one space)
    python training/train_concept.py --output_dir outputs/concept-shapes
    # 2. a decoder that renders the frozen image tower's codes, on the spec's own (random) layouts
    python training/train_decoder.py --concept_model_path outputs/concept-shapes --objective reconstruct --output_dir outputs/decoder-reconstruct
    # 3. the prior on the same frozen towers; with --decoder_path also the combined pipeline (default: <output_dir>/unclip)
    python training/train_prior.py --concept_model_path outputs/concept-shapes --decoder_path outputs/decoder-reconstruct \
        --output_dir outputs/prior-shapes
    hf-textimg generate "two blue squares" --model outputs/prior-shapes/unclip --num-images 8

What it learns: the frozen text tower reads a caption (token states and pooled concept); the frozen image encoder (the
concept model's image tower, or an auto-encoder's encoder with `--autoencoder_path`) gives the true image concept of
the caption's image; the prior (diffusers' `PriorTransformer`, `hf_textimg.prior`) learns to denoise that concept,
standardised with the training images' per-dimension mean and std (computed once from `--embedding_stats_samples`
training images and stored in the prior), predicting the clean concept (MSE). `--cond_dropout` of the captions become
the empty caption, which the pipeline's classifier-free guidance steers away from. The image concepts of an in-memory
split are computed once before training (`--cache_image_codes`, on by default: the frozen encoder would otherwise be
about a third of every step); a streamed split (`--streaming`) has its concepts computed batch by batch.

Evaluation (every `--validation_steps` and at the end): the validation loss; `val_cosine`, the mean cosine between the
image concepts the prior samples for validation captions and the true concepts of those captions' images, beside
`val_cosine_mean`, the same for the training images' mean concept (what a prior that ignores the caption gets); with
`--decoder_path` on Shapes, the Shapes benchmark of the combined pipeline and a grid of its images.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/train_prior.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from hf_textimg.autoencoder import ConceptAutoencoder
from hf_textimg.concept.clip import load_text_tower
from hf_textimg.data.emoji_arguments import EmojiDataArguments
from hf_textimg.data.loading import ImageTextCollator
from hf_textimg.decoder import ConceptDecoder
from hf_textimg.hub import write_card_and_push
from hf_textimg.pipelines import ConceptPriorPipeline, ConceptUnCLIPPipeline, DecoderPipeline
from hf_textimg.pipelines.checks import set_checked_timesteps
from hf_textimg.pipelines.prompt_embeds import text_features
from hf_textimg.prior import build_prior, normalize_embeds, prior_kwargs, prior_loss, prior_noise_scheduler, set_embedding_stats
from hf_textimg.shapes import ShapesDataArguments, evaluate_shapes
from hf_textimg.tokenization import tokenize_captions
from hf_textimg.training import (
    TensorImageTextDataset,
    TrainConfig,
    build_accelerator,
    build_optimizer,
    build_train_dataloader,
    end_training,
    load_or_train_tokenizer,
    load_split,
    parse_args,
    run_result,
    tracker_config,
    train_loop,
    write_eval_results,
)
from hf_textimg.training.checkpointing import final_save
from hf_textimg.training.entry import run_script
from hf_textimg.utils.image_grid import make_captioned_grid
from training.train_decoder import code_dim_of, load_image_encoder
from training.train_diffusion import default_validation_prompts, drop_captions, log_grid

logger = logging.getLogger(__name__)


@dataclass
class PriorTrainConfig(TrainConfig):
    concept_model_path: str | None = field(
        default=None, metadata={"help": "A trained ConceptModel folder (train_concept.py): the frozen text tower and tokenizer and, "
                                "by default, the frozen image tower whose codes the prior learns to sample."},
    )
    autoencoder_path: str | None = field(
        default=None, metadata={"help": "A trained ConceptAutoencoder folder whose encoder gives the image concepts instead "
                                "(train the decoder with the same flag)."},
    )
    decoder_path: str | None = field(
        default=None, metadata={"help": "A decoder that renders those image concepts: a DecoderPipeline folder (train_decoder.py "
                                "--objective reconstruct, same image encoder) or a ConceptAutoencoder folder. Adds the combined "
                                "pipeline and its Shapes evaluation."},
    )
    unclip_output_dir: str | None = field(
        default=None, metadata={"help": "Where the combined ConceptUnCLIPPipeline goes (with --decoder_path; default <output_dir>/unclip)."}
    )
    prior_num_layers: int = field(default=4, metadata={"help": "PriorTransformer blocks."})
    prior_num_attention_heads: int = field(default=4, metadata={"help": "Attention heads per block."})
    prior_attention_head_dim: int = field(default=32, metadata={"help": "Width per head (the transformer's width is heads x this)."})
    prior_dropout: float = field(default=0.0, metadata={"help": "Dropout inside the transformer blocks."})
    cond_dropout: float = field(default=0.1, metadata={"help": "Fraction of captions replaced by the empty caption (classifier-free guidance)."})
    num_train_timesteps: int = 1000
    embedding_stats_samples: int = field(
        default=4096, metadata={"help": "Training images whose image concepts give the per-dimension mean and std the prior standardises with."}
    )
    cache_image_codes: bool = field(
        default=True, metadata={"help": "Compute every training image's concept once, before training (the frozen encoder is about a "
                                "third of a step otherwise); an in-memory split only: --streaming computes them at every step."},
    )
    eval_num_inference_steps: int = field(default=25, metadata={"help": "Prior sampling steps during evaluation."})
    eval_guidance_scale: float = field(default=4.0, metadata={"help": "Prior guidance during evaluation (the pipelines' default)."})
    eval_cosine_samples: int = field(default=512, metadata={"help": "Validation captions whose sampled concepts are compared to their images' (val_cosine)."})
    eval_prompts_per_category: int = field(default=40, metadata={"help": "With --decoder_path on Shapes: benchmark prompts per category (0 = none)."})
    eval_batch_size: int = field(default=128, metadata={"help": "Captions per pipeline call in evaluation."})
    validation_prompts: list[str] | None = field(default=None, metadata={"help": "With --decoder_path: prompts of the saved grid (default: one Shapes benchmark prompt per category)."})
    validation_images_per_prompt: int = 4

    def validate(self) -> None:
        super().validate()
        if not self.concept_model_path:
            raise ValueError("Pass --concept_model_path (a train_concept.py output folder): the prior reads its text tower and tokenizer.")
        if not self.caption_column:
            raise ValueError("--caption_column is empty, but the prior learns image concepts from captions: name the caption column.")
        if self.unclip_output_dir and not self.decoder_path:
            raise ValueError("--unclip_output_dir is where the combined pipeline goes; it needs --decoder_path.")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"--cond_dropout must be in [0, 1), got {self.cond_dropout}.")
        if not 0.0 <= self.prior_dropout < 1.0:
            raise ValueError(f"--prior_dropout must be in [0, 1), got {self.prior_dropout}.")
        for name in ("prior_num_layers", "prior_num_attention_heads", "prior_attention_head_dim", "num_train_timesteps", "embedding_stats_samples",
                     "eval_num_inference_steps", "eval_cosine_samples", "eval_batch_size", "validation_images_per_prompt"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.eval_prompts_per_category < 0:
            raise ValueError(f"--eval_prompts_per_category must be >= 0 (0: no Shapes scoring), got {self.eval_prompts_per_category}.")
        if not self.eval_guidance_scale >= 0:
            raise ValueError(f"--eval_guidance_scale must be >= 0 (1 = no guidance), got {self.eval_guidance_scale}.")
        try:
            set_checked_timesteps(prior_noise_scheduler(self.num_train_timesteps), self.eval_num_inference_steps)
        except ValueError as error:
            raise ValueError(f"--eval_num_inference_steps {self.eval_num_inference_steps}: {error}") from None

    @property
    def unclip_dir(self) -> str | None:
        if not self.decoder_path:
            return None
        return self.unclip_output_dir or os.path.join(self.output_dir, "unclip")


# ---- components ------------------------------------------------------------------------------
def load_text_encoder(cfg: PriorTrainConfig) -> torch.nn.Module:
    """The frozen text tower; its positions must cover the --max_length tokens the prior reads."""
    text_encoder = load_text_tower(cfg.concept_model_path)
    if cfg.max_length > text_encoder.config.max_position_embeddings:
        raise ValueError(f"--max_length {cfg.max_length} exceeds the text tower's max_position_embeddings "
                         f"({text_encoder.config.max_position_embeddings}); pass --max_length {text_encoder.config.max_position_embeddings} or less.")
    return text_encoder.requires_grad_(False).eval()


def load_decoder(cfg: PriorTrainConfig, code_dim: int) -> ConceptDecoder | None:
    """The decoder of `--decoder_path` (a DecoderPipeline folder, a ConceptAutoencoder folder or a ConceptDecoder folder),
    checked to read `code_dim`-d codes at --resolution; None without the flag."""
    if not cfg.decoder_path:
        return None
    folder = Path(cfg.decoder_path)
    if (folder / "model_index.json").is_file():
        decoder = DecoderPipeline.from_pretrained(folder).decoder
    elif json.loads((folder / "config.json").read_text()).get("_class_name") == "ConceptAutoencoder":
        decoder = ConceptAutoencoder.from_pretrained(folder).decoder
    else:
        decoder = ConceptDecoder.from_pretrained(folder)
    if decoder.config.code_dim != code_dim or decoder.config.image_size != cfg.resolution:
        raise ValueError(
            f"--decoder_path {cfg.decoder_path} reads {decoder.config.code_dim}-d codes into {decoder.config.image_size}px images, but "
            f"the image encoder makes {code_dim}-d codes at --resolution {cfg.resolution}; train the decoder on the same image encoder."
        )
    warn_about_decoder_training(cfg, folder)
    return decoder.requires_grad_(False).eval()


def warn_about_decoder_training(cfg: PriorTrainConfig, folder: Path) -> None:
    """A decoder folder written by train_decoder.py records how it was trained: warn when it never decoded image codes, or
    decoded another image encoder's."""
    results = folder / "eval_results.json"
    config = json.loads(results.read_text()).get("config", {}) if results.is_file() else {}
    if config.get("objective") == "consistency":
        logger.warning("--decoder_path %s was trained with --objective consistency (text codes only); the prior gives it image "
                       "codes. Train it with --objective reconstruct.", folder)
    theirs = config.get("autoencoder_path") or config.get("concept_model_path")
    ours = cfg.autoencoder_path or cfg.concept_model_path
    if theirs and os.path.abspath(theirs) != os.path.abspath(ours):
        logger.warning("--decoder_path %s decodes the codes of %s, but this prior learns those of %s.", folder, theirs, ours)


def image_codes(image_encoder, pixel_values: torch.Tensor) -> torch.Tensor:
    """The frozen image encoder's concepts (B, D) of images (B, 3, R, R) in [-1, 1]."""
    return image_encoder.get_image_features(pixel_values).pooler_output


def code_batches(image_encoder, batches, device):
    """The image concepts (B, D) of each batch of images."""
    for batch in batches:
        yield image_codes(image_encoder, batch["pixel_values"].to(device))


@torch.no_grad()
def image_code_stats(accelerator, codes, max_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std (each (D,)) of the first `max_samples` image concepts of `codes` (an iterable of (B, D)
    batches, per process), pooled over every process so that all of them standardise alike."""
    total = None  # (2D + 1,): sum, sum of squares, count, in float64
    for part in codes:
        count = 0 if total is None else int(total[-1].item())
        part = part[: max_samples - count].double().to(accelerator.device)
        part = torch.cat([part.sum(0), part.pow(2).sum(0), part.new_tensor([len(part)])])
        total = part if total is None else total + part
        if int(total[-1].item()) >= max_samples:
            break
    total = accelerator.reduce(total, reduction="sum") if accelerator.num_processes > 1 else total
    dim = (len(total) - 1) // 2
    mean = total[:dim] / total[-1]
    std = (total[dim:-1] / total[-1] - mean.pow(2)).clamp_min(0).sqrt()
    return mean.float(), std.float()


@torch.no_grad()
def training_codes(cfg: PriorTrainConfig, accelerator, image_encoder, dataloader, train_data):
    """Batches of training image concepts in a fixed order, for the statistics. With --cache_image_codes and an in-memory
    split, every image's concept is computed once here and attached to the split (`image_embeds` in each batch); a
    stream is read by a fresh reader of this process's part (the training loader is left untouched)."""
    if getattr(dataloader, "is_streaming", False):
        return code_batches(image_encoder, build_train_dataloader(cfg, train_data), accelerator.device)
    images = torch.utils.data.DataLoader(dataloader.dataset, batch_size=cfg.eval_batch_size)  # in order, from the start
    if not cfg.cache_image_codes:
        return code_batches(image_encoder, images, accelerator.device)
    codes = torch.cat([c.cpu() for c in code_batches(image_encoder, images, accelerator.device)])  # (N, D)
    dataloader.dataset.extras["image_embeds"] = codes
    logger.info("Cached the image concepts of %d training images.", len(codes))
    return [codes]


def build_model(cfg: PriorTrainConfig, code_dim: int, text_encoder) -> torch.nn.Module:
    """The prior (identity embedding statistics) for `code_dim`-d image concepts, read from `text_encoder`'s outputs."""
    return build_prior(
        embedding_dim=code_dim, text_embed_dim=text_encoder.config.projection_dim, text_hidden_size=text_encoder.config.hidden_size,
        max_length=cfg.max_length, num_layers=cfg.prior_num_layers, num_attention_heads=cfg.prior_num_attention_heads,
        attention_head_dim=cfg.prior_attention_head_dim, dropout=cfg.prior_dropout,
    )


def prior_pipeline(cfg: PriorTrainConfig, tokenizer, text_encoder, prior, normalize: bool) -> ConceptPriorPipeline:
    pipe = ConceptPriorPipeline(tokenizer, text_encoder, prior, prior_noise_scheduler(cfg.num_train_timesteps), cfg.prompt_normalization, normalize)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---- loss ----------------------------------------------------------------------------------------
def make_loss_fn(cfg: PriorTrainConfig, accelerator, prior, text_encoder, image_encoder, noise_scheduler, empty: dict):
    """batch -> (MSE of the clean standardised image concept, {}); captions dropped to `empty` at --cond_dropout."""
    model = accelerator.unwrap_model(prior)  # the config and statistics (`prior` may be DDP-wrapped)

    def compute_loss(batch):
        with torch.no_grad(), accelerator.autocast():
            codes = batch["image_embeds"] if "image_embeds" in batch else image_codes(image_encoder, batch["pixel_values"])  # (B, D)
            target = normalize_embeds(model, codes.float())
            input_ids, attention_mask = drop_captions(batch, empty, cfg.cond_dropout)
            token_states, concept = text_features(text_encoder, input_ids, attention_mask)  # (B, L, H), (B, P)
        text_kwargs = prior_kwargs(model, token_states.float(), attention_mask, concept.float())
        return prior_loss(prior, noise_scheduler, target, text_kwargs), {}

    return compute_loss


# ---- evaluation ----------------------------------------------------------------------------------
def validation_batches(cfg: PriorTrainConfig, tokenizer):
    val_data = load_split(cfg, cfg.validation_split, cfg.max_eval_samples)
    val_set = TensorImageTextDataset.from_dataset(val_data, cfg.resolution, cfg.image_column, cfg.caption_column)
    collate = ImageTextCollator(tokenizer, cfg.max_length, cfg.prompt_normalization)
    return torch.utils.data.DataLoader(val_set, batch_size=cfg.eval_batch_size, collate_fn=collate)


@torch.no_grad()
def cosine_metrics(cfg: PriorTrainConfig, pipe: ConceptPriorPipeline, image_encoder, batches, device) -> dict:
    """Mean cosine of sampled image concepts to their captions' images' true ones (`val_cosine`), and of the training
    images' mean concept to the same (`val_cosine_mean`), over the first --eval_cosine_samples validation examples."""
    generator = torch.Generator().manual_seed(cfg.seed)
    sampled, mean, seen = [], [], 0
    for batch in batches:
        codes = image_codes(image_encoder, batch["pixel_values"].to(device))  # (B, D)
        embeds = pipe(batch["text"], num_inference_steps=cfg.eval_num_inference_steps, guidance_scale=cfg.eval_guidance_scale, generator=generator)
        sampled.append(F.cosine_similarity(embeds.image_embeds.to(codes), codes, dim=-1))
        mean.append(F.cosine_similarity(embeds.negative_image_embeds.to(codes), codes, dim=-1))
        seen += len(codes)
        if seen >= cfg.eval_cosine_samples:
            break
    n = cfg.eval_cosine_samples
    return {"val_cosine": torch.cat(sampled)[:n].mean().item(), "val_cosine_mean": torch.cat(mean)[:n].mean().item()}


def decoder_metrics(cfg: PriorTrainConfig, accelerator, pipe: ConceptUnCLIPPipeline, prompts: list[str], step: int) -> dict:
    """The combined pipeline's grid (`<unclip dir>/validation/step-<N>.png`) and, on Shapes, its benchmark scores."""
    kwargs = dict(num_inference_steps=cfg.eval_num_inference_steps, guidance_scale=cfg.eval_guidance_scale)
    images = pipe(prompts, num_images_per_prompt=cfg.validation_images_per_prompt, generator=torch.Generator().manual_seed(cfg.seed), **kwargs).images
    grid = make_captioned_grid(images, [p for p in prompts for _ in range(cfg.validation_images_per_prompt)], cols=cfg.validation_images_per_prompt)
    grid_dir = Path(cfg.unclip_dir) / "validation"
    grid_dir.mkdir(parents=True, exist_ok=True)
    grid.save(grid_dir / f"step-{step}.png")
    log_grid(accelerator, grid, step)
    if cfg.uses_shapes and cfg.eval_prompts_per_category > 0:
        return evaluate_shapes(pipe, cfg.eval_prompts_per_category, cfg.seed, cfg.eval_batch_size, **kwargs).to_metrics()
    return {}


def make_evaluator(cfg: PriorTrainConfig, accelerator, tokenizer, text_encoder, image_encoder, prior, decoder, compute_loss, prompts, normalize: bool):
    """On the main process, with the prior in eval mode: validation loss, cosine metrics and (with a decoder) the
    combined pipeline's grid and Shapes scores."""
    batches = validation_batches(cfg, tokenizer)
    model = accelerator.unwrap_model(prior)

    def evaluate(state) -> dict:
        if not accelerator.is_main_process:
            return {}
        model.eval()
        rng_state = torch.get_rng_state()
        torch.manual_seed(cfg.seed)  # the same caption choices, timesteps and noise at every evaluation
        with torch.no_grad():
            losses = [compute_loss({k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in b.items()})[0].item() for b in batches]
        pipe = prior_pipeline(cfg, tokenizer, text_encoder, model, normalize)
        metrics = {"val_loss": sum(losses) / max(len(losses), 1), **cosine_metrics(cfg, pipe, image_encoder, batches, accelerator.device)}
        if decoder is not None:
            unclip = ConceptUnCLIPPipeline.from_parts(pipe, decoder)
            unclip.set_progress_bar_config(disable=True)
            metrics.update(decoder_metrics(cfg, accelerator, unclip, prompts, state.global_step))
        torch.set_rng_state(rng_state)
        model.train()
        return metrics

    return evaluate


# ---- saving ----------------------------------------------------------------------------------------
def save_outputs(cfg: PriorTrainConfig, argv, result: dict, pipe: ConceptPriorPipeline, decoder) -> None:
    """The prior pipeline in --output_dir, and with a decoder the combined pipeline in its own folder, each with
    eval_results.json and a model card."""
    with final_save(cfg.output_dir) as folder:  # the model already there stays whole if saving fails
        pipe.save_pretrained(folder)
    write_eval_results(cfg, result)
    if decoder is not None:
        unclip_cfg = copy.copy(cfg)  # the same record, in the combined pipeline's folder; pushed with --output_dir
        unclip_cfg.output_dir, unclip_cfg.push_to_hub = cfg.unclip_dir, False
        with final_save(cfg.unclip_dir) as folder:
            ConceptUnCLIPPipeline.from_parts(pipe, decoder).save_pretrained(folder)
        write_eval_results(unclip_cfg, result)
        write_card_and_push(unclip_cfg, argv, __file__)
    write_card_and_push(cfg, argv, __file__)  # README.md model card; --push_to_hub uploads


# ---- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(PriorTrainConfig, argv, ShapesDataArguments, EmojiDataArguments)
    accelerator = build_accelerator(cfg)

    tokenizer = load_or_train_tokenizer(cfg, None, accelerator, pretrained=cfg.concept_model_path)
    text_encoder = load_text_encoder(cfg).to(accelerator.device)
    image_encoder = load_image_encoder(cfg).to(accelerator.device)
    code_dim = code_dim_of(image_encoder)
    normalize = bool(getattr(image_encoder.config, "normalize_code", True))  # the concept towers' codes are unit-norm
    decoder = load_decoder(cfg, code_dim)
    prior = build_model(cfg, code_dim, text_encoder)
    logger.info("Prior: %.2fM parameters; image concepts of %d dimensions", sum(p.numel() for p in prior.parameters()) / 1e6, code_dim)

    train_data = load_split(cfg, "train", cfg.max_train_samples)
    dataloader = build_train_dataloader(cfg, train_data, tokenizer)
    codes = training_codes(cfg, accelerator, image_encoder, dataloader, train_data)
    set_embedding_stats(prior, *image_code_stats(accelerator, codes, cfg.embedding_stats_samples))
    optimizer, lr_scheduler = build_optimizer(cfg, prior.parameters())
    prior, optimizer, dataloader, lr_scheduler = accelerator.prepare(prior, optimizer, dataloader, lr_scheduler)

    empty = {k: v.to(accelerator.device) for k, v in tokenize_captions(tokenizer, [""], cfg.max_length).items()}
    compute_loss = make_loss_fn(cfg, accelerator, prior, text_encoder, image_encoder, prior_noise_scheduler(cfg.num_train_timesteps), empty)
    prompts = default_validation_prompts(cfg, train_data) if decoder is not None else []
    evaluate = make_evaluator(cfg, accelerator, tokenizer, text_encoder, image_encoder, prior, decoder, compute_loss, prompts, normalize)
    if accelerator.is_main_process:
        accelerator.init_trackers("train_prior", config=tracker_config(cfg))
    state = train_loop(accelerator, cfg, {"prior": prior}, optimizer, lr_scheduler, dataloader, compute_loss, evaluate=evaluate)
    result = run_result(state)
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(prior).eval()
        save_outputs(cfg, argv, result, prior_pipeline(cfg, tokenizer, text_encoder, model, normalize), decoder)
    end_training(accelerator, cfg)
    return result


if __name__ == "__main__":
    run_script(main)
