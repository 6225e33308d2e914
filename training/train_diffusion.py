"""Train a concept-conditioned pixel-space diffusion U-Net (and optionally its text tower).

    # on the built-in Shapes world, with a trained concept model's text tower frozen
    accelerate launch training/train_diffusion.py --dataset_name shapes \
        --concept_model_path outputs/concept-shapes --use_ema --output_dir outputs/diffusion-shapes

    # text tower trained from scratch jointly with the U-Net
    accelerate launch training/train_diffusion.py --train_text_encoder --output_dir outputs/diffusion-joint

The output folder is a complete `ConceptDiffusionPipeline` (`model_index.json`, `unet/`,
`text_encoder/`, `tokenizer/`, `scheduler/`; the U-Net is the EMA one with `--use_ema`), so
`DiffusionPipeline.from_pretrained(output_dir)` works after `import hf_textimg.pipelines.pipeline_diffusion`,
plus `eval_results.json` (Shapes benchmark scores per evaluation when the data set is Shapes),
`validation/step-<N>.png` grids and `checkpoint-<N>/` folders.

Noise math is diffusers' `DDPMScheduler` (`add_noise`, `get_velocity`); the pipeline ships a
`DPMSolverMultistepScheduler` made `from_config` of it (same betas and prediction type).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.training_utils import compute_snr

from transformers import PreTrainedModel

from hf_textimg.concept import ConceptTextConfig, ConceptTextModel
from hf_textimg.concept.clip import load_text_tower
from hf_textimg.diffusion import DEFAULT_BLOCK_OUT_CHANNELS, build_unet, clean_estimate, unet_input
from hf_textimg.hub import write_card_and_push
from hf_textimg.pipelines.checks import set_checked_timesteps
from hf_textimg.pipelines.pipeline_diffusion import ConceptDiffusionPipeline
from hf_textimg.pipelines.prompt_embeds import encode_concept
from hf_textimg.data.emoji_arguments import EmojiDataArguments
from hf_textimg.shapes import ShapesDataArguments, benchmark_prompts, evaluate_shapes, evaluate_shapes_variety
from hf_textimg.tokenization import tokenize_captions
from hf_textimg.data.streaming import caption_sample
from hf_textimg.training import (
    build_emas,
    ema_checkpoint_modules,
    ema_eval_mode,
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
from hf_textimg.utils.image_grid import make_captioned_grid
from hf_textimg.utils.resolution import check_resolution

logger = logging.getLogger(__name__)


@dataclass
class DiffusionTrainConfig(TrainConfig):
    # Text tower
    concept_model_path: str | None = field(
        default=None, metadata={"help": "A trained ConceptModel / ConceptTextModel folder with its tokenizer, or a transformers CLIPModel / CLIPTextModelWithProjection folder or Hub id; its text tower conditions the U-Net."}
    )
    train_text_encoder: bool = field(default=False, metadata={"help": "Fine-tune the text tower with the U-Net (a new tower needs this)."})
    text_encoder_lr: float | None = field(
        default=None, metadata={"help": "Learning rate of the fine-tuned text tower (default: --learning_rate). A pretrained concept "
                                "tower keeps what it knows (e.g. position words) better at ~1/10 of the U-Net's rate."},
    )
    # A new text tower's size (without --concept_model_path); the same defaults as train_concept.py's.
    text_hidden_size: int = field(default=128, metadata={"help": "New text tower only: width of the token states."})
    text_num_layers: int = 2
    text_num_heads: int = 4
    projection_dim: int = field(default=512, metadata={"help": "New text tower only: size of the pooled concept."})
    # U-Net
    unet_block_out_channels: list[int] | None = field(default=None, metadata={"help": "Width per level (default: hf_textimg.diffusion.DEFAULT_BLOCK_OUT_CHANNELS)."})
    unet_layers_per_block: int = 1
    unet_attention_from_level: int | None = field(
        default=None, metadata={"help": "Levels from this index on get self+cross attention (0 = all; default: the lowest resolution only)."}
    )
    unet_attention_head_dim: int = 16
    unet_norm_num_groups: int = 16
    unet_coordinate_channels: bool = field(
        default=True, metadata={"help": "Give the U-Net each pixel's x, y as two extra input channels (see hf_textimg.diffusion.unet)."}
    )
    self_conditioning: bool = field(
        default=False, metadata={"help": "Self-conditioning (https://arxiv.org/abs/2208.04202): the U-Net also reads its previous clean-image "
                                 "estimate (three more input channels); see hf_textimg.diffusion.unet."},
    )
    self_conditioning_prob: float = field(
        default=0.5, metadata={"help": "With --self_conditioning: share of each batch given a first pass's estimate (the rest gets zeros, as the first sampling step does)."},
    )
    # Noise schedule and loss
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = field(
        default="v_prediction", metadata={"help": "U-Net target: the noise, v (https://arxiv.org/abs/2202.00512) or the clean image (sample)."}
    )
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    snr_gamma: float = field(
        default=0.0,
        metadata={"help": "Min-SNR loss weighting gamma (https://arxiv.org/abs/2303.09556); 0 = plain MSE on the target (default). "
                  "With v-prediction, gamma > 0 gives the high-noise steps, where layout (position, count, relations) is decided, "
                  "almost no weight."},
    )
    cond_dropout: float = field(default=0.1, metadata={"help": "Fraction of captions replaced by the empty caption (classifier-free guidance)."})
    # EMA
    use_ema: bool = field(default=False, metadata={"help": "Keep an EMA of the trained weights; it is what gets evaluated and saved."})
    ema_decay: float = field(default=0.999, metadata={"help": "Upper bound of the EMA decay (warms up as (1 + step) / (10 + step))."})
    # Validation and evaluation (every --validation_steps and at the end)
    validation_prompts: list[str] | None = field(default=None, metadata={"help": "Prompts of the saved grid (default: a few Shapes benchmark prompts or captions)."})
    validation_images_per_prompt: int = 4
    eval_prompts_per_category: int = field(default=40, metadata={"help": "Shapes benchmark prompts per category, or Emoji benchmark "
                                                                 "prompts per set (hf_textimg.evaluation.emoji_eval); 0 = no scoring."})
    eval_prompt_set: Literal["benchmark", "validation"] = field(
        default="benchmark", metadata={"help": "Shapes prompts scored during training: the benchmark's, or the validation prompts "
                                       "(choose settings there; `hf-textimg evaluate` scores the benchmark)."},
    )
    eval_diversity: int = field(
        default=0, metadata={"help": "Shapes: also measure layout variety during training, this many images per open-layout prompt "
                             "(10 prompts per category; `hf-textimg evaluate --diversity`); 0 = off."},
    )
    eval_num_inference_steps: int = field(default=20, metadata={"help": "Steps of the shipped DPM-Solver++ sampler during evaluation."})
    eval_guidance_scale: float = field(default=3.0, metadata={"help": "Guidance of the evaluation (the pipeline's default)."})
    eval_batch_size: int = 128

    def validate(self) -> None:
        super().validate()
        if self.concept_model_path is None and not self.train_text_encoder:
            raise ValueError("Without --concept_model_path a new text tower is built; pass --train_text_encoder to train it (or a trained --concept_model_path).")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"--cond_dropout must be in [0, 1), got {self.cond_dropout}.")
        check_text_encoder_lr(self)
        if not 0.0 < self.self_conditioning_prob < 1.0:
            raise ValueError(f"--self_conditioning_prob must be in (0, 1), got {self.self_conditioning_prob}.")
        if self.snr_gamma < 0:
            raise ValueError(f"--snr_gamma must be > 0 (Min-SNR weighting) or 0 (off), got {self.snr_gamma}.")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"--ema_decay must be in (0, 1), got {self.ema_decay}.")
        for name in ("num_train_timesteps", "validation_images_per_prompt", "eval_num_inference_steps", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.eval_diversity < 0 or self.eval_diversity == 1:
            raise ValueError(f"--eval_diversity must be 0 (off) or >= 2 images per prompt, got {self.eval_diversity}.")
        if self.eval_prompts_per_category < 0:
            raise ValueError(f"--eval_prompts_per_category must be >= 0 (0: no Shapes scoring), got {self.eval_prompts_per_category}.")
        # what the evaluation will ask of the pipeline, checked now rather than after the first training steps
        if not self.eval_guidance_scale >= 0:
            raise ValueError(f"--eval_guidance_scale must be >= 0 (1 = no guidance), got {self.eval_guidance_scale}.")
        try:
            set_checked_timesteps(inference_scheduler(build_noise_scheduler(self)), self.eval_num_inference_steps)
        except ValueError as error:
            raise ValueError(f"--eval_num_inference_steps {self.eval_num_inference_steps} with --num_train_timesteps "
                             f"{self.num_train_timesteps}: {error}") from None
        self.check_unet_resolution()

    def check_unet_resolution(self) -> None:
        """--resolution must be a multiple of what the U-Net's levels halve it by, and have default widths unless given."""
        if self.unet_block_out_channels is None and self.resolution not in DEFAULT_BLOCK_OUT_CHANNELS:
            raise ValueError(f"--resolution {self.resolution} has no default U-Net widths (defaults: {sorted(DEFAULT_BLOCK_OUT_CHANNELS)}); "
                             "pass --unet_block_out_channels.")
        levels = len(self.unet_block_out_channels or DEFAULT_BLOCK_OUT_CHANNELS[self.resolution])
        check_resolution(self.resolution, 2 ** (levels - 1), "--resolution", f" for a U-Net of {levels} levels")


