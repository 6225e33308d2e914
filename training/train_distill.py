"""Distil a 20-step classifier-free-guided diffusion pipeline into a 1-4 step student (latent consistency distillation).

    # the shipped Shapes model as teacher, on the data it was trained on
    accelerate launch training/train_distill.py --teacher_model_name_or_path hf_textimg/pretrained/shapes-diffusion-32 \
        --dataset_name shapes --shapes_canonical_layouts count relation --output_dir outputs/distill-shapes

Two distillations in one student, as in LCM (https://arxiv.org/abs/2310.04378, diffusers'
`examples/consistency_distillation/train_lcm_distill_sd_wds.py`):

- **Guidance**: the student U-Net is the teacher's with `time_cond_proj_dim` set, so it reads the guidance
  scale as an input (embedded like the timestep, `hf_textimg.diffusion.guidance_scale_embedding`) and gives the
  guided prediction in one pass instead of two. Its `cond_proj` starts at zero, so the student starts as the teacher.
- **Steps**: consistency distillation on the teacher's probability-flow ODE. For a training image noised to t_n (one
  of `--num_ddim_timesteps` DDIM timesteps), the teacher takes one guided DDIM step to t_{n-1}; the student's
  consistency function f(x, t) = c_skip(t) x + c_out(t) x0_hat(x, t) at t_n must match the *target* network's at
  t_{n-1} (an EMA of the student, `--target_ema_decay`). The boundary scalings are `LCMScheduler`'s, which samples
  the saved student in 1-4 steps.

The output folder is a normal `ConceptDiffusionPipeline` (teacher's tokenizer and text tower, the student U-Net,
an `LCMScheduler`), so `from_pretrained`, the CLI (`--steps 1..4`, default 4) and `hf-textimg evaluate` work unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as `python training/train_distill.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import DDPMScheduler, LCMScheduler, UNet2DConditionModel  # noqa: E402

from hf_textimg.data.emoji_arguments import EmojiDataArguments  # noqa: E402
from hf_textimg.diffusion import guidance_scale_embedding, unet_input, x0_and_eps  # noqa: E402
from hf_textimg.hub import write_card_and_push  # noqa: E402
from hf_textimg.pipelines.pipeline_diffusion import ConceptDiffusionPipeline  # noqa: E402
from hf_textimg.pipelines.prompt_embeds import ConceptPromptEmbeds, encode_concept  # noqa: E402
from hf_textimg.shapes import ShapesDataArguments  # noqa: E402
from hf_textimg.tokenization import tokenize_captions  # noqa: E402
from hf_textimg.training import (  # noqa: E402
    TrainConfig,
    build_accelerator,
    build_optimizer,
    build_train_dataloader,
    end_training,
    load_split,
    parse_args,
    run_result,
    tracker_config,
    train_loop,
    write_eval_results,
)
from hf_textimg.training.checkpointing import final_save  # noqa: E402
from hf_textimg.training.entry import run_script  # noqa: E402
from training.train_diffusion import default_validation_prompts, make_evaluator  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class DistillTrainConfig(TrainConfig):
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "A ConceptDiffusionPipeline folder or Hub id (e.g. hf_textimg/pretrained/shapes-diffusion-32)."}
    )
    num_ddim_timesteps: int = field(default=50, metadata={"help": "Teacher ODE steps the training pairs are drawn on (LCM's skip: 1000 / 50 = 20)."})
    guidance_scale_min: float = field(default=1.0, metadata={"help": "Lowest guidance scale the student learns (1 = no guidance)."})
    guidance_scale_max: float = field(default=5.0, metadata={"help": "Highest guidance scale the student learns."})
    time_cond_proj_dim: int = field(default=64, metadata={"help": "Width of the guidance-scale embedding the student U-Net reads."})
    loss_type: Literal["l2", "huber"] = field(default="huber", metadata={"help": "Consistency loss: pseudo-Huber (LCM's default) or MSE."})
    huber_c: float = field(default=0.001, metadata={"help": "Pseudo-Huber's c."})
    target_ema_decay: float = field(default=0.95, metadata={"help": "EMA decay of the target network (LCM: 0.95)."})
    timestep_scaling: float = field(default=10.0, metadata={"help": "LCMScheduler's boundary-condition time scaling."})
    teacher_clip_sample: bool = field(
        default=True, metadata={"help": "Clip the teacher's guided clean-image estimate to [-1, 1] in its DDIM step, noise recomputed from it "
                                "(DDIMScheduler's clip_sample with use_clipped_model_output; DPM-Solver++'s thresholded step), so the student learns the ODE the teacher's "
                                "thresholded sampler follows; --teacher_clip_sample false: the raw guided ODE, as LCM on latents."},
    )
    # Validation and evaluation (every --validation_steps and at the end), read by train_diffusion.make_evaluator
    validation_prompts: list[str] | None = field(default=None, metadata={"help": "Prompts of the saved grid (default: a few Shapes prompts)."})
    validation_images_per_prompt: int = 4
    eval_prompts_per_category: int = field(default=40, metadata={"help": "Shapes prompts per category (0 = no scoring)."})
    eval_prompt_set: Literal["benchmark", "validation"] = field(
        default="validation", metadata={"help": "Score during training on validation prompts (settings are chosen there), or the benchmark."}
    )
    eval_num_inference_steps: int = field(default=4, metadata={"help": "Student steps during evaluation."})
    eval_guidance_scale: float = field(default=3.0, metadata={"help": "Guidance scale during evaluation (the teacher's default)."})
    eval_batch_size: int = 128

    def validate(self) -> None:
        super().validate()
        if not self.teacher_model_name_or_path:
            raise ValueError("--teacher_model_name_or_path is required: the ConceptDiffusionPipeline to distil.")
        if not 1 <= self.guidance_scale_min <= self.guidance_scale_max:
            raise ValueError(f"need 1 <= --guidance_scale_min ({self.guidance_scale_min}) <= --guidance_scale_max ({self.guidance_scale_max}).")
        if not 0.0 <= self.target_ema_decay < 1.0:
            raise ValueError(f"--target_ema_decay must be in [0, 1), got {self.target_ema_decay}.")
        for name in ("num_ddim_timesteps", "time_cond_proj_dim", "eval_num_inference_steps", "validation_images_per_prompt", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.eval_num_inference_steps > self.num_ddim_timesteps:
            raise ValueError(f"--eval_num_inference_steps ({self.eval_num_inference_steps}) cannot exceed --num_ddim_timesteps ({self.num_ddim_timesteps}).")
        if self.huber_c <= 0:
            raise ValueError(f"--huber_c must be > 0, got {self.huber_c}.")


# ---- models ----------------------------------------------------------------------------
def load_teacher(cfg: DistillTrainConfig) -> ConceptDiffusionPipeline:
    """The frozen teacher pipeline; refused unless it is a classifier-free-guided ConceptDiffusionPipeline."""
    teacher = ConceptDiffusionPipeline.from_pretrained(cfg.teacher_model_name_or_path)
    if teacher.guidance_embedded:
        raise ValueError(f"{cfg.teacher_model_name_or_path} is already a distilled model (its U-Net reads the guidance scale); "
                         "distil the pipeline it was distilled from.")
    if teacher.self_conditioned:
        raise ValueError(f"{cfg.teacher_model_name_or_path} has a self-conditioned U-Net (--self_conditioning), which this distillation does not "
                         "support yet (its teacher and student steps read no previous estimate); distil a pipeline trained without it.")
    if cfg.num_ddim_timesteps > teacher.scheduler.config.num_train_timesteps:
        raise ValueError(f"--num_ddim_timesteps {cfg.num_ddim_timesteps} exceeds the teacher's {teacher.scheduler.config.num_train_timesteps} training timesteps.")
    for module in (teacher.unet, teacher.text_encoder):
        module.requires_grad_(False).eval()
    return teacher


def build_student(teacher_unet: UNet2DConditionModel, time_cond_proj_dim: int) -> UNet2DConditionModel:
    """The teacher's U-Net plus a guidance-scale input (`time_cond_proj_dim`), with the teacher's weights and a zero
    `cond_proj`, so it starts out computing exactly what the teacher computes for the conditional row."""
    config = {k: v for k, v in teacher_unet.config.items() if k != "_use_default_values"}  # else from_config resets those keys
    student = UNet2DConditionModel.from_config({**config, "time_cond_proj_dim": time_cond_proj_dim})
    missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
    if unexpected or missing != ["time_embedding.cond_proj.weight"]:
        raise RuntimeError(f"student and teacher U-Nets differ beyond cond_proj: missing {missing}, unexpected {unexpected}")
    torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student.train()


def student_scheduler(teacher_scheduler, cfg: DistillTrainConfig) -> LCMScheduler:
    """The student's sampler: the teacher's betas and prediction type; the DDIM grid it was distilled on; x0
    thresholded to [-1, 1] as the teacher's sampler does."""
    config, _, _ = LCMScheduler.extract_init_dict(dict(teacher_scheduler.config))  # only LCMScheduler's own keys are saved
    return LCMScheduler.from_config(
        config, original_inference_steps=cfg.num_ddim_timesteps, timestep_scaling=cfg.timestep_scaling,
        timestep_spacing="leading", thresholding=True, sample_max_value=1.0,
    )


