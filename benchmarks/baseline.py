"""The upstream baseline: the plain diffusers/transformers text-to-image recipe, from upstream parts only.

    python -m benchmarks.baseline --output_dir outputs/baseline-shapes --mixed_precision bf16 --use_ema \
        --train_batch_size 64 --learning_rate 1e-3 --lr_scheduler constant_with_warmup --lr_warmup_steps 100 \
        --max_train_steps 100000 --max_train_minutes 40 --validation_steps 700

What a user writes without this package (issue 8), trained on the same data with the same shared flags
(`hf_textimg.training.TrainConfig`) as our scripts:

- Text encoder: transformers `CLIPTextModel` from scratch (`CLIPTextConfig` sized like our text tower: 128
  wide, 2 layers, 4 heads), on our tokenizer trained on the captions (no pretrained one can be downloaded),
  trained jointly with the U-Net (a random frozen one would carry no caption). Its `last_hidden_state` is the
  cross-attention input; no attention mask, as upstream.
- U-Net: diffusers `UNet2DConditionModel` with the Stable Diffusion block layout (cross-attention at every
  level but the lowest resolution, 2 layers per block, 8 heads, no class embedding), its width scaled so
  its parameter count matches our diffusion U-Net (`--unet_target_params`; both counts are printed).
- Noise: `DDPMScheduler()` defaults (1000 steps, linear betas, epsilon); sampling with
  `DPMSolverMultistepScheduler.from_config` of it (upstream defaults: DPM-Solver++, 2nd order).
- Step: diffusers' examples/text_to_image/train_text_to_image.py: noise, random timesteps, `add_noise`,
  MSE on epsilon, `accelerator.backward`, clipping, `torch.optim.AdamW` (its defaults: no `foreach=True`),
  LR schedule, `EMAModel.step` (its default `foreach=False`, as the example without `--foreach_ema`). The
  example's loop and `hf_textimg.training.train_loop` do the same things in the same order, so the baseline
  runs in ours (one timing harness for both; see benchmarks/common.py).
- One addition, so classifier-free guidance has an unconditional model: `--proportion_empty_prompts 0.1`
  (the flag of diffusers' SDXL and ControlNet examples; train_text_to_image.py has none).
- Data: the example's path, images decoded and converted per step (`datasets.with_transform`), unless
  `--tensor_data`, which uses our cached uint8 tensors (`build_train_dataloader`), to separate the data
  path's share of any speed difference from the model's.

`BaselinePipeline` is a minimal StableDiffusionPipeline without a VAE (pixel space); diffusers has no
pixel-space text-to-image pipeline, and our `ConceptDiffusionPipeline` needs our text tower's pooled concept.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/baseline.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.optimization import get_scheduler
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextConfig, CLIPTextModel

from hf_textimg.data.loading import ImageTextCollator, ImageTextTransform
from hf_textimg.diffusion import DEFAULT_BLOCK_OUT_CHANNELS, build_unet as build_our_unet
from hf_textimg.shapes import ShapesDataArguments, evaluate_shapes
from hf_textimg.tokenization import tokenize_captions
from hf_textimg.training import (
    build_emas,
    ema_eval_mode,
    TrainConfig,
    build_accelerator,
    build_train_dataloader,
    load_or_train_tokenizer,
    load_split,
    parse_args,
    run_result,
    train_loop,
    write_eval_results,
)

logger = logging.getLogger(__name__)

SD_NUM_HEADS = 8  # diffusers' `attention_head_dim=8` default (read as the number of heads)


@dataclass
class BaselineTrainConfig(TrainConfig):
    text_hidden_size: int = field(default=128, metadata={"help": "CLIPTextConfig.hidden_size (intermediate_size is 4x)."})
    text_num_layers: int = 2
    text_num_heads: int = 4
    unet_target_params: int | None = field(
        default=None, metadata={"help": "Match this U-Net parameter count (default: our default diffusion U-Net's at --resolution)."}
    )
    unet_width_ratios: list[int] | None = field(
        default=None, metadata={"help": "Width of each level relative to the first (default: our default U-Net's ratios)."}
    )
    unet_block_out_channels: list[int] | None = field(default=None, metadata={"help": "Explicit widths (no matching)."})
    unet_layers_per_block: int = field(default=2, metadata={"help": "UNet2DConditionModel's default."})
    unet_down_block_types: list[str] | None = field(
        default=None,
        metadata={"help": "Down block types, lowest resolution last (default: Stable Diffusion's layout, CrossAttnDownBlock2D at "
                  "every level but the last); up blocks mirror them."},
    )
    proportion_empty_prompts: float = field(default=0.1, metadata={"help": "Captions replaced by the empty one (for guidance)."})
    tensor_data: bool = field(default=False, metadata={"help": "Our cached-tensor data loader instead of the example's per-step decoding."})
    use_ema: bool = False
    ema_decay: float = 0.999
    foreach_ema: bool = field(default=False, metadata={"help": "The example's --foreach_ema (off by default there)."})
    eval_prompts_per_category: int = field(default=40, metadata={"help": "Shapes benchmark prompts per category (0 = none)."})
    eval_num_inference_steps: int = 20
    eval_guidance_scale: float = 4.0
    eval_batch_size: int = 128

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.proportion_empty_prompts < 1.0:
            raise ValueError(f"--proportion_empty_prompts must be in [0, 1), got {self.proportion_empty_prompts}.")


# ---- models -------------------------------------------------------------------------------------
def build_text_encoder(cfg: BaselineTrainConfig, tokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_hidden_size, intermediate_size=4 * cfg.text_hidden_size,
        num_hidden_layers=cfg.text_num_layers, num_attention_heads=cfg.text_num_heads, max_position_embeddings=cfg.max_length,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return CLIPTextModel(config)


def sd_unet_config(
    resolution: int, widths: tuple[int, ...], cross_attention_dim: int, layers_per_block: int = 2, down_block_types: tuple[str, ...] | None = None
) -> dict:
    """`UNet2DConditionModel` kwargs, by default in Stable Diffusion's layout: cross-attention down/up blocks at every
    level but the lowest resolution (plus the cross-attention mid block); pixel space (3 channels in and out)."""
    levels = len(widths)
    down = tuple(down_block_types or ("CrossAttnDownBlock2D",) * (levels - 1) + ("DownBlock2D",))
    if len(down) != levels:
        raise ValueError(f"--unet_down_block_types names {len(down)} blocks for {levels} widths {tuple(widths)}.")
    up = tuple(t.replace("Down", "Up") for t in reversed(down))
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if all(w % g == 0 for w in widths))
    return dict(
        sample_size=resolution, in_channels=3, out_channels=3, down_block_types=down, up_block_types=up,
        block_out_channels=tuple(widths), layers_per_block=layers_per_block, norm_num_groups=groups,
        cross_attention_dim=cross_attention_dim, attention_head_dim=SD_NUM_HEADS,
    )


def count_parameters(config: dict, builder=UNet2DConditionModel) -> int:
    """Parameters of a model built from `config`, on the meta device (no memory, no init)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return sum(p.numel() for p in builder(**config).parameters())