# ---- models ----------------------------------------------------------------------------
def load_text_encoder(cfg: DiffusionTrainConfig, tokenizer) -> PreTrainedModel:
    """The text tower of `--concept_model_path` (a ConceptModel / ConceptTextModel folder, or a CLIP: see
    `hf_textimg.concept.clip`), or a new one."""
    if cfg.concept_model_path is not None:
        text_encoder = load_text_tower(cfg.concept_model_path)
    else:
        text_encoder = ConceptTextModel(
            ConceptTextConfig(
                vocab_size=len(tokenizer), hidden_size=cfg.text_hidden_size, num_layers=cfg.text_num_layers,
                num_heads=cfg.text_num_heads, intermediate_size=4 * cfg.text_hidden_size, max_position_embeddings=cfg.max_length,
                projection_dim=cfg.projection_dim, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        )
    if cfg.max_length > text_encoder.config.max_position_embeddings:
        raise ValueError(f"--max_length {cfg.max_length} exceeds the text tower's max_position_embeddings ({text_encoder.config.max_position_embeddings}).")
    if not cfg.train_text_encoder:
        text_encoder.requires_grad_(False).eval()
    return text_encoder


def build_model(cfg: DiffusionTrainConfig, text_encoder: PreTrainedModel) -> UNet2DConditionModel:
    widths = cfg.unet_block_out_channels or DEFAULT_BLOCK_OUT_CHANNELS[cfg.resolution]
    attention_levels = None
    if cfg.unet_attention_from_level is not None:
        attention_levels = tuple(i >= cfg.unet_attention_from_level for i in range(len(widths)))
    return build_unet(
        resolution=cfg.resolution,
        cross_attention_dim=text_encoder.config.hidden_size,
        concept_dim=text_encoder.config.projection_dim,
        block_out_channels=tuple(widths),
        layers_per_block=cfg.unet_layers_per_block,
        attention_levels=attention_levels,
        attention_head_dim=cfg.unet_attention_head_dim,
        norm_num_groups=cfg.unet_norm_num_groups,
        coordinate_channels=cfg.unet_coordinate_channels,
        self_conditioning=cfg.self_conditioning,
    )


def build_noise_scheduler(cfg: DiffusionTrainConfig) -> DDPMScheduler:
    # clip_sample: pixels live in [-1, 1], so DDPM sampling clips its x0 estimate there.
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction_type, clip_sample=True
    )