# ---- the consistency-distillation step ------------------------------------------------------
def ddim_timesteps(num_train_timesteps: int, num_ddim_timesteps: int) -> torch.Tensor:
    """The teacher ODE's grid (N,), ascending: k * skip - 1 for k = 1..N (LCM's `DDIMSolver`, `LCMScheduler`'s origin steps)."""
    skip = num_train_timesteps // num_ddim_timesteps
    return torch.arange(1, num_ddim_timesteps + 1) * skip - 1


def guided_teacher(teacher_unet, noisy, timesteps, cond: ConceptPromptEmbeds, uncond: ConceptPromptEmbeds, guidance_scale, alpha, sigma, prediction_type):
    """Teacher's classifier-free-guided clean image and noise (B, 3, H, W) at scales `guidance_scale` (B,): both rows in
    one U-Net call, then uncond + g * (cond - uncond) (g = 1: the conditional prediction alone)."""
    both = ConceptPromptEmbeds.cat([uncond, cond])
    output = teacher_unet(unet_input(teacher_unet, torch.cat([noisy, noisy])), torch.cat([timesteps, timesteps]), **both.unet_kwargs()).sample
    (x0_u, eps_u), (x0_c, eps_c) = (x0_and_eps(o.float(), noisy, alpha, sigma, prediction_type) for o in output.chunk(2))
    g = guidance_scale.view(-1, 1, 1, 1)
    return x0_u + g * (x0_c - x0_u), eps_u + g * (eps_c - eps_u)


