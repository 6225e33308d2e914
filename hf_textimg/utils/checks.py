"""Argument and output checks shared by the pipelines, the CLI and the training scripts.

Each check raises a ValueError whose message names the argument (`name`, e.g. "`guidance_scale`" or
"--out") and what to pass instead, so a mistake never surfaces as a deep torch / PIL / OS traceback. A
table of what each class of bad input gets is in docs/reliability.md.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path


class NonFiniteError(ValueError):
    """A computation produced NaN or inf where a finite result was promised (an image, a loss, weights).

    A ValueError, so the CLI and the training scripts print it as one line; the message says where the
    non-finite values appeared and what usually causes them."""


def check_number(value, name: str, minimum: float | None = None) -> float:
    """A finite real number (bools, strings, None and tensors are refused), optionally >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value:g}.")
    return value


def check_int(value, name: str, minimum: int = 1) -> int:
    """A whole number >= `minimum`; numpy integers are accepted, bools and floats are not (True is not 1 image)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_generator(generator, num_images: int, name: str = "`generator`") -> None:
    """None, one `torch.Generator`, or a list of exactly `num_images` of them (image i drawn from generator i)."""
    import torch

    if generator is None or isinstance(generator, torch.Generator):
        return
    if not isinstance(generator, (list, tuple)):
        hint = " (a seed: pass torch.Generator().manual_seed(seed))" if isinstance(generator, numbers.Number) else ""
        raise ValueError(f"{name} must be a torch.Generator or a list of them, got {type(generator).__name__}{hint}.")
    for i, g in enumerate(generator):
        if not isinstance(g, torch.Generator):
            raise ValueError(f"{name}[{i}] must be a torch.Generator, got {type(g).__name__}.")


def check_tensor(value, name: str, shape: tuple[int, ...] | None = None) -> None:
    """A floating-point `torch.Tensor` of `shape` (when given) holding finite numbers only."""
    import torch

    if not isinstance(value, torch.Tensor):
        hint = " (convert a numpy array with torch.from_numpy)" if type(value).__module__ == "numpy" else ""
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}{hint}.")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(value.shape)}.")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {value.dtype}.")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or inf values; pass finite numbers (e.g. fresh torch.randn noise).")


def check_finite_images(images, what: str) -> None:
    """Raise a NonFiniteError naming the images (rows of a (B, ...) tensor) that hold NaN or inf."""
    import torch

    bad = (~torch.isfinite(images.flatten(1))).any(dim=1).nonzero().flatten().tolist()  # (B,) -> row indices
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
        raise NonFiniteError(
            f"{len(bad)} of {len(images)} images came out non-finite (NaN or inf) {what}: images [{shown}]. Nothing was "
            "returned, rather than black images. Usual causes: weights from a training run that diverged, fp16 overflow "
            "(use fp32 or bf16), or a setting the sampler cannot take."
        )


# ---- where results go: checked before any work, so a long run never ends unable to write ----------------------
def _check_not_empty(path, name: str) -> None:
    if not str(path).strip():  # e.g. `--output_dir $OUT` with OUT unset
        raise ValueError(f"{name} is empty; pass a path.")


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_output_file(path: str | os.PathLike, name: str) -> Path:
    """A file that can be written: not a folder, not under a file, in a writable (or creatable) folder."""
    _check_not_empty(path, name)
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; pass a file name inside it, e.g. {str(path / 'out')!r} with a suffix.")
    ancestor = _existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise ValueError(f"{name} {str(path)!r} cannot be created: {str(ancestor)!r} is a file, not a folder.")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{name} {str(path)!r} exists and is read-only; choose another file or make it writable.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {str(path)!r} is not writable ({str(ancestor)!r} denies writing); choose another folder.")
    return path


def check_output_dir(path: str | os.PathLike, name: str) -> Path:
    """A folder that exists and is writable, or can be created (its nearest existing ancestor is a writable folder)."""
    _check_not_empty(path, name)
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a file; pass a folder.")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise ValueError(f"{name} {str(path)!r} cannot be created: {str(ancestor)!r} is a file, not a folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {str(path)!r} is not writable ({str(ancestor)!r} denies writing); choose another folder.")
    return path
