"""Train a super-resolution diffusion stage: a small image + its caption -> the image 2x or 4x larger.

    # a 4x stage for the shipped Shapes model (32 -> 128 px), reading its text tower, frozen
    python training/train_superres.py --concept_model_path hf_textimg/pretrained/shapes-diffusion-32 \
        --resolution 128 --upscale_factor 4 --crop_size 64 --use_ema --output_dir outputs/superres-shapes-128

    # then generate 128 px images with the base model and this stage (or save both as one cascade folder)
    hf-textimg generate "a red circle at the top left" --upscale outputs/superres-shapes-128 --size 128

Training pairs are made on the fly from any captioned image set (`--dataset_name` / `--train_data_dir`, decoded at
`--resolution`): a random `--crop_size` window of the image (offsets on the `--upscale_factor` grid), its box-filtered
copy `--upscale_factor` times smaller (block means: how the Shapes renderer's anti-aliasing makes small images), and
the caption. The small copy is upsampled and noise-augmented at a level drawn per example from
[0, --max_noise_level] (as DeepFloyd IF trains), and the U-Net learns the crop's diffusion target given it. The U-Net is
fully convolutional (`hf_textimg.diffusion.superres`), so a stage trained on crops upscales whole images. Loss, noise
schedule, EMA and condition dropout are train_diffusion.py's (imported from it).

The output folder is a complete `ConceptSuperResolutionPipeline` (`model_index.json`, `unet/`, `text_encoder/`,
`tokenizer/`, `scheduler/`, `image_noising_scheduler/`; the U-Net is the EMA one with `--use_ema`), plus
`eval_results.json` (PSNR / SSIM of the stage on `--eval_num_images` validation images, and of bicubic upsampling),
`validation/step-<N>.png` (rows of input, bicubic, stage, truth), `checkpoint-<N>/` folders and the model card.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as `python training/train_superres.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

from hf_textimg.diffusion.superres import (  # noqa: E402
    DEFAULT_SUPERRES_BLOCK_OUT_CHANNELS,
    build_superres_unet,
    check_unet_size,
    downsample,
    noise_augment,
    random_crop,
    superres_unet_input,
    superres_unet_kwargs,
    upsample,
)
from hf_textimg.evaluation.image_metrics import bicubic_upscale, psnr, ssim  # noqa: E402
from hf_textimg.hub import write_card_and_push  # noqa: E402
from hf_textimg.pipelines.pipeline_superres import DEFAULT_NOISE_LEVEL, DEFAULT_SUPERRES_GUIDANCE, ConceptSuperResolutionPipeline  # noqa: E402
from hf_textimg.pipelines.prompt_embeds import encode_concept  # noqa: E402
from hf_textimg.data.emoji_arguments import EmojiDataArguments  # noqa: E402
from hf_textimg.shapes import ShapesDataArguments  # noqa: E402
from hf_textimg.tokenization import tokenize_captions  # noqa: E402
from hf_textimg.data.streaming import caption_sample
from hf_textimg.training import (  # noqa: E402
    TensorImageTextDataset,
    build_accelerator,
    build_emas,
    build_optimizer,
    build_train_dataloader,
    ema_checkpoint_modules,
    ema_eval_mode,
    load_or_train_tokenizer,
    load_split,
    parse_args,
    run_result,
    set_memory_format,
    tracker_config,
    train_loop,
    write_eval_results,
)
from hf_textimg.utils.image_grid import make_captioned_grid  # noqa: E402
from training.train_diffusion import (  # noqa: E402
    DiffusionTrainConfig,
    build_noise_scheduler,
    diffusion_loss,
    drop_captions,
    inference_scheduler,
    load_text_encoder,
    log_grid,
    noisy_sample_and_target,
)

logger = logging.getLogger(__name__)


@dataclass
class SuperResShapesArguments(ShapesDataArguments):
    """The Shapes options with sizes for 128 px images (5,000 decode to 250 MB; 50,000 would be 2.4 GB)."""

    num_shapes_train: int = field(default=5000, metadata={"help": "Size of the generated Shapes train split."})
    num_shapes_eval: int = field(default=256, metadata={"help": "Size of the generated Shapes validation and heldout splits."})


@dataclass
class SuperResTrainConfig(DiffusionTrainConfig):
    """train_diffusion.py's flags (noise schedule, loss, EMA, U-Net widths, ...) plus the stage's own; the text tower
    is always a trained one, frozen, and the Shapes-benchmark flags (`--eval_prompts_per_category`, ...) are unused."""

    # The stage
    upscale_factor: int = field(default=4, metadata={"help": "Output side / input side (2 or 4; a cascade chains stages)."})
    crop_size: int | None = field(
        default=64, metadata={"help": "Train on random crops of this side (a multiple of --upscale_factor and of the U-Net's factor); 0: whole "
                              "--resolution images. The saved stage then runs on overlapping tiles of this side (its tile_size)."},
    )
    max_noise_level: int = field(
        default=250, metadata={"help": "Noise augmentation of the upsampled input: a level per example, uniform in [0, this] "
                               "(timesteps of the noising scheduler; 0 = clean)."},
    )
    validation_noise_level: int = field(default=DEFAULT_NOISE_LEVEL, metadata={"help": "Noise level of the evaluation (the pipeline's default)."})
    eval_num_images: int = field(default=32, metadata={"help": "Validation images upscaled and scored (PSNR, SSIM; bicubic beside) per evaluation."})
    # train_diffusion.py's flags with other defaults or meanings here
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = field(
        default="sample", metadata={"help": "U-Net target: the clean image (default: in 2-minute runs it drew sharp shapes where v-prediction "
                                    "still drew noise; docs/superres.md), v, or the noise."},
    )
    concept_model_path: str | None = field(
        default=None, metadata={"help": "Required: the base model's pipeline folder (its text_encoder/ and tokenizer/, kept frozen, and its "
                                "prompt normalization) or a ConceptModel / ConceptTextModel folder."},
    )
    resolution: int = field(default=128, metadata={"help": "Side of the high-resolution training images: the stage's output size."})
    train_batch_size: int = field(default=32, metadata={"help": "Batch size (crops) per process."})
    unet_block_out_channels: list[int] | None = field(default=None, metadata={"help": f"Width per level (default {list(DEFAULT_SUPERRES_BLOCK_OUT_CHANNELS)})."})
    unet_attention_from_level: int | None = field(
        default=None, metadata={"help": "Levels from this index on cross-attend to the token states (never self-attention); default: none."}
    )
    unet_coordinate_channels: bool = field(default=False, metadata={"help": "Not available: the stage is fully convolutional (trained on crops)."})
    eval_guidance_scale: float = field(default=DEFAULT_SUPERRES_GUIDANCE, metadata={"help": "Guidance of the evaluation (the pipeline's default)."})

    def check_unet_resolution(self) -> None:
        """--resolution and --crop_size must be multiples of what the stage's U-Net levels halve them by."""
        factor = 2 ** (len(self.unet_block_out_channels or DEFAULT_SUPERRES_BLOCK_OUT_CHANNELS) - 1)
        check_unet_size(self.resolution, factor, "--resolution")
        if self.crop_size:
            check_unet_size(self.crop_size, factor, "--crop_size")

    def validate(self) -> None:
        if self.concept_model_path is None or self.train_text_encoder:
            raise ValueError("A super-resolution stage reads a trained text tower, frozen: pass --concept_model_path (e.g. the base "
                             "pipeline folder, so the cascade shares its tower) and no --train_text_encoder.")
        if self.upscale_factor < 2 or self.resolution % self.upscale_factor:
            raise ValueError(f"--upscale_factor must be >= 2 and divide --resolution {self.resolution}, got {self.upscale_factor}.")
        if self.crop_size and (self.crop_size > self.resolution or self.crop_size % self.upscale_factor):
            raise ValueError(f"--crop_size {self.crop_size} must be a multiple of --upscale_factor {self.upscale_factor} and at most --resolution {self.resolution}.")
        super().validate()  # train_diffusion.py's checks, and check_unet_resolution below
        if self.unet_coordinate_channels:
            raise ValueError("--unet_coordinate_channels is not available: the stage is fully convolutional, so crops can train it.")
        for name in ("max_noise_level", "validation_noise_level"):
            if not 0 <= getattr(self, name) < self.num_train_timesteps:
                raise ValueError(f"--{name} must be in [0, --num_train_timesteps {self.num_train_timesteps}), got {getattr(self, name)}.")
        if self.eval_num_images < 0:
            raise ValueError(f"--eval_num_images must be >= 0, got {self.eval_num_images}.")