def ddim_step(sample, x0, eps, alpha, sigma, alpha_prev, sigma_prev, clip_sample: bool) -> torch.Tensor:
    """One deterministic DDIM step of the teacher ODE from (alpha, sigma) to (alpha_prev, sigma_prev); with
    `clip_sample` the clean-image estimate is clipped to [-1, 1] and the noise recomputed from it (DDIMScheduler with
    `clip_sample` and `use_clipped_model_output`; in data-prediction form, DPM-Solver++'s first-order thresholded step)."""
    if clip_sample:
        x0 = x0.clamp(-1.0, 1.0)
        eps = (sample - alpha * x0) / sigma
    return alpha_prev * x0 + sigma_prev * eps


def consistency_function(unet, sample, timesteps, cond: ConceptPromptEmbeds, w_embedding, scalings, alpha, sigma, prediction_type):
    """f(x, t) = c_skip(t) * x + c_out(t) * x0_hat(x, t), the student's (or target's) estimate of the ODE's end."""
    output = unet(unet_input(unet, sample), timesteps, timestep_cond=w_embedding, **cond.unet_kwargs()).sample
    x0, _ = x0_and_eps(output.float(), sample, alpha, sigma, prediction_type)
    c_skip, c_out = scalings
    return c_skip * sample + c_out * x0


def consistency_loss(prediction: torch.Tensor, target: torch.Tensor, loss_type: str, huber_c: float) -> torch.Tensor:
    if loss_type == "l2":
        return F.mse_loss(prediction, target)
    return (torch.sqrt((prediction - target) ** 2 + huber_c**2) - huber_c).mean()  # pseudo-Huber, as LCM


def make_compute_loss(cfg, accelerator, student, target_unet, teacher, noise_scheduler: DDPMScheduler, lcm: LCMScheduler, empty: dict):
    # The frozen text tower's encoding of the empty caption (the unconditional row) is the same at every step: once.
    with torch.no_grad(), accelerator.autocast():
        uncond_row = encode_concept(teacher.text_encoder, empty["input_ids"], empty["attention_mask"])  # one row
    grid = ddim_timesteps(noise_scheduler.config.num_train_timesteps, cfg.num_ddim_timesteps).to(accelerator.device)
    skip = noise_scheduler.config.num_train_timesteps // cfg.num_ddim_timesteps
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(accelerator.device)
    prediction_type = noise_scheduler.config.prediction_type

    def levels(t):  # (B,) -> alpha, sigma (B, 1, 1, 1)
        acp = alphas_cumprod[t].view(-1, 1, 1, 1)
        return acp.sqrt(), (1 - acp).sqrt()

    def scalings(t):
        return tuple(s.view(-1, 1, 1, 1).float() for s in lcm.get_scalings_for_boundary_condition_discrete(t))

    def compute_loss(batch):
        pixels = batch["pixel_values"]  # (B, 3, R, R) in [-1, 1]
        b = len(pixels)
        t = grid[torch.randint(0, len(grid), (b,), device=pixels.device)]
        t_prev = (t - skip).clamp(min=0)
        noisy = noise_scheduler.add_noise(pixels, torch.randn_like(pixels), t)
        g = cfg.guidance_scale_min + (cfg.guidance_scale_max - cfg.guidance_scale_min) * torch.rand(b, device=pixels.device)
        w_embedding = guidance_scale_embedding(g, cfg.time_cond_proj_dim)  # (B, time_cond_proj_dim)
        (alpha, sigma), (alpha_prev, sigma_prev) = levels(t), levels(t_prev)
        with torch.no_grad(), accelerator.autocast():
            cond = encode_concept(teacher.text_encoder, batch["input_ids"], batch["attention_mask"])
            uncond = uncond_row.repeat_interleave(b)
            x0, eps = guided_teacher(teacher.unet, noisy, t, cond, uncond, g, alpha, sigma, prediction_type)
            x_prev = ddim_step(noisy, x0, eps, alpha, sigma, alpha_prev, sigma_prev, cfg.teacher_clip_sample)
            target = consistency_function(target_unet, x_prev, t_prev, cond, w_embedding, scalings(t_prev), alpha_prev, sigma_prev, prediction_type)
        with accelerator.autocast():
            prediction = consistency_function(student, noisy, t, cond, w_embedding, scalings(t), alpha, sigma, prediction_type)
        return consistency_loss(prediction.float(), target.float(), cfg.loss_type, cfg.huber_c), {}

    return compute_loss


