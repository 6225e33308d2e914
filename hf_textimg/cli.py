"""The `hf-textimg` command line.

    hf-textimg generate "a red circle at the top left" "two blue squares" --num-images 4 --out outputs/grid.png
    hf-textimg evaluate --model outputs/diffusion-shapes --benchmark shapes --json outputs/eval.json
    hf-textimg demo --out outputs/demo                               # the shipped model on 8 prompts
    hf-textimg serve                                                 # a web app (pip install 'hf-textimg[app]')
    hf-textimg data shapes --size 32 --out data/shapes32             # datasets.load_from_disk folder
    hf-textimg data emoji --styles noto twemoji openmoji fluent --size 64 --out data/emoji64

`--model` takes a pipeline folder (what `save_pretrained` and the training scripts write), the
name of a shipped model, or a Hugging Face Hub repo id; by default the shipped Shapes model.
Run `hf-textimg <command> --help` for each command's options.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import re
import sys
import textwrap
import time
from pathlib import Path

from .pretrained import DEFAULT_MODEL, EMOJI_DEMO_MODEL, available_models, pretrained_path
from .shapes.vocab import IMAGE_SIZES, SCENE_KINDS  # plain constants: the module imports nothing heavy
from .utils.checks import check_output_dir, check_output_file

DEFAULT_STEPS = 20
DEFAULT_SUPERRES = "shapes-superres-128"  # the shipped 4x stage of the default model: `--size 128` without --model adds it
DEFAULT_DIVERSITY, DEFAULT_DIVERSITY_PROMPTS = 8, 10  # evaluate: images per open-layout prompt, prompts per category
DEFAULT_GUIDANCE = 3.0  # chosen for the shipped model on the validation prompts (not the benchmark's; docs/performance.md)
EMOJI_STYLES = ("noto", "twemoji", "openmoji", "fluent")  # hf_textimg.data.emoji_sources.STYLES, written out: importing it would slow `--help`
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
CHUNK_IMAGES = 128  # images per pipeline call in `generate`/`demo`, each chunk written before the next is made
GRID_MAX_IMAGES = 1024  # images one grid shows (8 columns of 128-px cells: ~1,000 x 20,000 px)
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # org/name, as the Hub spells repo ids
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

# One prompt per Shapes benchmark category; the last two use held-out colour-shape pairs,
# which never appear in training.
DEMO_PROMPTS = (
    ("single", "a large orange square"),
    ("color", "a pink circle"),
    ("position", "a green circle at the top left"),
    ("count", "three blue squares"),
    ("pair", "a red triangle and a yellow circle"),
    ("relation", "a purple square left of an orange circle"),
    ("heldout", "a blue circle"),
    ("heldout", "a red plus"),
)
# The Emoji grid `hf-textimg demo` adds with the shipped emoji model: emoji whose noto drawing was in training
# (seen), and emoji seen only in the other three styles, asked in noto style (heldout_style; docs/emoji.md).
EMOJI_DEMO_PROMPTS = (
    ("seen", "grinning face, noto style"),
    ("seen", "red heart, noto style"),
    ("seen", "crab, noto style"),
    ("seen", "fire, noto style"),
    ("seen", "strawberry, noto style"),
    ("seen", "rainbow, noto style"),
    ("heldout_style", "anchor, noto style"),
    ("heldout_style", "castle, noto style"),
)


# -- argument types: bad values become argparse errors (usage + one line, exit 2) -----------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def diversity_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0 or value == 1:
        raise argparse.ArgumentTypeError(f"must be 0 (skip the variety measure) or at least 2 images per prompt (one image always has one layout), got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0 (1 or less turns guidance off), got {text}")
    if value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def seed_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not -(2**63) <= value < 2**64:  # what torch.Generator.manual_seed takes
        raise argparse.ArgumentTypeError(f"must be between -2**63 and 2**64 - 1, got {value}")
    return value


def weight_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def prompt_text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a prompt must not be empty")
    return text


def model_arg(text: str) -> str:
    """A pipeline folder, a shipped model's name, or a Hub repo id (passed on to from_pretrained)."""
    path = Path(text).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a pipeline folder: it has no model_index.json (pipe.save_pretrained and the "
                "training scripts' --output_dir write one)"
            )
        return str(path)
    if text in available_models():
        return str(pretrained_path(text))
    if _REPO_ID.fullmatch(text):
        return text  # not here: a Hub repo id
    raise argparse.ArgumentTypeError(f"{text!r} does not exist, and is not a Hub repo id like 'org/name'")


def image_path(text: str) -> Path:
    path = Path(text).expanduser()
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} must be an image file name ending in {', '.join(IMAGE_SUFFIXES)}, e.g. grid.png")
    return path


def device_arg(text: str) -> str:
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