# ---- the base model's text tower ---------------------------------------------------------------------
def base_model_folders(path: str) -> tuple[str, str, str | None]:
    """`--concept_model_path` as (text tower folder, tokenizer folder, prompt normalization): a pipeline folder's
    text_encoder/ and tokenizer/ and its saved normalization, or else the folder itself and None."""
    folder = Path(path)
    if not (folder / "model_index.json").is_file():
        return path, path, None
    for sub in ("text_encoder", "tokenizer"):
        if not (folder / sub).is_dir():
            raise ValueError(f"--concept_model_path {path} is a pipeline folder without {sub}/; pass one with a text tower (e.g. a train_diffusion.py output).")
    return str(folder / "text_encoder"), str(folder / "tokenizer"), json.loads((folder / "model_index.json").read_text()).get("prompt_normalization")


def adopt_prompt_normalization(cfg: SuperResTrainConfig, base_normalization: str | None) -> SuperResTrainConfig:
    """The base pipeline's prompt normalization (its text tower learned on rewritten captions); a different explicit one is an error."""
    if base_normalization is None or cfg.prompt_normalization == base_normalization:
        return cfg
    if cfg.prompt_normalization is not None:
        raise ValueError(f"--prompt_normalization {cfg.prompt_normalization} differs from the base pipeline's {base_normalization!r}; drop the flag.")
    logger.info("Using the base pipeline's prompt normalization %r", base_normalization)
    adopted = dataclasses.replace(cfg, prompt_normalization=base_normalization)
    adopted.dataset_args = cfg.dataset_args  # not an __init__ field, so replace() does not copy it
    return adopted


