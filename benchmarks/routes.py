"""The training runs the benchmarks measure, each as (training script, its arguments at the real size).

Real sizes are those of the measured runs (docs/performance.md, the model cards' commands): the concept model (batch 256,
128-wide 2-layer text tower, 16-channel 3-stage image tower), the one-shot decoder (batch 64, `--objective both`,
4 noise samples, text tower fine-tuned), the diffusion U-Net (batch 64, bf16, EMA, frozen text tower of the
concept model), and the auto-encoder at its defaults (batch 64). `--quick` sizes are tiny, for smoke tests.
Every run goes through `run_route`, which calls the script's own `main(argv)` with its `train_loop` timed by a
`benchmarks.common.TimedLoop`.

Routes:
    concept         training/train_concept.py (contrastive)
    autoencoder     training/train_autoencoder.py
    decoder         training/train_decoder.py (needs a concept model: `concept_model_path`)
    diffusion       training/train_diffusion.py, frozen text tower of a concept model (the documented run)
    diffusion+text  training/train_diffusion.py, text tower trained from scratch with the U-Net
    diffusion+selfcond  the diffusion route with --self_conditioning (a gradient-free first pass on half the batch)
    baseline        benchmarks/baseline.py: CLIPTextModel + SD-layout UNet2DConditionModel, epsilon, the
                    text-to-image example's step and data path, U-Net parameter count matched to ours
    baseline+tensordata     the same with our cached-tensor data loader (one change: the data path)
    baseline+ourattention   the same with cross-attention only at the lowest resolution, where our U-Net has it,
                            instead of Stable Diffusion's every-level-but-the-lowest (one change: attention levels;
                            its widths are re-matched to our parameter count)
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from dataclasses import dataclass
from types import SimpleNamespace

from benchmarks.common import TimedLoop, fresh_accelerate

SHAPES = ["--dataset_name", "shapes", "--num_shapes_train", "50000", "--resolution", "32"]
SHAPES_QUICK = ["--dataset_name", "shapes", "--num_shapes_train", "128", "--num_shapes_eval", "16", "--max_eval_samples", "16",
                "--resolution", "32", "--max_length", "16"]
TEXT_TOWER = ["--text_hidden_size", "128", "--text_num_layers", "2", "--text_num_heads", "4"]
TEXT_TOWER_QUICK = ["--text_hidden_size", "32", "--text_num_layers", "1", "--text_num_heads", "2"]
DIFFUSION_RECIPE = ["--train_batch_size", "64", "--mixed_precision", "bf16", "--use_ema", "--learning_rate", "1e-3",
                    "--lr_scheduler", "constant_with_warmup", "--lr_warmup_steps", "100", "--max_train_steps", "100000",
                    "--eval_prompts_per_category", "40"]
DIFFUSION_QUICK = ["--train_batch_size", "8", "--mixed_precision", "bf16", "--use_ema", "--max_train_steps", "100000",
                   "--eval_prompts_per_category", "1", "--eval_num_inference_steps", "2", "--eval_batch_size", "8"]
# Cross-attention at the lowest-resolution level only (our U-Net's default), for 3 levels (real) and 2 (quick).
OUR_ATTENTION = ["--unet_down_block_types", "DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"]
OUR_ATTENTION_QUICK = ["--unet_down_block_types", "DownBlock2D", "CrossAttnDownBlock2D"]
BASELINE_QUICK = [*DIFFUSION_QUICK, *TEXT_TOWER_QUICK, "--unet_width_ratios", "1", "2"]
OUR_UNET_QUICK = ["--unet_block_out_channels", "16", "32", "--unet_attention_head_dim", "8", "--unet_norm_num_groups", "8",
                  "--validation_images_per_prompt", "1"]


@dataclass(frozen=True)
class Route:
    module: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    needs_concept_model: bool = False  # pass `--concept_model_path`

    def argv(self, quick: bool, concept_model_path: str | None = None, extra: list[str] = ()) -> list[str]:
        argv = list(SHAPES_QUICK + list(self.quick_args) if quick else SHAPES + list(self.args))
        if self.needs_concept_model:
            if concept_model_path is None:
                raise ValueError(f"The {self.module} route needs a concept model (concept_model_path).")
            argv += ["--concept_model_path", concept_model_path]
        return argv + list(extra)  # later flags win


ROUTES: dict[str, Route] = {
    "concept": Route(
        "training.train_concept",
        ("--train_batch_size", "256", *TEXT_TOWER, "--vision_base_channels", "16", "--vision_num_stages", "3", "--learning_rate", "2e-3",
         "--lr_scheduler", "cosine", "--lr_warmup_steps", "50", "--max_train_steps", "1500", "--max_eval_samples", "1000"),
        ("--train_batch_size", "16", *TEXT_TOWER_QUICK, "--projection_dim", "32", "--vision_base_channels", "8", "--vision_num_stages", "2"),
    ),
    "autoencoder": Route(
        "training.train_autoencoder",
        ("--train_batch_size", "64",),
        ("--train_batch_size", "8", "--code_dim", "32", "--encoder_block_out_channels", "8", "16", "--decoder_block_out_channels", "16", "8",
         "--norm_num_groups", "4"),
    ),
    "decoder": Route(
        "training.train_decoder",
        ("--objective", "both", "--train_text_encoder", "--consistency_weight", "0.1", "--pixel_weight", "1", "--reconstruct_weight", "1",
         "--foreground_weight", "10", "--noise_dim", "16", "--noise_samples", "4", "--learning_rate", "2e-3", "--lr_warmup_steps", "50",
         "--lr_scheduler", "cosine", "--max_train_steps", "4000", "--train_batch_size", "64", "--eval_prompts_per_category", "40",
         "--max_eval_samples", "256"),
        ("--objective", "both", "--train_text_encoder", "--noise_dim", "4", "--noise_samples", "2", "--train_batch_size", "8",
         "--decoder_block_out_channels", "16", "8", "--norm_num_groups", "4", "--eval_prompts_per_category", "1"),
        needs_concept_model=True,
    ),
    "diffusion": Route("training.train_diffusion", tuple(DIFFUSION_RECIPE), (*DIFFUSION_QUICK, *OUR_UNET_QUICK), needs_concept_model=True),
    "diffusion+text": Route(
        "training.train_diffusion",
        (*DIFFUSION_RECIPE, "--train_text_encoder", *TEXT_TOWER),
        (*DIFFUSION_QUICK, *OUR_UNET_QUICK, "--train_text_encoder", *TEXT_TOWER_QUICK, "--projection_dim", "32"),
    ),
    "diffusion+selfcond": Route(
        "training.train_diffusion", (*DIFFUSION_RECIPE, "--self_conditioning"), (*DIFFUSION_QUICK, *OUR_UNET_QUICK, "--self_conditioning"),
        needs_concept_model=True,
    ),
    "baseline": Route("benchmarks.baseline", (*DIFFUSION_RECIPE, *TEXT_TOWER), tuple(BASELINE_QUICK)),
    "baseline+tensordata": Route("benchmarks.baseline", (*DIFFUSION_RECIPE, *TEXT_TOWER, "--tensor_data"), (*BASELINE_QUICK, "--tensor_data")),
    "baseline+ourattention": Route("benchmarks.baseline", (*DIFFUSION_RECIPE, *TEXT_TOWER, *OUR_ATTENTION), (*BASELINE_QUICK, *OUR_ATTENTION_QUICK)),
}

# The documented prior run (outputs/prior-route/run.sh): train_prior.py's default PriorTransformer (4 blocks of 4 heads x 32)
# on the concept model's text tower and the auto-encoder's 512-d codes (its decoder draws). Not in ROUTES: that run also
# reads an auto-encoder (--autoencoder_path, --decoder_path), which `Route.argv` does not pass; sampling_throughput.py
# builds the unCLIP pipeline from it with random weights.
PRIOR_ROUTE = Route(
    "training.train_prior",
    ("--train_batch_size", "128", "--learning_rate", "1e-3", "--lr_warmup_steps", "100", "--lr_scheduler", "cosine",
     "--max_train_steps", "3000", "--mixed_precision", "bf16", "--eval_prompts_per_category", "20"),
    ("--train_batch_size", "8", "--prior_num_layers", "1", "--prior_num_attention_heads", "2", "--prior_attention_head_dim", "8",
     "--eval_prompts_per_category", "1", "--eval_num_inference_steps", "2"),
    needs_concept_model=True,
)


def run_route(name: str, argv: list[str], loop: TimedLoop) -> dict:
    """`main(argv)` of the route's script, its training loop timed by `loop`; returns what main returns."""
    module = importlib.import_module(ROUTES[name].module)
    fresh_accelerate()
    # The script's own prints (e.g. its final metrics) go to stderr: stdout is the benchmark's table and JSON line.
    with loop.patch(module), contextlib.redirect_stdout(sys.stderr):
        return module.main(argv)