# -- loading and generating ----------------------------------------------------------------------


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is available here; use --device cpu (or auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: MPS is not available here; use --device cpu (or auto)")
    return name


def load_pipeline(model: str | None, device: str = "auto", scheduler: str | None = None, upscale: list[str] | None = None,
                  own_text_towers: bool = True):
    """`DiffusionPipeline.from_pretrained(model)` on `device`, with the `--scheduler` choice swapped in;
    `model=None` is the shipped default. `upscale` (super-resolution stage folders) makes it the base of a
    `ConceptCascadePipeline` with those stages; a stage trained on another text tower than the base's keeps its own
    unless `own_text_towers=False` (then that is an error)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    import hf_textimg  # noqa: F401  (registers the pipelines with diffusers)

    model = str(pretrained_path()) if model is None else model
    device = resolve_device(device)
    bars = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()  # no "Loading pipeline components" bars
    transformers_logging.disable_progress_bar()
    try:
        pipe = _from_pretrained(model)
        if upscale:
            from .pipelines import ConceptCascadePipeline

            pipe = ConceptCascadePipeline.from_stages(pipe, *(_from_pretrained(stage) for stage in upscale), own_text_towers=own_text_towers)
    finally:
        if bars[0]:
            diffusers_logging.enable_progress_bar()
        if bars[1]:
            transformers_logging.enable_progress_bar()
    set_scheduler(pipe, scheduler)
    return pipe.to(device)


def _from_pretrained(model: str):
    from diffusers import DiffusionPipeline

    from hf_textimg.pipelines.checks import check_pipeline_folder

    try:
        if Path(model).is_dir():
            check_pipeline_folder(model)  # model_index.json, component folders, whole safetensors: named errors
        return DiffusionPipeline.from_pretrained(model)
    except (OSError, ValueError) as err:  # missing files, unknown or unreachable Hub repo
        raise ValueError(_load_error(model, err)) from err


def _load_error(model: str, err: Exception) -> str:
    from huggingface_hub.constants import is_offline_mode

    if Path(model).exists():
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return f"could not load the pipeline folder {model!r}: {reason}"
    if is_offline_mode():
        reason = "HF_HUB_OFFLINE is set and it is not in the local Hub cache"
    else:
        reason = f"no such repo on the Hub, or the Hub could not be reached ({type(err).__name__})"
    return f"could not load --model {model!r}: it is not a local folder, and it could not be downloaded as a Hub repo: {reason}"


# --scheduler choices: diffusers classes, each built with `from_config` from the pipeline's saved scheduler config.
SCHEDULERS = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


def set_scheduler(pipe, name: str | None) -> None:
    """Replace `pipe.scheduler` by the `--scheduler` choice (a no-op for None or a pipeline without one)."""
    if name is None:
        return
    if not hasattr(pipe, "scheduler"):
        print(f"note: {type(pipe).__name__} generates in one pass and has no scheduler; --scheduler ignored", file=sys.stderr)
        return
    import diffusers

    cls_name, overrides = SCHEDULERS[name]
    pipe.scheduler = getattr(diffusers, cls_name).from_config(pipe.scheduler.config, **overrides)


def call_kwargs(pipe, steps: int | None, guidance: float | None, args=None) -> dict:
    """Sampling options this pipeline's `__call__` takes. The one-shot DecoderPipeline has no
    steps or guidance: those are left out, with a note when they were asked for. With `args`, also the
    super-resolution stages' options (--upscale-steps, --noise-level: cascades only) and --size."""
    accepted = inspect.signature(pipe.__call__).parameters
    default_steps = getattr(pipe, "default_num_inference_steps", DEFAULT_STEPS)  # 4 for a consistency-distilled model
    asked = {"num_inference_steps": ("--steps", steps, default_steps), "guidance_scale": ("--guidance", guidance, DEFAULT_GUIDANCE)}
    if args is not None:
        asked.update(superres_num_inference_steps=("--upscale-steps", args.upscale_steps, None), noise_level=("--noise-level", args.noise_level, None))
    kwargs, ignored = {}, []
    for name, (flag, value, default) in asked.items():
        if name in accepted and (value is not None or default is not None):
            kwargs[name] = default if value is None else value
        elif name not in accepted and value is not None:
            ignored.append(flag)
    if ignored:
        how = "generates in one pass and" if "num_inference_steps" not in accepted else "has no super-resolution stage and"
        print(f"note: {type(pipe).__name__} {how} takes no {' or '.join(ignored)}; ignored", file=sys.stderr)
    return {**kwargs, **(size_kwargs(pipe, args.size) if args is not None else {})}


def size_kwargs(pipe, size: int | None) -> dict:
    """`--size`: height and width for a cascade (which checks it can make that size); for any other pipeline,
    nothing when it is the size the model makes, else an error saying how to get larger images."""
    if size is None:
        return {}
    if hasattr(pipe, "stages_for_size"):
        pipe.stages_for_size(size, size)
        return {"height": size, "width": size}
    native = getattr(getattr(pipe, "unet", None), "config", {}).get("sample_size", 32)
    if size != native:
        raise ValueError(
            f"--size {size}: {type(pipe).__name__} makes {native} px images; for larger ones add super-resolution stages with "
            "--upscale STAGE_FOLDER [STAGE_FOLDER] (train one with training/train_superres.py), or pass a cascade folder as --model"
        )
    return {}


def default_upscale(args) -> list[str] | None:
    """--upscale, else, when --size asks a shipped base model (or the default, no --model) for more than its 32 px,
    that model's shipped super-resolution stage (`hf_textimg.pretrained.SUPERRES_STAGES`), else None."""
    from .pretrained import PRETRAINED_DIR, SUPERRES_STAGES

    if args.upscale or not getattr(args, "size", None) or args.size <= 32:
        return args.upscale
    base = DEFAULT_MODEL if args.model is None else Path(args.model).name if Path(args.model).parent == PRETRAINED_DIR else None
    stage = SUPERRES_STAGES.get(base)
    return [str(pretrained_path(stage))] if stage in available_models() else None


def autocast(pipe, mixed_precision: str):
    """`--mixed-precision bf16`: the pipeline call under torch.autocast on its device (weights stay fp32), which
    samples the shipped model 2.85x faster on a 2-core CPU (docs/performance.md); "no": full fp32."""
    import contextlib

    import torch

    if mixed_precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(pipe._execution_device.type, dtype=torch.bfloat16)


def generate_images(pipe, prompts: list[str], num_images: int, seed: int, mixed_precision: str = "no", **kwargs) -> list:
    """`num_images` PIL images per prompt (prompt 0's first); the same seed gives the same images."""
    return [image for _, chunk in generate_chunks(pipe, prompts, num_images, seed, mixed_precision, **kwargs) for image in chunk]


def generate_chunks(pipe, prompts: list[str], num_images: int, seed: int, mixed_precision: str = "no", **kwargs):
    """Yield (index of the first image, PIL images) for at most CHUNK_IMAGES images at a time, in prompt order, so a
    caller writes each chunk before the next is made and memory stays bounded. One generator runs through every
    chunk; with up to CHUNK_IMAGES images this is a single pipeline call, exactly as before chunking."""
    import torch

    generator = torch.Generator().manual_seed(seed)  # on the CPU, so a seed means the same noise on any device
    start = 0
    for prompt_indices, per_prompt in _chunk_calls(len(prompts), num_images):
        with autocast(pipe, mixed_precision):
            images = pipe([prompts[p] for p in prompt_indices], num_images_per_prompt=per_prompt, generator=generator, **kwargs).images
        yield start, images
        start += len(images)


def _chunk_calls(num_prompts: int, num_images: int) -> list[tuple[list[int], int]]:
    """Pipeline calls of at most CHUNK_IMAGES images, as (prompt indices, images per prompt): several whole prompts
    per call or, with more than CHUNK_IMAGES images per prompt, one prompt per call with part of its images."""
    if num_images <= CHUNK_IMAGES:
        per_call = CHUNK_IMAGES // num_images
        return [(list(range(first, min(first + per_call, num_prompts))), num_images) for first in range(0, num_prompts, per_call)]
    return [([p], min(CHUNK_IMAGES, num_images - done)) for p in range(num_prompts) for done in range(0, num_images, CHUNK_IMAGES)]


def count_blank(images) -> int:
    """Images (B, H, W, 3) in [0, 1] that are one flat colour (every pixel equal at 8 bits): nothing drawn."""
    import numpy as np

    pixels = np.round(np.asarray(images) * 255).reshape(len(images), -1, 3)  # (B, H*W, 3)
    return int((pixels.max(axis=1) == pixels.min(axis=1)).all(axis=1).sum())


def save_grid(images: list, captions: list[str], path: Path, cols: int):
    from .utils import make_captioned_grid

    grid = make_captioned_grid(images, captions, cols=min(cols, 8), scale=max(1, 128 // images[0].width))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return grid


def model_name(args) -> str:
    name = args.model or f"{DEFAULT_MODEL} (shipped)"
    upscale = default_upscale(args) if hasattr(args, "upscale") else None
    return name + (f" + super-resolution {', '.join(upscale)}" if upscale else "")


# -- commands ------------------------------------------------------------------------------------


def grid_images_per_prompt(num_prompts: int, num_images: int, individual: bool) -> int:
    """Images per prompt shown in the grid: all of them when the grid holds at most GRID_MAX_IMAGES, else (with
    --individual, which writes every image) the first few of each prompt; without --individual that is an error."""
    if num_prompts * num_images <= GRID_MAX_IMAGES:
        return num_images
    if not individual:
        raise ValueError(
            f"--num-images {num_images} x {num_prompts} prompts = {num_prompts * num_images} images, more than one grid holds "
            f"({GRID_MAX_IMAGES}); pass --individual to write every image as its own PNG as it is made (the grid then shows "
            "the first images of each prompt), or ask for fewer images."
        )
    return max(1, GRID_MAX_IMAGES // num_prompts)


def individual_path(out: Path, prompt_index: int, image_index: int) -> Path:
    return out.with_name(f"{out.stem}-{prompt_index:02d}-{image_index:02d}{out.suffix}")


def run_generate(args) -> int:
    start = time.perf_counter()
    check_output_file(args.out, "--out")  # before any work: a long run must not end unable to write
    per_prompt = grid_images_per_prompt(len(args.prompt), args.num_images, args.individual)
    pipe = load_pipeline(args.model, args.device, args.scheduler, default_upscale(args))
    pipe.set_progress_bar_config(disable=args.quiet)
    kwargs = call_kwargs(pipe, args.steps, args.guidance, args)
    shown, captions, total = [], [], 0
    for first, chunk in generate_chunks(pipe, args.prompt, args.num_images, args.seed, args.mixed_precision, **kwargs):
        for k, image in enumerate(chunk, start=first):
            p, i = divmod(k, args.num_images)
            if args.individual:
                image.save(individual_path(args.out, p, i))  # written as it comes
            if i < per_prompt and len(shown) < GRID_MAX_IMAGES:
                shown.append(image)
                captions.append(args.prompt[p])
        total += len(chunk)
    save_grid(shown, captions, args.out, cols=per_prompt)
    settings = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    print(
        f"Generated {total} images ({len(args.prompt)} prompts x {args.num_images}, seed {args.seed}"
        f"{', ' + settings if settings else ''}) with {model_name(args)} in {time.perf_counter() - start:.1f}s"
    )
    if args.individual:
        print(f"One PNG per image: {args.out.with_name(args.out.stem + '-PP-II' + args.out.suffix)} (PP = prompt, II = image)")
    if len(shown) < total:
        print(f"The grid shows {len(shown)} of the {total} images (the first {per_prompt} of each prompt).")
    print(f"Grid: {args.out}")
    return 0


def _blank_checking(pipe, counts: dict):
    """`pipe`, counting the images it makes (`counts["images"]`) and those that are one flat colour (`counts["blank"]`)."""

    def call(*call_args, **call_kwargs):
        output = pipe(*call_args, **call_kwargs)
        counts["images"] += len(output.images)
        counts["blank"] += count_blank(output.images)
        return output

    return call


def check_not_all_blank(counts: dict, args, kwargs: dict) -> None:
    """An evaluation whose every image is one flat colour would score 0.0 everywhere for a reason that is not the
    model's drawing (a bad setting): an error, not a table of zeros."""
    if counts["images"] and counts["blank"] == counts["images"]:
        raise ValueError(
            f"every one of the {counts['images']} generated images is a single flat colour, so every score would be 0.0 for a reason "
            f"that is not the model's drawing: check the settings ({', '.join(f'{k}={v}' for k, v in kwargs.items()) or 'defaults'}, "
            f"--scheduler {args.scheduler or 'as saved'}, --mixed-precision {args.mixed_precision}) with `hf-textimg generate`."
        )


def _progress(args, total: int, start: float):
    done = 0

    def progress(num_images: int) -> None:
        nonlocal done
        done += num_images
        if not args.quiet:
            print(f"  generated {done}/{total} images ({time.perf_counter() - start:.0f}s)", file=sys.stderr)

    return progress


def _settings(pipe, args, kwargs: dict, **extra) -> dict:
    return {"seed": args.seed, "batch_size": args.batch_size, "mixed_precision": args.mixed_precision,
            "scheduler": type(getattr(pipe, "scheduler", None)).__name__ if hasattr(pipe, "scheduler") else None, **extra, **kwargs}


def _record(args, result: dict, table: str, metrics: dict, what: str) -> None:
    """--record: keep this evaluation in the model folder's eval_results.json and show it in its model card."""
    import shlex

    from .hub import record_evaluation

    argv, command = list(args.argv), []
    while argv:
        arg = argv.pop(0)
        if arg == "--json":
            argv.pop(0)  # and its path: where this run wrote a copy is not part of what reproduces it
        elif arg not in ("--record", "--quiet"):
            command.append(arg)
    folder = Path(args.model) if args.model else pretrained_path()
    entry = {"command": "hf-textimg " + shlex.join(command), "what": what, "table": table, "metrics": metrics,
             "prompt_set": args.prompt_set, "settings": result["settings"]}
    card = record_evaluation(folder, f"{args.benchmark}/{args.prompt_set}", entry)
    print(f"Recorded in {folder / 'eval_results.json'} and the model card {card}")


def _print_result(args, result: dict) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"Wrote {args.json}")
    print(json.dumps(result))


def _evaluation_pipeline(args):
    """The pipeline to evaluate, after checking that the result can be written (minutes of generation must not end
    unable to write)."""
    if args.json:
        check_output_file(args.json, "--json")
    if args.record:
        folder = Path(args.model) if args.model else pretrained_path()
        if not (folder / "model_index.json").is_file():
            raise ValueError(f"--record writes into the model's folder, but {str(folder)!r} is not a local pipeline folder; pass --model FOLDER "
                             "(a Hub model: download it with huggingface_hub.snapshot_download first), or use --json.")
        check_output_file(folder / "eval_results.json", "--record")
    pipe = load_pipeline(args.model, args.device, args.scheduler, default_upscale(args))
    pipe.set_progress_bar_config(disable=True)
    return pipe, call_kwargs(pipe, args.steps, args.guidance, args)


def run_evaluate(args) -> int:
    if args.benchmark == "emoji":
        if args.diversity or args.diversity_prompts:
            print("note: --diversity and --diversity-prompts measure Shapes layouts; ignored with --benchmark emoji", file=sys.stderr)
        return run_evaluate_emoji(args)
    from .shapes import BENCHMARK_CATEGORIES, evaluate_shapes

    start = time.perf_counter()
    pipe, kwargs = _evaluation_pipeline(args)
    per_category = args.prompts_per_category or 40
    diversity, diversity_prompts = _diversity_settings(args, per_category)
    counts = {"images": 0, "blank": 0}
    progress = _progress(args, len(BENCHMARK_CATEGORIES) * per_category + _variety_images(args, diversity, diversity_prompts), start)
    # Training's evaluation calls the same function, so the defaults reproduce eval_results.json.
    with autocast(pipe, args.mixed_precision):
        report = evaluate_shapes(_blank_checking(pipe, counts), per_category, args.seed, args.batch_size, args.prompt_set, on_batch=progress, **kwargs)
        check_not_all_blank(counts, args, kwargs)  # before the variety images: a bad setting should stop at once
        variety = _evaluate_variety(args, pipe, diversity, diversity_prompts, progress, kwargs)
    result = {
        "benchmark": args.benchmark,
        "prompt_set": args.prompt_set,
        "model": args.model or DEFAULT_MODEL,
        "upscale": default_upscale(args),
        **report.to_dict(),
        "variety": variety.to_dict() if variety else None,
        "settings": _settings(pipe, args, kwargs, prompts_per_category=per_category, diversity=diversity, diversity_prompts=diversity_prompts),
        "seconds": round(time.perf_counter() - start, 1),
    }
    what = "Shapes benchmark" if args.prompt_set == "benchmark" else "Shapes validation prompts (not the benchmark's)"
    print(f"{what}, {model_name(args)}: {per_category} prompts per category, seed {args.seed}")
    table = report.format_table() + (f"\n\n{variety.format_table()}" if variety else "")
    print(table)
    print("(overall = mean of single, color, position, count, pair, relation; heldout is reported beside it. exact: the image holds the "
          "asked objects and nothing else" + ("; variety: distinct cell layouts where the prompt names no position, ratio 1 = as varied as "
          "the data)" if variety else ")"))
    _print_result(args, result)
    if args.record:
        also = f"; variety: {diversity} images for each of up to {diversity_prompts} open-layout prompts per category" if variety else ""
        _record(args, result, table, {**report.to_metrics(), **(variety.to_metrics() if variety else {})}, f"{what}, {per_category} prompts per "
                f"category, one image each{also}, seed {args.seed}, {', '.join(f'{k}={v}' for k, v in kwargs.items())}")
    return 0


def _diversity_settings(args, per_category: int) -> tuple[int, int]:
    """--diversity (default 8; 0 = skip) and --diversity-prompts (default: 10, at most --prompts-per-category, so a
    small evaluation stays small)."""
    diversity = DEFAULT_DIVERSITY if args.diversity is None else args.diversity
    return diversity, args.diversity_prompts or min(DEFAULT_DIVERSITY_PROMPTS, per_category)


def _variety_images(args, diversity: int, diversity_prompts: int) -> int:
    from .shapes import variety_prompts

    return diversity * len(variety_prompts(diversity_prompts, prompt_set=args.prompt_set)) if diversity else 0


def _evaluate_variety(args, call, diversity: int, diversity_prompts: int, progress, kwargs: dict):
    """The variety measure (hf_textimg.shapes.variety) of `call` (the pipeline, or a wrapper), None when --diversity 0."""
    from .shapes import evaluate_shapes_variety

    if not diversity:
        return None
    return evaluate_shapes_variety(call, diversity, diversity_prompts, args.seed, args.batch_size, args.prompt_set, on_batch=progress, **kwargs)


def pipeline_resolution(pipe) -> int:
    """The image side a pipeline generates by default (a cascade: its last stage's; diffusion: unet.config.sample_size;
    one-shot decoder: image_size)."""
    if hasattr(pipe, "output_sizes"):
        return pipe.output_sizes()[-1]
    for component, key in (("unet", "sample_size"), ("decoder", "image_size")):
        value = getattr(getattr(getattr(pipe, component, None), "config", None), key, None)
        if isinstance(value, int):
            return value
    return 32


def _emoji_generator(pipe, call, args, kwargs: dict, progress):
    """prompts -> (B, H, W, 3) floats: `call` (the pipeline, or a wrapper of it) with the standard `output_type="np"`,
    one generator across batches (as training's evaluation does, so the defaults reproduce eval_results.json)."""
    import torch

    generator = torch.Generator().manual_seed(args.seed)

    def generate(batch: list[str]):
        with autocast(pipe, args.mixed_precision):
            images = call(batch, generator=generator, output_type="np", **kwargs).images
        progress(len(batch))
        return images

    return generate


@contextlib.contextmanager
def datasets_bars_hidden(quiet: bool):
    """With `quiet`, no `datasets` progress bars inside (its own, and the data builds' that use its tqdm)."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    if quiet:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if quiet and shown:
            datasets.enable_progress_bars()


def run_evaluate_emoji(args) -> int:
    with datasets_bars_hidden(args.quiet):  # building, splitting, reading references
        return _evaluate_emoji(args)


def _evaluate_emoji(args) -> int:
    from .data.emoji import build_emoji_dataset, with_dev_style_split
    from .evaluation.emoji_eval import emoji_prompts, evaluate_emoji

    start = time.perf_counter()
    pipe, kwargs = _evaluation_pipeline(args)
    resolution = pipeline_resolution(pipe)
    # Every installed style: prompts ask --emoji-styles, and style@1 checks the drawing against all of them.
    data = build_emoji_dataset(resolution, styles=EMOJI_STYLES, on_missing="skip")
    sets = ("seen", "heldout_style", "heldout_variants") if args.prompt_set == "benchmark" else ("validation",)
    if args.emoji_dev_style is not None:  # a model trained without those rows: they leave `seen`, and validation scores them
        data = with_dev_style_split(data, args.emoji_dev_style)
        sets += ("dev_style",) if args.prompt_set == "validation" else ()
    per_set = args.prompts_per_category or 100
    samples = args.distribution_samples if args.prompt_set == "benchmark" else 0
    total = sum(len(emoji_prompts(data, s, args.emoji_styles, max(per_set, samples) if s == "seen" and samples else per_set)) for s in sets)
    counts = {"images": 0, "blank": 0}
    generate = _emoji_generator(pipe, _blank_checking(pipe, counts), args, kwargs, _progress(args, total, start))
    report = evaluate_emoji(generate, data, prompt_sets=sets, styles=args.emoji_styles, n_per_set=per_set, distribution_samples=samples,
                            batch_size=args.batch_size, caption_style=args.caption_style, seed=args.seed)
    check_not_all_blank(counts, args, kwargs)
    result = {"benchmark": "emoji", "prompt_set": args.prompt_set, "model": args.model or DEFAULT_MODEL, "upscale": default_upscale(args),
              "resolution": resolution, "emoji_dev_style": args.emoji_dev_style, **report.to_dict(), "settings": _settings(pipe, args, kwargs, **report.settings),
              "seconds": round(time.perf_counter() - start, 1)}
    refs = ", ".join(f"{s} {n}" for s, n in report.settings["references"].items())
    print(f"Emoji benchmark ({args.prompt_set} prompt sets), {model_name(args)} at {resolution}px, seed {args.seed}: each image ranked among "
          f"all references of the asked style ({refs}) by a fixed colour-layout/edge feature (no trained model)")
    print(report.format_table())
    print("(R@k: the asked emoji's reference among the k nearest; grp@k: any variant of it (skin tone, gender); style@1: of the asked "
          "emoji's drawings in every style, the asked style's is nearest; after |: R@1 of images that need no model, ceilings and floors for the same prompts)")
    _print_result(args, result)
    if args.record:
        _record(args, result, report.format_table(), report.metrics(), f"Emoji {args.prompt_set} prompt sets at {resolution} px, "
                f"{per_set} prompts per set, styles {' '.join(args.emoji_styles)}"
                f"{f', development rows of {args.emoji_dev_style} held out' if args.emoji_dev_style else ''}, seed {args.seed}{''.join(f', {k}={v}' for k, v in kwargs.items())}")
    return 0


def _demo_grid(args, model: str | None, demo_prompts, path: Path):
    """One demo grid: `--num-images` images of each prompt of `demo_prompts` ((category, prompt) pairs) -> `path`."""
    if len(demo_prompts) * args.num_images > GRID_MAX_IMAGES:  # one grid, bounded
        raise ValueError(f"--num-images {args.num_images}: the demo grid holds at most {GRID_MAX_IMAGES // len(demo_prompts)} images "
                         "per prompt; for more, use `hf-textimg generate --individual`.")
    upscale = default_upscale(args) if model == args.model else None
    pipe = load_pipeline(model, args.device, args.scheduler, upscale)
    pipe.set_progress_bar_config(disable=True)
    prompts = [prompt for _, prompt in demo_prompts]
    from .pipelines import DecoderPipeline

    # A one-shot model without a noise input draws the same image every time: one per prompt, in rows of --num-images.
    per_prompt = 1 if isinstance(pipe, DecoderPipeline) and pipe.decoder.config.noise_dim == 0 else args.num_images
    images = generate_images(pipe, prompts, per_prompt, args.seed, args.mixed_precision, **call_kwargs(pipe, args.steps, args.guidance, args))
    save_grid(images, [p for p in prompts for _ in range(per_prompt)], path, cols=args.num_images)
    return images


def run_demo(args) -> int:
    """The shipped Shapes model on one prompt per Shapes category, as a captioned grid, each image scored; and, when
    the shipped emoji model is there (and no --model is given), an Emoji grid beside it."""
    from .shapes import ShapesScorer

    start = time.perf_counter()
    path = check_output_file(Path(args.out) / "shapes_demo.png", "--out")
    images = _demo_grid(args, args.model, DEMO_PROMPTS, path)
    scorer = ShapesScorer()
    print(f"{'category':<9} {'prompt':<42} matches")
    for k, (category, prompt) in enumerate(DEMO_PROMPTS):
        own = images[k * args.num_images : (k + 1) * args.num_images]
        hits = sum(scorer.score(image, prompt)[category] for image in own)
        print(f"{category:<9} {prompt:<42} {hits}/{len(own)}")
    print("(matches: the Shapes scorer's verdict; heldout rows use colour-shape pairs never seen in training)")
    print(f"Generated {len(images)} images with {model_name(args)} in {time.perf_counter() - start:.1f}s")
    print(f"Grid: {path}")
    if args.model is None and args.size is None and EMOJI_DEMO_MODEL in available_models():
        start = time.perf_counter()
        emoji_path = Path(args.out) / "emoji_demo.png"
        emoji_images = _demo_grid(args, str(pretrained_path(EMOJI_DEMO_MODEL)), EMOJI_DEMO_PROMPTS, emoji_path)
        print(f"Generated {len(emoji_images)} emoji images with {EMOJI_DEMO_MODEL} (shipped) in {time.perf_counter() - start:.1f}s "
              f"(rows {', '.join(sorted({c for c, _ in EMOJI_DEMO_PROMPTS}))}; scores: its model card)")
        print(f"Grid: {emoji_path}")
    return 0


def _build_dataset(args):
    if args.dataset == "shapes":
        from .shapes import ShapesLayout, build_shapes_dataset

        return build_shapes_dataset(
            size=args.size,
            num_train=args.num_train,
            num_validation=args.num_validation,
            num_heldout=args.num_heldout,
            seed=args.seed,
            kind_probs=args.kind_probs,
            layout=ShapesLayout.canonical(*args.canonical_layouts) if args.canonical_layouts else ShapesLayout.spec(),
        )
    from .data.emoji import build_emoji_dataset

    return build_emoji_dataset(size=args.size, styles=args.styles, cache_dir=args.cache_dir, on_missing="error" if args.strict else "skip")


def _emoji_report_lines(data) -> list[str]:
    """One line per style of an Emoji build: package, version, images, files that matched no emoji-test.txt line."""
    from .data.emoji import emoji_build_report

    report = emoji_build_report(data)
    lines = [f"  {style}: {r['images']} images from {r['files']} files of {r['package']} {r['version'] or '(Debian)'}; "
             f"{r['unmatched']} files matched no emoji-test.txt sequence" for style, r in report["styles"].items()]
    lines += [f"  {style}: SKIPPED, {why}" for style, why in report["skipped_styles"].items()]
    return lines


def run_cascade(args) -> int:
    """Save a base pipeline and its super-resolution stages as one ConceptCascadePipeline folder, with its model card."""
    from .hub import save_model_card

    start = time.perf_counter()
    cascade = load_pipeline(args.base, "cpu", None, args.stages, own_text_towers=args.own_text_towers)
    cascade.save_pretrained(args.out, safe_serialization=True)
    card = save_model_card(args.out)
    sizes = " -> ".join(f"{s} px" for s in cascade.output_sizes())
    print(f"Saved a cascade ({sizes}) in {time.perf_counter() - start:.1f}s -> {args.out} (model card {card})")
    print(f'load it with DiffusionPipeline.from_pretrained("{args.out}") or hf-textimg generate PROMPT --model {args.out}')
    return 0


def run_data(args) -> int:
    start = time.perf_counter()
    out = check_output_dir(args.out, "--out")  # before the data set is built
    with datasets_bars_hidden(args.quiet):  # the builds' bars are datasets' tqdm (hf_textimg.data.emoji, hf_textimg.shapes.dataset)
        data = _build_dataset(args)
        saved = _save_dataset(args, data, out)
    sizes = ", ".join(f"{split}: {len(split_data)}" for split, split_data in data.items())
    print(f"Built {args.dataset} at {args.size}px ({sizes}) in {time.perf_counter() - start:.1f}s -> {saved[0]}")
    if args.dataset == "emoji":
        print("\n".join(_emoji_report_lines(data)))
    print(saved[1])
    return 0


def _save_dataset(args, data, out) -> tuple[str, str]:
    """`data` to `out` as --imagefolder or save_to_disk asks: (where, how to load it)."""
    if args.imagefolder:
        from .data.loading import save_as_imagefolder

        folders = save_as_imagefolder(data, out)
        return ", ".join(str(f) for f in folders), f'load a split with datasets.load_dataset("imagefolder", data_dir="{folders[0]}")'
    data.save_to_disk(str(out))
    return str(out), f'load it with datasets.load_from_disk("{out}")'


def run_serve(args) -> int:
    """The web app (hf_textimg/app.py), served until interrupted; it needs the `app` extra (Gradio)."""
    try:
        from .app import serve
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in ("gradio", "gradio_client"):
            raise
        raise ValueError("the web app needs Gradio: pip install 'hf-textimg[app]'") from err
    serve(args.host, args.port, args.model, args.device)
    return 0


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model, --device and the sampling options shared by generate, evaluate and demo."""
    add = parser.add_argument
    add("--model", type=model_arg, default=None, metavar="PATH_OR_REPO",
        help=f"pipeline folder, shipped model name or Hub repo id (default: the shipped {DEFAULT_MODEL})")
    add("--steps", type=positive_int, default=None, help=f"denoising steps (default: {DEFAULT_STEPS}, 4 for a consistency-distilled model; one-shot pipelines ignore it)")
    add("--guidance", type=non_negative_float, default=None,
        help=f"classifier-free guidance scale, <= 1 turns it off (default: {DEFAULT_GUIDANCE:g}; one-shot pipelines ignore it)")
    add("--scheduler", choices=sorted(SCHEDULERS), default=None,
        help="swap the diffusion pipeline's sampler (built with from_config from the saved one, so the training betas and "
             "prediction type are kept): ddpm needs ~1000 steps, the others ~20-50 (default: the one the model was saved with)")
    add("--seed", type=seed_arg, default=0, help="random seed: the same seed gives the same images (default: 0)")
    add("--mixed-precision", choices=["no", "bf16"], default="no",
        help="bf16: sample under torch.autocast (about 2.9x faster on a recent CPU; scores in docs/performance.md); "
             "no: fp32, what the model cards' figures use (default: no)")
    add("--device", type=device_arg, default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps (default: auto)")
    add("--upscale", type=model_arg, nargs="+", default=None, metavar="STAGE",
        help="super-resolution stage folder(s) (training/train_superres.py), run in order on --model's images, as one cascade")
    add("--size", type=positive_int, default=None,
        help=f"image side in pixels: a cascade (or --upscale) runs the stages that reach it; on a shipped base model its shipped "
             f"stage is added ({DEFAULT_SUPERRES} to the default) (default: the largest the pipeline makes)")
    add("--upscale-steps", type=positive_int, default=None, help="denoising steps of each super-resolution stage (default: 20)")
    add("--noise-level", type=int, default=None, metavar="0-999",
        help="super-resolution stages' noise augmentation of their input, 0 = none (default: the pipeline's, 100)")


def build_parser() -> argparse.ArgumentParser:
    examples = argparse.RawDescriptionHelpFormatter  # keeps the examples' lines as written
    parser = argparse.ArgumentParser(
        prog="hf-textimg",
        description="Train and run small text-to-image models the Hugging Face way.",
        formatter_class=examples,
        epilog="""examples:
  hf-textimg demo                                  # the shipped model on 8 prompts -> outputs/demo/shapes_demo.png
  hf-textimg generate "a red circle at the top left" "two blue squares" --out outputs/grid.png
  hf-textimg evaluate --benchmark shapes --json outputs/eval.json
  hf-textimg data shapes --size 32 --out data/shapes32
  hf-textimg serve                                 # a web app on http://127.0.0.1:7860 (pip install 'hf-textimg[app]')

Run `hf-textimg COMMAND --help` for a command's options and examples.""",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = sub.add_parser(
        "generate",
        help="generate images for prompts and save them as a captioned grid",
        description=textwrap.fill("Generate images for one or more prompts with a text-to-image pipeline and save them as a captioned grid (one row per prompt)."),
        formatter_class=examples,
        epilog=f"""examples:
  hf-textimg generate "a red circle at the top left" "two blue squares"
  hf-textimg generate "a green plus left of a pink triangle" --num-images 8 --seed 1 --out outputs/plus.png
  hf-textimg generate "a blue circle" --model outputs/diffusion-shapes --steps 50 --guidance 6 --individual
  hf-textimg generate "a yellow star" --model your-org/your-model --device cuda
  hf-textimg generate "two blue squares" --upscale outputs/superres-shapes-128 --size 128   # shipped base + a 4x stage
  hf-textimg generate "two blue squares" --model outputs/shapes-cascade-128 --size 32      # a cascade's base stage only

The shipped model ({DEFAULT_MODEL}) knows the Shapes world: 8 colours (red, orange, yellow,
green, cyan, blue, purple, pink), 4 shapes (circle, square, triangle, plus), small/large,
positions (top left ... bottom right), counts (two/three/four), pairs and relations
(left of, right of, above, below).""",
    )
    generate.add_argument("prompt", nargs="+", type=prompt_text, help="one or more prompts (quote each one)")
    generate.add_argument("--num-images", type=positive_int, default=4, help="images per prompt (default: 4)")
    generate.add_argument("--out", type=image_path, default=Path("outputs/grid.png"), help="where to write the grid (default: outputs/grid.png)")
    generate.add_argument("--individual", action="store_true", help="also save each image as OUT-<prompt>-<image>.png next to the grid")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_args(generate)
    generate.set_defaults(func=run_generate)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a model on the Shapes or Emoji benchmark (table + JSON)",
        description=textwrap.fill(
            "Generate the Shapes benchmark prompts (never seen in training) with a model and score each image with "
            "the rule-based Shapes scorer, or (--benchmark emoji) the Emoji prompt sets, each image ranked among the "
            "Emoji set's references. Prints a table and a JSON line; --json also writes it to a file."
        ),
        formatter_class=examples,
        epilog="""examples:
  hf-textimg evaluate                    # the shipped model; the defaults reproduce its eval_results.json
  hf-textimg evaluate --model outputs/diffusion-shapes --json outputs/eval.json
  hf-textimg evaluate --model outputs/decoder-shapes --prompts-per-category 100
  hf-textimg evaluate --diversity 16 --diversity-prompts 20   # a closer look at layout variety
  hf-textimg evaluate --model outputs/diffusion-shapes --diversity 0   # accuracy and exactness only
  hf-textimg evaluate --benchmark emoji --model outputs/diffusion-emoji --json outputs/emoji-eval.json
  hf-textimg evaluate --benchmark emoji --model outputs/diffusion-emoji --prompt-set validation --guidance 5

Shapes categories: single, color, position, count, pair, relation, heldout (colour-shape pairs held
out of training). overall = mean of the first six; exact = share of images holding the asked objects
and nothing else. Variety (--diversity 8): 8 images for each of 10 prompts per open-layout category
(480 images), distinct cell layouts against the spec's sampler. 40 prompts per category (280 images)
plus the variety's 480, 20 steps with guidance, take about 5 minutes on 2 CPU cores (about 2
with --diversity 0).

Emoji prompt sets (docs/emoji.md): seen (train emoji), heldout_style (noto images of emoji seen
only in other styles), heldout_variants (unseen skin-tone variants); --prompt-set validation
scores unseen emoji instead, for choosing settings. Each image is ranked among all references
of its style by a fixed feature no trained model produces; recall@1/5/10 beside ceilings and
floors, plus KID/FID/PRDC over --distribution-samples seen prompts.""",
    )
    evaluate.add_argument("--benchmark", choices=["shapes", "emoji"], default="shapes",
                          help="shapes: the rule-based Shapes scorer; emoji: retrieval among the Emoji set's references (default: shapes)")
    evaluate.add_argument("--prompt-set", choices=["benchmark", "validation"], default="benchmark",
                          help="benchmark: the scored prompts, never seen in training; validation: other prompts of the same "
                               "categories, to choose settings (e.g. --guidance) on without looking at the benchmark (default: benchmark)")
    evaluate.add_argument("--prompts-per-category", type=positive_int, default=None,
                          help="benchmark prompts per category (shapes, default 40) or per prompt set (emoji, default 100), one image each")
    evaluate.add_argument("--emoji-styles", nargs="+", choices=EMOJI_STYLES, default=["noto"], metavar="STYLE",
                          help="emoji: styles the prompts ask for (and whose references rank them) (default: noto)")
    evaluate.add_argument("--emoji-dev-style", choices=EMOJI_STYLES, default=None, metavar="STYLE",
                          help="emoji: the model was trained with --emoji_dev_style STYLE: its held-out development rows leave the "
                               "seen set, and --prompt-set validation also scores them (the dev_style set) (default: none)")
    evaluate.add_argument("--distribution-samples", type=int, default=2000, metavar="N",
                          help="emoji: KID/FID/precision/recall over N seen prompts (0: skip; default: 2000)")
    evaluate.add_argument("--caption-style", choices=["always", "never"], default="always",
                          help="emoji: prompts '{name}, {style} style' (always) or the name alone, for a model trained with "
                               "--emoji_caption_style never (default: always)")
    evaluate.add_argument("--diversity", type=diversity_arg, default=None, metavar="K",
                          help=f"shapes: also draw K images of each open-layout prompt (no position named) and count the distinct cell "
                               f"layouts, against the spec's own sampler for K draws; 0 skips it (default: {DEFAULT_DIVERSITY})")
    evaluate.add_argument("--diversity-prompts", type=positive_int, default=None, metavar="N",
                          help=f"shapes: open-layout prompts per category for --diversity (default: {DEFAULT_DIVERSITY_PROMPTS}, "
                               "at most --prompts-per-category)")
    evaluate.add_argument("--batch-size", type=positive_int, default=128, help="prompts per generation batch (default: 128, as in training)")
    evaluate.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results to this JSON file")
    evaluate.add_argument("--record", action="store_true",
                          help="keep the results in the model folder's eval_results.json and show them, with this command, in its "
                               "model card (README.md; the rest of the card is kept); the model must be a local folder or shipped")
    evaluate.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_model_args(evaluate)
    evaluate.set_defaults(func=run_evaluate)

    cascade = sub.add_parser(
        "cascade",
        help="save a base pipeline and super-resolution stages as one cascade folder",
        description=textwrap.fill(
            "Build a ConceptCascadePipeline from a text-to-image pipeline (diffusion or one-shot) and one or two super-resolution "
            "stages (trained with training/train_superres.py on the base's text tower, or on their own with --own-text-towers) and "
            "save it as one folder with a model card."
        ),
        formatter_class=examples,
        epilog="""examples:
  hf-textimg cascade shapes-diffusion-32 outputs/superres-shapes-128 --out outputs/shapes-cascade-128
  hf-textimg cascade outputs/diffusion-emoji outputs/superres-emoji-64 outputs/superres-emoji-128 --out outputs/emoji-cascade-128
  hf-textimg generate "a red circle at the top left" --model outputs/shapes-cascade-128""",
    )
    cascade.add_argument("base", type=model_arg, help="the text-to-image pipeline: a folder, shipped model name or Hub repo id")
    cascade.add_argument("stages", type=model_arg, nargs="+", metavar="STAGE", help="one or two super-resolution stage folders, in order")
    cascade.add_argument("--out", required=True, help="output folder")
    cascade.add_argument("--own-text-towers", action="store_true",
                         help="a stage trained on another text tower than the base's keeps its own (stored beside the base's) instead of "
                              "being refused")
    cascade.set_defaults(func=run_cascade)

    data = sub.add_parser(
        "data",
        help="build a built-in data set (shapes or emoji) to a folder",
        description="Build a built-in data set and save it as a datasets folder (load_from_disk) or an imagefolder.",
        formatter_class=examples,
        epilog="""examples:
  hf-textimg data shapes --size 32 --out data/shapes32                # then datasets.load_from_disk("data/shapes32")
  hf-textimg data shapes --size 64 --num-train 50000 --seed 1 --out data/shapes64
  hf-textimg data emoji --size 64 --out data/emoji64 --imagefolder   # PNGs + metadata.jsonl per split
  hf-textimg data emoji --styles noto twemoji openmoji fluent --size 64 --out data/emoji64-all

Splits: shapes -> train / validation / heldout (colour-shape pairs never in train);
emoji -> train / validation (unseen emoji) / heldout_variants (unseen skin-tone variants) /
heldout_style (noto images of emoji seen only in the other styles). The emoji set needs
Debian's fonts-noto-color-emoji, unicode-data and unicode-cldr-core packages; the twemoji,
openmoji and fluent styles need `npm pack @twemoji/svg@15.0.0 openmoji@17.0.0
fluentui-emoji@1.3.0` run in ~/.cache/hf_textimg/sources (docs/emoji.md). Builds are cached.""",
    )
    data.add_argument("dataset", choices=["shapes", "emoji"], help="which data set to build")
    data.add_argument("--size", type=int, default=32, choices=IMAGE_SIZES, help="image side in pixels (default: 32)")
    data.add_argument("--out", required=True, help="output folder")
    data.add_argument("--imagefolder", action="store_true", help="write PNGs + metadata.jsonl per split instead of Arrow files")
    data.add_argument("--seed", type=seed_arg, default=0, help="shapes: random seed (same seed, same data)")
    data.add_argument("--num-train", type=positive_int, default=20000, help="shapes: train split size")
    data.add_argument("--num-validation", type=positive_int, default=2000, help="shapes: validation split size")
    data.add_argument("--num-heldout", type=positive_int, default=2000, help="shapes: held-out-pairs split size")
    data.add_argument("--kind-probs", type=weight_arg, nargs=4, default=None, metavar=("SINGLE", "COUNT", "PAIR", "RELATION"),
                      help="shapes: weights of the scene kinds in train/validation (default: 0.4 0.2 0.2 0.2)")
    data.add_argument("--canonical-layouts", nargs="+", default=[], choices=SCENE_KINDS, metavar="KIND",
                      help="shapes: scene kinds drawn in one canonical layout per caption instead of the spec's random cells "
                           "(single: large, centred when unnamed; count: one layout per count; pair: the middle row's outer "
                           "cells; relation: the middle line's outer cells), e.g. --canonical-layouts count relation "
                           "(default: none, the spec; hf_textimg.shapes.ShapesLayout)"),
    data.add_argument("--styles", nargs="+", default=["noto"], choices=EMOJI_STYLES, metavar="STYLE",
                      help=f"emoji: artwork styles, any of {', '.join(EMOJI_STYLES)} (default: noto)")
    data.add_argument("--strict", action="store_true",
                      help="emoji: fail when an asked style's package is missing (default: skip that style with a warning; "
                           "it fails anyway when none of the asked styles is installed)")
    data.add_argument("--cache-dir", default=None, help="emoji: cache folder (default: $HF_TEXTIMG_CACHE or ~/.cache/hf_textimg)")
    data.add_argument("--quiet", action="store_true", help="no progress bars while the data set is built and saved")
    data.set_defaults(func=run_data)

    demo = sub.add_parser(
        "demo",
        help="generate a captioned grid with the shipped model (well under a minute on a CPU)",
        description=textwrap.fill(
            f"Generate images for {len(DEMO_PROMPTS)} prompts, one per Shapes benchmark category plus a second held-out "
            "colour-shape pair, with the shipped model (or --model), save them as a captioned grid and print how many "
            "the Shapes scorer accepts."
        ),
        formatter_class=examples,
        epilog="""examples:
  hf-textimg demo                       # writes outputs/demo/shapes_demo.png (and emoji_demo.png with the shipped emoji model)
  hf-textimg demo --num-images 8 --seed 1
  hf-textimg demo --model outputs/diffusion-shapes --out outputs/demo-mine""",
    )
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--num-images", type=positive_int, default=4, help="images per prompt (default: 4)")
    _add_model_args(demo)
    demo.set_defaults(func=run_demo)

    serve = sub.add_parser(
        "serve",
        help="a web app for the models (Gradio; pip install 'hf-textimg[app]')",
        description=textwrap.fill("Serve a web page that generates images with a model: prompt, negative prompt, number of images, "
                                  "steps, guidance, seed and scheduler; shows the images, the time taken and, for Shapes captions, "
                                  "the Shapes scorer's verdict on each image. Needs the app extra: pip install 'hf-textimg[app]'."),
        formatter_class=examples,
        epilog="""examples:
  hf-textimg serve                                   # open http://127.0.0.1:7860
  hf-textimg serve --model outputs/diffusion-shapes --port 8080
  hf-textimg serve --host 0.0.0.0                    # reachable from other machines""",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=positive_int, default=7860, help="port (default: 7860)")
    serve.add_argument("--model", default=None, metavar="PATH_OR_REPO",
                       help=f"the model shown first: a shipped name, a pipeline folder or a Hub repo id (default: {DEFAULT_MODEL})")
    serve.add_argument("--device", type=device_arg, default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps")
    serve.set_defaults(func=run_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what --record writes into a model card as the command that reproduces it
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        # User errors get one clear line, not a traceback.
        print(f"hf-textimg {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