# ---- the stage -------------------------------------------------------------------------------------
def build_model(cfg: SuperResTrainConfig, text_encoder) -> UNet2DConditionModel:
    widths = tuple(cfg.unet_block_out_channels or DEFAULT_SUPERRES_BLOCK_OUT_CHANNELS)
    attention_levels = None
    if cfg.unet_attention_from_level is not None:
        attention_levels = tuple(i >= cfg.unet_attention_from_level for i in range(len(widths)))
    unet = build_superres_unet(
        resolution=cfg.resolution, cross_attention_dim=text_encoder.config.hidden_size, concept_dim=text_encoder.config.projection_dim,
        block_out_channels=widths, layers_per_block=cfg.unet_layers_per_block, attention_levels=attention_levels,
        attention_head_dim=cfg.unet_attention_head_dim, norm_num_groups=cfg.unet_norm_num_groups,
    )
    return unet


def make_compute_loss(cfg, accelerator, unet, text_encoder, noise_scheduler, noising_scheduler, empty: dict):
    def compute_loss(batch):
        pixels = batch["pixel_values"]  # (B, 3, R, R) in [-1, 1]
        if cfg.crop_size:
            pixels = random_crop(pixels, cfg.crop_size, cfg.upscale_factor)  # (B, 3, C, C)
        low_res = downsample(pixels, cfg.upscale_factor)  # (B, 3, C / f, C / f)
        levels = torch.randint(0, cfg.max_noise_level + 1, (len(pixels),), device=pixels.device)  # (B,)
        condition = noise_augment(upsample(low_res, tuple(pixels.shape[-2:])), levels, noising_scheduler)  # (B, 3, C, C)
        input_ids, attention_mask = drop_captions(batch, empty, cfg.cond_dropout)
        with torch.no_grad(), accelerator.autocast():
            cond = encode_concept(text_encoder, input_ids, attention_mask)
        noisy, timesteps, target = noisy_sample_and_target(noise_scheduler, pixels, cfg.prediction_type)
        model_output = unet(superres_unet_input(noisy, condition), timesteps, **superres_unet_kwargs(cond, levels)).sample
        return diffusion_loss(model_output, target, timesteps, noise_scheduler, cfg.snr_gamma), {}

    return compute_loss