def inference_scheduler(noise_scheduler: DDPMScheduler) -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2nd order) with the training betas; thresholding at 1.0 clips its x0 estimates to
    [-1, 1], the pixel-space counterpart of DDPM's clip_sample."""
    return DPMSolverMultistepScheduler.from_config(
        noise_scheduler.config, algorithm_type="dpmsolver++", thresholding=True, sample_max_value=1.0
    )


# ---- loss -------------------------------------------------------------------------------
def drop_captions(batch: dict, empty: dict, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`input_ids`/`attention_mask` (B, L) with a random fraction `p` of rows replaced by the empty
    caption, the same "no condition" the pipeline's unconditional branch encodes."""
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    if p == 0:
        return input_ids, attention_mask
    drop = (torch.rand(len(input_ids), device=input_ids.device) < p)[:, None]  # (B, 1)
    return torch.where(drop, empty["input_ids"], input_ids), torch.where(drop, empty["attention_mask"], attention_mask)


def diffusion_loss(model_output: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor, noise_scheduler, snr_gamma: float) -> torch.Tensor:
    """MSE to the target, optionally Min-SNR-gamma weighted per sample: weight = min(SNR, gamma) divided by
    SNR for epsilon, SNR + 1 for v-prediction (as in diffusers' text-to-image example), 1 for sample, so each
    target's loss equals the same x0-error weighting min(SNR, gamma) * |x0 - x0_hat|^2."""
    loss = F.mse_loss(model_output.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))  # (B,)
    if not snr_gamma:
        return loss.mean()
    snr = compute_snr(noise_scheduler, timesteps)  # (B,)
    weight = snr.clamp(max=snr_gamma)
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        weight = weight / snr
    elif prediction_type == "v_prediction":
        weight = weight / (snr + 1)
    return (loss * weight).mean()


