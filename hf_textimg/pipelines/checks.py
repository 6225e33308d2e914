"""Checks on what a pipeline is asked to sample: image sizes far from the trained one, and step counts the
scheduler cannot take. Each raises a ValueError naming the argument, before any image is generated.

Sizes (rule, with the cost it guards): the U-Nets are convolutional, so any multiple of their downsampling factor
runs, but time and memory grow with the pixel count (attention layers faster still) and the model never saw
other sizes. With r = (height x width) / sample_size^2:
- a side within 2x of `sample_size` either way: no message;
- otherwise, up to r = 64 (a 32-px model at 256x256): one warning per call giving r, i.e. about r times the
  time and memory of a trained-size image;
- r > 64: a ValueError (a 32-px model at 1024 px would be r = 1024).

Step counts: diffusers' multistep solvers (DPM-Solver++, DEIS, UniPC, ...) keep a history of model outputs and
divide by differences of consecutive timesteps. With as many steps as training timesteps their timestep grid
repeats a value (DPM-Solver++ at 1,000 of 1,000: a NaN, then a black image), and beyond it the grid runs past
its own tables (at 2,000: an IndexError inside diffusers). Such a count is refused with the largest count the
scheduler takes here; DDPM and DDIM take every count up to the training timesteps.
"""

from __future__ import annotations

import json
import logging
import os

import diffusers
import torch

from ..utils.safe_loading import check_safetensors_file

logger = logging.getLogger(__name__)

WARN_SIDE_RATIO = 2
MAX_PIXEL_RATIO = 64


def check_image_size(height: int, width: int, sample_size: int) -> None:
    """Refuse or warn about sizes far from `sample_size` (rule in the module docstring)."""
    ratio = height * width / sample_size**2
    if ratio > MAX_PIXEL_RATIO:
        side = int(sample_size * MAX_PIXEL_RATIO**0.5)
        raise ValueError(
            f"`height` x `width` = {height}x{width} is {ratio:g} times the pixels of the {sample_size}x{sample_size} images "
            f"this model was trained at: about {ratio:g}x the time and memory per image, for images unlike any it has seen. "
            f"Sizes up to {MAX_PIXEL_RATIO}x the trained pixels are accepted (e.g. {side}x{side}); for larger images "
            "generate at the trained size and upscale."
        )
    sides = (height / sample_size, width / sample_size)
    if any(s > WARN_SIDE_RATIO or s < 1 / WARN_SIDE_RATIO for s in sides):
        logger.warning(
            "Generating %dx%d with a model trained at %dx%d: %.3gx the pixels, so about %.3gx the time and memory per image, "
            "and the model has not seen this size (expect worse images).", height, width, sample_size, sample_size, ratio, ratio,
        )


def _repeats(timesteps: torch.Tensor) -> list:
    values, counts = torch.unique(timesteps, return_counts=True)
    return values[counts > 1].tolist()


def _most_steps(scheduler, upper: int) -> int:
    """The largest count below `upper` whose timesteps do not repeat (a bisection on a copy of the scheduler)."""
    probe = type(scheduler).from_config(scheduler.config)
    low, high = 1, upper  # `low` works, `high` does not
    while high - low > 1:
        middle = (low + high) // 2
        try:
            probe.set_timesteps(middle)
            ok = not _repeats(probe.timesteps)
        except Exception:  # noqa: BLE001  (any failure means "cannot take this count")
            ok = False
        low, high = (middle, high) if ok else (low, middle)
    return low


def set_checked_timesteps(scheduler, num_inference_steps: int, device=None) -> None:
    """`scheduler.set_timesteps(num_inference_steps)`, with a ValueError naming `num_inference_steps` and the
    scheduler when it refuses the count, or (multistep solvers) when the count makes a timestep repeat."""
    name = type(scheduler).__name__
    train_steps = scheduler.config.get("num_train_timesteps")
    advice = (
        f"DDPMScheduler and DDIMScheduler (CLI: --scheduler ddpm / ddim) take up to {train_steps} steps; "
        "DPM-Solver++, UniPC and DEIS need only 20-50."
    )
    try:
        scheduler.set_timesteps(num_inference_steps, device=device)
    except (ValueError, IndexError, RuntimeError, AssertionError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"`num_inference_steps`={num_inference_steps}: {name} cannot take this count ({reason}). {advice}") from error
    repeated = _repeats(scheduler.timesteps)
    if repeated and hasattr(scheduler, "model_outputs"):  # the multistep solvers; Heun/KDPM2/PNDM repeat on purpose
        raise ValueError(
            f"`num_inference_steps`={num_inference_steps}: {name} repeats timestep {repeated[0]:g} at this count (with "
            f"{train_steps} training timesteps), which makes its multistep update divide by zero and the images NaN. "
            f"It takes at most {_most_steps(scheduler, num_inference_steps)} steps here. {advice}"
        )


def check_pipeline_folder(folder) -> None:
    """A local pipeline folder is complete before diffusers reads it: `model_index.json` is a JSON object naming a
    pipeline class that exists, every component it lists has its folder, and every safetensors file there is whole.
    Each problem is a ValueError naming the file (diffusers would say KeyError '_class_name', AttributeError, or
    "no file named config.json" without the component)."""
    index_file = os.path.join(str(folder), "model_index.json")
    try:
        with open(index_file) as f:
            index = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{index_file} cannot be read as JSON ({error}); save the pipeline again with save_pretrained.") from None
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if isinstance(class_name, list) and len(class_name) == 2 and os.path.isfile(os.path.join(str(folder), f"{class_name[0]}.py")):
        class_name = class_name[1]  # the folder carries the class's code (hf_textimg.remote_code)
    if not isinstance(class_name, str):
        raise ValueError(f"{index_file} has no '_class_name' (the pipeline class to build); it is not a saved pipeline.")
    if not hasattr(diffusers, class_name):
        raise ValueError(f"{index_file} names the pipeline class {class_name!r}, which neither diffusers nor hf_textimg provides.")
    for name, entry in index.items():
        # A component is [library, class]; other entries are the pipeline's config (e.g. a list of two numbers).
        if name.startswith("_") or not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
            continue
        component = os.path.join(str(folder), name)
        if not os.path.isdir(component):
            raise ValueError(f"{index_file} lists the component {name!r} ({entry[1]}), but {component} is missing.")
        for file in sorted(os.listdir(component)):
            if file.endswith(".safetensors"):
                check_safetensors_file(os.path.join(component, file))