def our_unet_parameters(resolution: int, cross_attention_dim: int, concept_dim: int = 512) -> int:
    """Our default diffusion U-Net's parameter count (hf_textimg.diffusion.build_unet defaults)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        unet = build_our_unet(resolution=resolution, cross_attention_dim=cross_attention_dim, concept_dim=concept_dim)
        return sum(p.numel() for p in unet.parameters())


def matched_widths(
    resolution: int, target_params: int, ratios, cross_attention_dim: int, layers_per_block: int = 2, down_block_types=None
) -> tuple[int, ...]:
    """Widths `w * ratios` (w a multiple of the 8 heads) whose SD-layout U-Net has the parameter count closest to
    `target_params`. The count grows with w, so stop at the first w past the target."""
    best, w = None, SD_NUM_HEADS
    while True:
        widths = tuple(w * r for r in ratios)
        n = count_parameters(sd_unet_config(resolution, widths, cross_attention_dim, layers_per_block, down_block_types))
        if best is None or abs(n - target_params) < abs(best[1] - target_params):
            best = (widths, n)
        if n >= target_params or w > 4096:
            return best[0]
        w += SD_NUM_HEADS


def build_unet(cfg: BaselineTrainConfig) -> UNet2DConditionModel:
    widths = cfg.unet_block_out_channels
    if widths is None:
        ours = DEFAULT_BLOCK_OUT_CHANNELS[cfg.resolution]
        ratios = cfg.unet_width_ratios or [w // ours[0] for w in ours]
        target = cfg.unet_target_params or our_unet_parameters(cfg.resolution, cfg.text_hidden_size)
        widths = matched_widths(cfg.resolution, target, ratios, cfg.text_hidden_size, cfg.unet_layers_per_block, cfg.unet_down_block_types)
    config = sd_unet_config(cfg.resolution, tuple(widths), cfg.text_hidden_size, cfg.unet_layers_per_block, cfg.unet_down_block_types)
    return UNet2DConditionModel(**config)


def build_noise_scheduler() -> DDPMScheduler:
    return DDPMScheduler()  # upstream defaults: 1000 steps, linear betas 1e-4..0.02, epsilon, clip_sample


def sampling_scheduler(noise_scheduler: DDPMScheduler) -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler.from_config(noise_scheduler.config)


# ---- the training step (diffusers' train_text_to_image.py) --------------------------------------
def make_compute_loss(unet, text_encoder, noise_scheduler, empty_ids: torch.Tensor, proportion_empty_prompts: float):
    """batch -> (epsilon MSE, {}). The prepared models autocast their own forward under --mixed_precision."""

    def compute_loss(batch):
        pixels = batch["pixel_values"]  # (B, 3, R, R) in [-1, 1]; pixel space, so no VAE encode
        input_ids = batch["input_ids"]  # (B, L)
        if proportion_empty_prompts:
            drop = (torch.rand(len(input_ids), device=input_ids.device) < proportion_empty_prompts)[:, None]
            input_ids = torch.where(drop, empty_ids, input_ids)
        noise = torch.randn_like(pixels)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(pixels),), device=pixels.device).long()
        noisy = noise_scheduler.add_noise(pixels, noise, timesteps)
        encoder_hidden_states = text_encoder(input_ids)[0]  # (B, L, H)
        model_pred = unet(noisy, timesteps, encoder_hidden_states).sample
        return F.mse_loss(model_pred.float(), noise.float(), reduction="mean"), {}

    return compute_loss


def build_optimizer(cfg: BaselineTrainConfig, params):
    optimizer = torch.optim.AdamW(
        params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.adam_weight_decay, eps=cfg.adam_epsilon
    )
    lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer=optimizer, num_warmup_steps=cfg.lr_warmup_steps, num_training_steps=cfg.max_train_steps)
    return optimizer, lr_scheduler


def build_dataloader(cfg: BaselineTrainConfig, data, tokenizer):
    if cfg.tensor_data:
        return build_train_dataloader(cfg, data, tokenizer)
    transform = ImageTextTransform(cfg.resolution, cfg.image_column, cfg.caption_column, cfg.random_flip, seed=cfg.seed)
    return torch.utils.data.DataLoader(
        data.with_transform(transform), batch_size=cfg.train_batch_size, shuffle=True, drop_last=True,
        num_workers=cfg.dataloader_num_workers, collate_fn=ImageTextCollator(tokenizer, cfg.max_length),
        generator=torch.Generator().manual_seed(cfg.seed),
    )


# ---- sampling -----------------------------------------------------------------------------------
class BaselinePipeline(DiffusionPipeline):
    """StableDiffusionPipeline's denoising loop without the VAE: CLIP text states -> U-Net + scheduler -> pixels."""

    def __init__(self, tokenizer, text_encoder: CLIPTextModel, unet: UNet2DConditionModel, scheduler):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler)
        self.image_processor = VaeImageProcessor(vae_scale_factor=1, do_resize=False, do_normalize=True)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        ids = tokenize_captions(self.tokenizer, prompts, self.tokenizer.model_max_length)["input_ids"]
        return self.text_encoder(ids.to(self.device))[0]  # (B, L, H)

    @torch.no_grad()
    def __call__(self, prompt, num_inference_steps: int = 20, guidance_scale: float = 4.0, generator=None, output_type: str = "pil", return_dict: bool = True):
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        do_cfg = guidance_scale > 1.0
        # 1. Encode: the unconditional branch is the empty caption, as in training
        cond = self.encode_prompt(prompts)
        states = torch.cat([self.encode_prompt([""] * len(prompts)), cond]) if do_cfg else cond
        # 2. Timesteps and 3. starting noise
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        shape = (len(prompts), self.unet.config.in_channels, self.unet.config.sample_size, self.unet.config.sample_size)
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype) * self.scheduler.init_noise_sigma
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}
        # 4. Denoise
        for t in self.progress_bar(self.scheduler.timesteps):
            model_input = self.scheduler.scale_model_input(torch.cat([latents] * 2) if do_cfg else latents, t)
            noise_pred = self.unet(model_input, t, encoder_hidden_states=states).sample
            if do_cfg:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (text - uncond)
            latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
        # 5. Post-process: pixels in [-1, 1]
        images = self.image_processor.postprocess(latents.float().clamp(-1, 1), output_type=output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)