@torch.no_grad()
def update_target(target_unet: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """target <- decay * target + (1 - decay) * student (LCM's `update_ema`)."""
    target_params = list(target_unet.parameters())
    torch._foreach_lerp_(target_params, [p.detach() for p in student.parameters()], 1.0 - decay)


# ---- main --------------------------------------------------------------------------------
def student_pipeline(teacher, student, cfg) -> ConceptDiffusionPipeline:
    return ConceptDiffusionPipeline(teacher.tokenizer, teacher.text_encoder, student, student_scheduler(teacher.scheduler, cfg),
                                    teacher.config.prompt_normalization)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_args(DistillTrainConfig, argv, ShapesDataArguments, EmojiDataArguments)
    teacher = load_teacher(cfg)
    if cfg.prompt_normalization is None:  # train on captions the teacher's way
        cfg.prompt_normalization = teacher.config.prompt_normalization
    accelerator = build_accelerator(cfg)
    train_data = load_split(cfg, "train", cfg.max_train_samples)
    student = build_student(teacher.unet, cfg.time_cond_proj_dim)
    target_unet = copy.deepcopy(student).requires_grad_(False)
    noise_scheduler = DDPMScheduler.from_config(teacher.scheduler.config)  # the teacher's training betas and prediction type
    lcm = student_scheduler(teacher.scheduler, cfg)

    dataloader = build_train_dataloader(cfg, train_data, teacher.tokenizer)
    optimizer, lr_scheduler = build_optimizer(cfg, student.parameters())
    prepared_student, optimizer, dataloader, lr_scheduler = accelerator.prepare(student, optimizer, dataloader, lr_scheduler)
    for module in (teacher.unet, teacher.text_encoder, target_unet):
        module.to(accelerator.device)

    empty = {k: v.to(accelerator.device) for k, v in tokenize_captions(teacher.tokenizer, [""], cfg.max_length).items()}
    compute_loss = make_compute_loss(cfg, accelerator, prepared_student, target_unet, teacher, noise_scheduler, lcm, empty)

    @contextlib.contextmanager
    def pipeline_fn():  # the online student, as LCM evaluates and saves it
        student.eval()
        pipe = student_pipeline(teacher, student, cfg)
        pipe.set_progress_bar_config(disable=True)
        try:
            yield pipe
        finally:
            student.train()

    evaluate = make_evaluator(cfg, accelerator, pipeline_fn, default_validation_prompts(cfg, train_data))
    if accelerator.is_main_process:
        accelerator.init_trackers("train_distill", config=tracker_config(cfg))
    state = train_loop(
        accelerator, cfg, {"unet": prepared_student}, optimizer, lr_scheduler, dataloader, compute_loss,
        after_optimizer_step=lambda state: update_target(target_unet, student, cfg.target_ema_decay),
        evaluate=evaluate, extra_checkpoint_models=lambda: {"target_unet": target_unet},
    )
    result = run_result(state)
    if accelerator.is_main_process:
        with final_save(cfg.output_dir) as folder:  # the model already there stays whole if saving fails
            student_pipeline(teacher, student, cfg).save_pretrained(folder, safe_serialization=True)
        write_eval_results(cfg, result)
        write_card_and_push(cfg, argv, __file__)
    end_training(accelerator, cfg)
    return result


if __name__ == "__main__":
    run_script(main)