# ---- validation -----------------------------------------------------------------------------------
def validation_pairs(cfg: SuperResTrainConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The first `--eval_num_images` validation images (K, 3, R, R) in [0, 1], their box-filtered copies and captions."""
    if not cfg.eval_num_images:
        return torch.zeros(0, 3, cfg.resolution, cfg.resolution), torch.zeros(0, 3, cfg.resolution // cfg.upscale_factor, cfg.resolution // cfg.upscale_factor), []
    data = TensorImageTextDataset.from_dataset(
        load_split(cfg, cfg.validation_split, cfg.eval_num_images), cfg.resolution, cfg.image_column, cfg.caption_column
    )
    high = data.images.float() / 255
    return high, downsample(high, cfg.upscale_factor), [data[i]["text"] for i in range(len(data))]


def comparison_grid(low: torch.Tensor, bicubic: torch.Tensor, upscaled: torch.Tensor, truth: torch.Tensor, rows: int):
    """`rows` rows of input (nearest), bicubic, stage, truth; all (K, 3, H, W) in [0, 1] but `low`."""
    from hf_textimg.data.loading import tensor_to_pil

    nearest = torch.nn.functional.interpolate(low[:rows], size=tuple(truth.shape[-2:]), mode="nearest")
    columns = [tensor_to_pil(t[:rows] * 2 - 1) for t in (nearest, bicubic, upscaled, truth)]
    images = [column[r] for r in range(len(columns[0])) for column in columns]
    return make_captioned_grid(images, ["input", "bicubic", "stage", "truth"] * (len(images) // 4), cols=4, scale=1)


def make_evaluator(cfg, accelerator, pipeline_fn, pairs):
    """Every `--validation_steps` (and at the end), on the main process with the EMA weights: upscale the validation
    images, score PSNR / SSIM against the truth (bicubic beside), save and log a comparison grid."""
    high, low, captions = pairs
    if not captions:
        return lambda state: {}
    bicubic = bicubic_upscale(low, cfg.upscale_factor)
    baseline = {"psnr_bicubic": psnr(bicubic, high), "ssim_bicubic": ssim(bicubic, high)}

    def evaluate(state) -> dict:
        if not accelerator.is_main_process:
            return {}
        start = time.perf_counter()
        with pipeline_fn() as pipe:
            upscaled = pipe(
                captions, image=low, noise_level=cfg.validation_noise_level, num_inference_steps=cfg.eval_num_inference_steps,
                guidance_scale=cfg.eval_guidance_scale, generator=torch.Generator().manual_seed(cfg.seed), output_type="pt",
            ).images.cpu()
        grid = comparison_grid(low, bicubic, upscaled, high, rows=min(len(high), cfg.validation_images_per_prompt * 2))
        (Path(cfg.output_dir) / "validation").mkdir(parents=True, exist_ok=True)
        grid.save(Path(cfg.output_dir) / "validation" / f"step-{state.global_step}.png")
        log_grid(accelerator, grid, state.global_step)
        return {"psnr": psnr(upscaled, high), "ssim": ssim(upscaled, high), **baseline, "eval_seconds": time.perf_counter() - start}

    return evaluate


def build_pipeline(cfg, tokenizer, text_encoder, unet, noise_scheduler) -> ConceptSuperResolutionPipeline:
    noising = build_noise_scheduler(cfg)  # noise augmentation uses the training schedule's betas
    # A stage trained on crops runs on crop-sized tiles: GroupNorm's statistics over a whole mostly-white image are
    # not those of a crop (docs/superres.md, "Crops").
    tile_size = cfg.crop_size if cfg.crop_size and cfg.crop_size < cfg.resolution else None
    return ConceptSuperResolutionPipeline(
        tokenizer, text_encoder, unet, inference_scheduler(noise_scheduler), noising, cfg.upscale_factor, cfg.prompt_normalization, tile_size
    )


# ---- main --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(SuperResTrainConfig, argv, SuperResShapesArguments, EmojiDataArguments)
    text_folder, tokenizer_folder, base_normalization = base_model_folders(cfg.concept_model_path)
    cfg = adopt_prompt_normalization(cfg, base_normalization)
    accelerator = build_accelerator(cfg)

    train_data = load_split(cfg, "train", cfg.max_train_samples)
    tokenizer = load_or_train_tokenizer(cfg, caption_sample(train_data, cfg.caption_column), accelerator, pretrained=tokenizer_folder)
    text_encoder = load_text_encoder(dataclasses.replace(cfg, concept_model_path=text_folder), tokenizer).to(accelerator.device)
    unet = build_model(cfg, text_encoder)
    noise_scheduler, noising_scheduler = build_noise_scheduler(cfg), build_noise_scheduler(cfg)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    logger.info("Super-resolution U-Net (%dx): %.2fM parameters; text tower frozen", cfg.upscale_factor, sum(p.numel() for p in unet.parameters()) / 1e6)

    dataloader = build_train_dataloader(cfg, train_data, tokenizer)
    set_memory_format(cfg, unet)
    optimizer, lr_scheduler = build_optimizer(cfg, unet.parameters())
    prepared_unet, optimizer, dataloader, lr_scheduler = accelerator.prepare(unet, optimizer, dataloader, lr_scheduler)
    trained = {"unet": unet}
    emas = build_emas(trained, cfg.ema_decay, accelerator.device) if cfg.use_ema else {}
    ema_modules = ema_checkpoint_modules(emas, trained)

    def after_optimizer_step(state):
        for ema in emas.values():
            ema.step(unet.parameters())

    @contextlib.contextmanager
    def pipeline_fn():
        with ema_eval_mode(emas, trained, unet):
            pipe = build_pipeline(cfg, tokenizer, text_encoder, unet, noise_scheduler)
            pipe.set_progress_bar_config(disable=True)
            yield pipe

    empty = {k: v.to(accelerator.device) for k, v in tokenize_captions(tokenizer, [""], cfg.max_length).items()}
    compute_loss = make_compute_loss(cfg, accelerator, prepared_unet, text_encoder, noise_scheduler, noising_scheduler, empty)
    evaluate = make_evaluator(cfg, accelerator, pipeline_fn, validation_pairs(cfg))
    if accelerator.is_main_process:
        accelerator.init_trackers("train_superres", config=tracker_config(cfg))
    state = train_loop(
        accelerator, cfg, {"unet": prepared_unet}, optimizer, lr_scheduler, dataloader, compute_loss,
        after_optimizer_step=after_optimizer_step, evaluate=evaluate, extra_checkpoint_models=lambda: ema_modules,
    )
    result = run_result(state)
    if accelerator.is_main_process:
        for ema in emas.values():
            ema.copy_to(unet.parameters())  # the shipped weights are the EMA ones
        build_pipeline(cfg, tokenizer, text_encoder, unet, noise_scheduler).save_pretrained(cfg.output_dir, safe_serialization=True)
        write_eval_results(cfg, result)
        write_card_and_push(cfg, argv, __file__)  # README.md model card; --push_to_hub uploads
    accelerator.end_training()
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