# ---- evaluation ---------------------------------------------------------------------------------
def make_evaluator(cfg: BaselineTrainConfig, pipeline_fn):
    """The Shapes benchmark, exactly as train_diffusion.py scores ours: `benchmark_prompts` (default seed),
    sampling noise from `--seed`, the same steps, guidance and batch size; EMA weights when used."""

    def evaluate(state) -> dict:
        start = time.perf_counter()
        metrics = {}
        if cfg.uses_shapes and cfg.eval_prompts_per_category > 0:
            with pipeline_fn() as pipe:
                report = evaluate_shapes(
                    pipe, cfg.eval_prompts_per_category, cfg.seed, cfg.eval_batch_size,
                    num_inference_steps=cfg.eval_num_inference_steps, guidance_scale=cfg.eval_guidance_scale,
                )
            metrics = report.to_metrics()
        metrics["eval_seconds"] = time.perf_counter() - start
        return metrics

    return evaluate


def make_pipeline_fn(tokenizer, text_encoder, unet, noise_scheduler, emas: dict, trained: dict):
    @contextlib.contextmanager
    def pipeline_fn():
        with ema_eval_mode(emas, trained, unet, text_encoder):
            pipe = BaselinePipeline(tokenizer, text_encoder, unet, sampling_scheduler(noise_scheduler))
            pipe.set_progress_bar_config(disable=True)
            yield pipe

    return pipeline_fn