def noisy_sample_and_target(noise_scheduler, pixels: torch.Tensor, prediction_type: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random timesteps (B,) for clean images (B, 3, H, W): the noised images, the timesteps and the U-Net's target
    (the noise, the clean image, or v)."""
    noise = torch.randn_like(pixels)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(pixels),), device=pixels.device)
    noisy = noise_scheduler.add_noise(pixels, noise, timesteps)
    target = {"epsilon": noise, "sample": pixels}.get(prediction_type)
    if target is None:
        target = noise_scheduler.get_velocity(pixels, noise, timesteps)
    return noisy, timesteps, target


def first_pass_estimate(unet, unet_config_source, noisy, timesteps, cond, noise_scheduler, prob: float) -> torch.Tensor:
    """Self-conditioning's input in training (Chen et al. 2022): for a random `prob` share of the batch, the clean
    image a first, gradient-free pass (itself given zeros) estimates; zeros for the rest, as at the first sampling step."""
    self_condition = torch.zeros_like(noisy)
    chosen = torch.rand(len(noisy), device=noisy.device) < prob
    if chosen.any():
        index = chosen.nonzero().squeeze(1)
        with torch.no_grad():
            sub = cond.map(lambda t: t[index])
            output = unet(unet_input(unet_config_source, noisy[index]), timesteps[index], **sub.unet_kwargs()).sample
            self_condition[index] = clean_estimate(noise_scheduler, noisy[index], output, timesteps[index]).to(noisy.dtype)
    return self_condition


def make_compute_loss(cfg, accelerator, unet, text_encoder, noise_scheduler, empty: dict):
    unet_config_source = accelerator.unwrap_model(unet)  # `unet` may be wrapped (DDP) and have no .config

    def compute_loss(batch):
        pixels = batch["pixel_values"]  # (B, 3, R, R) in [-1, 1]
        input_ids, attention_mask = drop_captions(batch, empty, cfg.cond_dropout)
        with contextlib.nullcontext() if cfg.train_text_encoder else torch.no_grad(), accelerator.autocast():
            cond = encode_concept(text_encoder, input_ids, attention_mask)
        noisy, timesteps, target = noisy_sample_and_target(noise_scheduler, pixels, cfg.prediction_type)
        self_condition = None
        if cfg.self_conditioning:
            self_condition = first_pass_estimate(unet, unet_config_source, noisy, timesteps, cond, noise_scheduler, cfg.self_conditioning_prob)
        model_output = unet(unet_input(unet_config_source, noisy, self_condition), timesteps, **cond.unet_kwargs()).sample
        return diffusion_loss(model_output, target, timesteps, noise_scheduler, cfg.snr_gamma), {}

    return compute_loss


# ---- validation and evaluation ----------------------------------------------------------
def default_validation_prompts(cfg: DiffusionTrainConfig, train_data) -> list[str]:
    if cfg.validation_prompts:
        return list(cfg.validation_prompts)
    if cfg.uses_shapes:
        return [p.prompt for p in benchmark_prompts(1, seed=cfg.seed)]  # one unseen prompt per category
    captions = caption_sample(train_data, cfg.caption_column, max_rows=8)[:8]
    return [c if isinstance(c, str) else c[0] for c in captions]


def log_grid(accelerator, grid, step: int) -> None:
    """Send a validation grid to whichever trackers take images."""
    import numpy as np

    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("validation", np.asarray(grid), step, dataformats="HWC")
        elif tracker.name == "wandb":
            import wandb

            tracker.log({"validation": wandb.Image(grid)}, step=step)


def make_evaluator(cfg, accelerator, pipeline_fn, prompts: list[str]):
    """Every `--validation_steps` (and at the end), on the main process with the EMA weights: save a
    grid of `prompts` to `validation/step-<N>.png`, log it, and score the Shapes benchmark."""
    grid_dir = Path(cfg.output_dir) / "validation"

    def evaluate(state) -> dict:
        if not accelerator.is_main_process:
            return {}
        start = time.perf_counter()
        with pipeline_fn() as pipe:
            generator = torch.Generator().manual_seed(cfg.seed)
            kwargs = dict(num_inference_steps=cfg.eval_num_inference_steps, guidance_scale=cfg.eval_guidance_scale)
            images = pipe(prompts, num_images_per_prompt=cfg.validation_images_per_prompt, generator=generator, **kwargs).images
            grid = make_captioned_grid(images, [p for p in prompts for _ in range(cfg.validation_images_per_prompt)], cols=cfg.validation_images_per_prompt)
            grid_dir.mkdir(parents=True, exist_ok=True)
            grid.save(grid_dir / f"step-{state.global_step}.png")
            log_grid(accelerator, grid, state.global_step)
            metrics = {}
            if cfg.uses_shapes and cfg.eval_prompts_per_category > 0:
                report = evaluate_shapes(pipe, cfg.eval_prompts_per_category, cfg.seed, cfg.eval_batch_size, prompt_set=cfg.eval_prompt_set, **kwargs)
                metrics = report.to_metrics()
                if getattr(cfg, "eval_diversity", 0):  # train_distill.py's config has no variety option
                    variety = evaluate_shapes_variety(pipe, cfg.eval_diversity, seed=cfg.seed, batch_size=cfg.eval_batch_size,
                                                      prompt_set=cfg.eval_prompt_set, **kwargs)
                    metrics.update(variety.to_metrics())
            elif cfg.uses_emoji and cfg.eval_prompts_per_category > 0:
                from hf_textimg.evaluation.emoji_eval import evaluate_emoji_for_config

                generator = torch.Generator().manual_seed(cfg.seed)
                metrics = evaluate_emoji_for_config(cfg, lambda batch: pipe(batch, generator=generator, output_type="np", **kwargs).images)
        metrics["eval_seconds"] = time.perf_counter() - start  # not counted in train_minutes (train_loop stops its clock)
        return metrics

    return evaluate


def make_pipeline_fn(cfg, tokenizer, text_encoder, unet, noise_scheduler, emas, trained):
    """A context manager giving the pipeline on the unwrapped models, in eval mode with EMA weights."""

    @contextlib.contextmanager
    def pipeline_fn():
        with ema_eval_mode(emas, trained, unet, text_encoder):
            pipe = ConceptDiffusionPipeline(tokenizer, text_encoder, unet, inference_scheduler(noise_scheduler), cfg.prompt_normalization)
            pipe.set_progress_bar_config(disable=True)
            yield pipe

    return pipeline_fn


# ---- main --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(DiffusionTrainConfig, argv, ShapesDataArguments, EmojiDataArguments)
    accelerator = build_accelerator(cfg)

    train_data = load_split(cfg, "train", cfg.max_train_samples)
    tokenizer = load_or_train_tokenizer(cfg, caption_sample(train_data, cfg.caption_column), accelerator, pretrained=cfg.concept_model_path)
    text_encoder = load_text_encoder(cfg, tokenizer)
    unet = build_model(cfg, text_encoder)
    noise_scheduler = build_noise_scheduler(cfg)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if cfg.train_text_encoder:
            text_encoder.gradient_checkpointing_enable()
    logger.info("U-Net: %.2fM parameters; text tower: %.2fM (%s)", sum(p.numel() for p in unet.parameters()) / 1e6,
                sum(p.numel() for p in text_encoder.parameters()) / 1e6, "trained" if cfg.train_text_encoder else "frozen")

    # Weights stay fp32 (accelerate autocasts the forward under --mixed_precision), so gradients and
    # optimizer states are fp32 and fp16 loss scaling never meets fp16 gradients.
    trained = {"unet": unet, **({"text_encoder": text_encoder} if cfg.train_text_encoder else {})}
    dataloader = build_train_dataloader(cfg, train_data, tokenizer)
    set_memory_format(cfg, unet)
    optimizer, lr_scheduler = build_optimizer(cfg, param_groups(trained, {"text_encoder": cfg.text_encoder_lr}))
    prepared = accelerator.prepare(*trained.values(), optimizer, dataloader, lr_scheduler)
    models = dict(zip(trained, prepared[: len(trained)]))
    optimizer, dataloader, lr_scheduler = prepared[len(trained) :]
    if not cfg.train_text_encoder:
        text_encoder.to(accelerator.device)
    text_model = models.get("text_encoder", text_encoder)

    emas = build_emas(trained, cfg.ema_decay, accelerator.device) if cfg.use_ema else {}
    ema_modules = ema_checkpoint_modules(emas, trained)

    def after_optimizer_step(state):
        for name, ema in emas.items():
            ema.step(trained[name].parameters())

    empty = {k: v.to(accelerator.device) for k, v in tokenize_captions(tokenizer, [""], cfg.max_length).items()}
    compute_loss = make_compute_loss(cfg, accelerator, models["unet"], text_model, noise_scheduler, empty)
    pipeline_fn = make_pipeline_fn(cfg, tokenizer, text_encoder, unet, noise_scheduler, emas, trained)
    evaluate = make_evaluator(cfg, accelerator, pipeline_fn, default_validation_prompts(cfg, train_data))
    if accelerator.is_main_process:
        accelerator.init_trackers("train_diffusion", config=tracker_config(cfg))
    state = train_loop(
        accelerator, cfg, models, optimizer, lr_scheduler, dataloader, compute_loss,
        after_optimizer_step=after_optimizer_step, evaluate=evaluate, extra_checkpoint_models=lambda: ema_modules,
    )
    result = run_result(state)
    if accelerator.is_main_process:
        save_pipeline(cfg, tokenizer, text_encoder, unet, noise_scheduler, emas)
        write_eval_results(cfg, result)
        write_card_and_push(cfg, argv, __file__)  # README.md model card; --push_to_hub uploads
    end_training(accelerator, cfg)
    return result


def save_pipeline(cfg, tokenizer, text_encoder, unet, noise_scheduler, emas) -> None:
    """The shipped pipeline: EMA weights (when used) copied into the models for good, then `save_pretrained`."""
    trained = {"unet": unet, "text_encoder": text_encoder}
    for name, ema in emas.items():
        ema.copy_to(trained[name].parameters())
    pipe = ConceptDiffusionPipeline(tokenizer, text_encoder, unet, inference_scheduler(noise_scheduler), cfg.prompt_normalization)
    with final_save(cfg.output_dir) as folder:  # the model already there stays whole if saving fails
        pipe.save_pretrained(folder, safe_serialization=True)


if __name__ == "__main__":
    run_script(main)