def make_concept_model(output_dir: str, quick: bool, steps: int = 1) -> str:
    """A concept model (+ tokenizer) at the concept route's size after `steps` training steps, for the routes that
    read one. Speed and memory do not depend on the weights, so one step is enough for those benchmarks."""
    run_route("concept", ROUTES["concept"].argv(quick, extra=["--output_dir", output_dir]), TimedLoop(max_steps=steps))
    return output_dir


def our_unet_parameters(quick: bool, text_hidden_size: int | None = None) -> int:
    """Parameter count of the diffusion route's U-Net (built on the meta device from the script's own
    `build_model`), the size the baseline's U-Net is matched to."""
    from accelerate import init_empty_weights

    from hf_textimg.shapes import ShapesDataArguments
    from hf_textimg.training import parse_args
    from training.train_diffusion import DiffusionTrainConfig, build_model

    route = ROUTES["diffusion+text"]
    cfg = parse_args(DiffusionTrainConfig, route.argv(quick, extra=["--output_dir", "/tmp/unused"]), ShapesDataArguments)
    width = text_hidden_size or cfg.text_hidden_size  # the concept model's text tower is as wide as diffusion+text's
    text_encoder = SimpleNamespace(config=SimpleNamespace(hidden_size=width, projection_dim=cfg.projection_dim))
    with init_empty_weights():
        return sum(p.numel() for p in build_model(cfg, text_encoder).parameters())


def baseline_argv(name: str, quick: bool, output_dir: str, extra: list[str] = ()) -> list[str]:
    """A baseline route's arguments with its U-Net matched to our diffusion U-Net's parameter count."""
    return ROUTES[name].argv(quick, extra=["--unet_target_params", str(our_unet_parameters(quick)), "--output_dir", output_dir, *extra])