# ---- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(BaselineTrainConfig, argv, ShapesDataArguments)
    accelerator = build_accelerator(cfg)

    train_data = load_split(cfg, "train", cfg.max_train_samples)
    tokenizer = load_or_train_tokenizer(cfg, train_data[cfg.caption_column], accelerator)
    text_encoder = build_text_encoder(cfg, tokenizer)
    unet = build_unet(cfg)
    noise_scheduler = build_noise_scheduler()
    sizes = {
        "unet_block_out_channels": list(unet.config.block_out_channels),
        "unet_down_block_types": list(unet.config.down_block_types),
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "unet_target_parameters": cfg.unet_target_params or our_unet_parameters(cfg.resolution, cfg.text_hidden_size),
        "text_encoder_parameters": sum(p.numel() for p in text_encoder.parameters()),
    }
    logger.info("baseline sizes: %s", sizes)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()

    trained = {"unet": unet, "text_encoder": text_encoder}
    dataloader = build_dataloader(cfg, train_data, tokenizer)
    optimizer, lr_scheduler = build_optimizer(cfg, [p for m in trained.values() for p in m.parameters()])
    prepared = accelerator.prepare(unet, text_encoder, optimizer, dataloader, lr_scheduler)
    models = dict(zip(trained, prepared[:2]))
    optimizer, dataloader, lr_scheduler = prepared[2:]

    emas = build_emas(trained, cfg.ema_decay, accelerator.device, foreach=cfg.foreach_ema) if cfg.use_ema else {}

    def after_optimizer_step(state):
        for name, ema in emas.items():
            ema.step(trained[name].parameters())

    empty_ids = tokenize_captions(tokenizer, [""], cfg.max_length)["input_ids"].to(accelerator.device)  # (1, L)
    compute_loss = make_compute_loss(models["unet"], models["text_encoder"], noise_scheduler, empty_ids, cfg.proportion_empty_prompts)
    pipeline_fn = make_pipeline_fn(tokenizer, text_encoder, unet, noise_scheduler, emas, trained)
    state = train_loop(
        accelerator, cfg, models, optimizer, lr_scheduler, dataloader, compute_loss,
        after_optimizer_step=after_optimizer_step, evaluate=make_evaluator(cfg, pipeline_fn),
    )
    result = {**run_result(state), **sizes}
    if accelerator.is_main_process:
        for name, ema in emas.items():
            ema.copy_to(trained[name].parameters())
        BaselinePipeline(tokenizer, text_encoder, unet, sampling_scheduler(noise_scheduler)).save_pretrained(cfg.output_dir)
        write_eval_results(cfg, result)
    accelerator.end_training()
    return result


def cli(argv: list[str] | None = None) -> dict:
    """`main` plus the benchmark report: machine line, a table of sizes, speed and final scores, one JSON line."""
    import argparse

    from benchmarks.common import add_common_args, emit, format_table, machine_info, print_machine, setup

    own, argv = add_common_args(argparse.ArgumentParser(add_help=False)).parse_known_args(argv)
    setup(own)
    start = time.perf_counter()
    result = main(argv)
    steps, minutes = result["global_step"], result["train_minutes"]
    info = machine_info()
    print_machine(info)
    rows = [
        ["U-Net parameters (baseline / our U-Net)", f"{result['unet_parameters']:,} / {result['unet_target_parameters']:,}"],
        ["U-Net widths", result["unet_block_out_channels"]],
        ["U-Net down blocks", ", ".join(result["unet_down_block_types"])],
        ["CLIP text encoder parameters", f"{result['text_encoder_parameters']:,}"],
        ["optimizer steps / minutes (evaluation included)", f"{steps} / {minutes:.2f}"],
        *[[f"final {k}", round(v, 4)] for k, v in result["metrics"].items()],
    ]
    print(format_table(["baseline", "value"], rows))
    record = {k: v for k, v in result.items() if k != "loss_history"}
    return emit({"benchmark": "baseline_train", **record, "wall_seconds": time.perf_counter() - start, "machine": info})


if __name__ == "__main__":
    cli(sys.argv[1:])
