"""No silent NaN in training: settings that cannot give finite numbers are refused up front, and a run whose loss,
gradients or weights become NaN/inf stops with `TrainingDivergedError` instead of saving garbage.

What a diverged run leaves (docs/reliability.md): its checkpoints up to the last one with finite weights; the model
already in `--output_dir` (a finished earlier run) untouched, since the final `save_pretrained` is never reached; and a
non-zero exit with one line naming the step, the value and the checkpoint to resume from. `--max_skipped_nonfinite_steps
N` first skips up to N such optimizer steps (their gradients are dropped, the step is not counted), for the rare bad
batch; the N+1-th stops the run.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re

import torch


class TrainingDivergedError(RuntimeError):
    """The loss, the gradients or the weights of a training run became NaN or inf; the message says what to do."""


def check_config_numbers(cfg) -> None:
    """Every number of a training config (the script's own flags included) is finite, no int is negative, no list
    entry of ints is below 1, and the optimizer and schedule settings are in range. Raises a ValueError naming the flag."""
    dataset_args = getattr(cfg, "dataset_args", None)  # the built-in data set's own flags (e.g. --num_shapes_train)
    for obj in (cfg, dataset_args) if dataclasses.is_dataclass(dataset_args) else (cfg,):
        _check_numbers(obj)
    for name in ("adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise ValueError(f"--{name} must be in [0, 1) (an exponential moving-average rate), got {getattr(cfg, name)}.")
    if cfg.adam_epsilon <= 0:
        raise ValueError(f"--adam_epsilon must be > 0 (AdamW divides by sqrt(v) + epsilon), got {cfg.adam_epsilon}.")
    for name in ("adam_weight_decay", "max_grad_norm"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(cfg, name)}.")
    if cfg.max_train_minutes is not None and cfg.max_train_minutes <= 0:
        raise ValueError(f"--max_train_minutes must be > 0 (or unset for no time budget), got {cfg.max_train_minutes}.")
    if cfg.seed >= 2**32:
        raise ValueError(f"--seed must be below 2**32 (numpy's seed range), got {cfg.seed}.")
    if cfg.max_length < 3:  # the tokenizer adds two special tokens and cannot truncate below them
        raise ValueError(f"--max_length must be >= 3 (begin and end tokens plus at least one word), got {cfg.max_length}.")
    check_lr_scheduler(cfg.lr_scheduler)
    check_model_paths(cfg)


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+|[A-Za-z0-9][\w.-]*")


def check_model_paths(cfg) -> None:
    """Flags naming a trained model (`--*_path`, `--tokenizer_name`) name an existing folder or a Hub repo id, so a
    typo fails now, not after the data set is built (transformers would say "Repo id must be in the form ...")."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not (f.name.endswith("_path") or f.name == "tokenizer_name") or not isinstance(value, str):
            continue
        if os.path.exists(value):
            if not os.path.isdir(value):
                raise ValueError(f"--{f.name} {value!r} is a file; pass the folder that save_pretrained wrote.")
        elif value.startswith((".", "/", "~")) or value.count("/") > 1 or not _HUB_ID.fullmatch(value):
            raise ValueError(f"--{f.name} {value!r} does not exist, and is not a Hub repo id like 'org/name'.")


def _check_numbers(obj) -> None:
    """Every float field of the dataclass `obj` finite, no int negative, no list entry of ints below 1."""
    for f in dataclasses.fields(obj):
        value, flag = getattr(obj, f.name), f"--{f.name}"
        is_list = isinstance(value, (list, tuple))
        for v in value if is_list else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{flag} must be a finite number, got {v}.")
            is_int = isinstance(v, numbers.Integral) and not isinstance(v, bool)
            if is_int and is_list and v < 1:  # widths, channels: a 0 or negative entry builds no layer
                raise ValueError(f"{flag} must hold integers >= 1, got {list(value)}.")
            if is_int and not is_list and v < 0:
                raise ValueError(f"{flag} must be >= 0, got {v}.")


def check_lr_scheduler(name: str) -> None:
    from diffusers.optimization import SchedulerType

    choices = [s.value for s in SchedulerType]
    if name not in choices:
        raise ValueError(f"--lr_scheduler {name!r} is not a diffusers schedule; use one of {choices}.")


def nonfinite(value: torch.Tensor, accelerator) -> bool:
    """Whether `value` (a loss or a norm) is NaN/inf on any process: every process gets the same answer, so all
    skip or stop together and none waits alone in the next all-reduce."""
    bad = (~torch.isfinite(value.detach().float())).any().float().reshape(1)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad.to(accelerator.device), reduction="sum")
    return bool(bad.item() > 0)


def nonfinite_weights(models: dict) -> list[str]:
    """Names of the modules (of `models`, name -> module, EMA weights included) whose state dict holds a NaN/inf."""
    return [
        name for name, module in models.items()
        if any(t.is_floating_point() and not torch.isfinite(t).all() for t in module.state_dict().values())
    ]


def diverged(cfg, step: int, what: str, last_checkpoint) -> TrainingDivergedError:
    resume = f"--resume_from_checkpoint {last_checkpoint}" if last_checkpoint else "a new run (no checkpoint was saved before it)"
    return TrainingDivergedError(
        f"Training stopped at step {step}: {what}. Nothing after the last good checkpoint was saved, and the model in "
        f"{cfg.output_dir!r} (if any) was not replaced. Usual causes: a learning rate too high for this model "
        f"(--learning_rate {cfg.learning_rate:g}), no gradient clipping (--max_grad_norm {cfg.max_grad_norm:g}), fp16 overflow "
        f"(--mixed_precision {cfg.mixed_precision}). Resume with {resume} after changing --max_grad_norm, --mixed_precision or "
        "--max_skipped_nonfinite_steps, or start a new run with a lower --learning_rate (a resumed run keeps the "
        "checkpoint's learning-rate schedule)."
    )
