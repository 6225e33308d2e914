"""The one check of an image side: a positive multiple of what the model halves it by.

Which sides a model takes follows from its architecture: a U-Net or conv encoder/decoder with n levels halves (or
doubles) the side n - 1 times, so any positive multiple of 2**(n - 1) works. Data sets may be narrower (the Shapes
world is drawn at 32 and 64 px: `hf_textimg.shapes.IMAGE_SIZES`).
"""

from __future__ import annotations


def check_resolution(size, multiple_of: int = 1, name: str = "resolution", reason: str = "") -> None:
    """Raise a ValueError naming `name` unless `size` is an int, >= `multiple_of` and divisible by it; `reason` is
    appended after the number (e.g. " for this U-Net")."""
    if isinstance(size, bool) or not isinstance(size, int) or size < multiple_of or size % multiple_of:
        what = "a positive integer" if multiple_of == 1 else f"a positive multiple of {multiple_of}"
        raise ValueError(f"{name} must be {what}{reason}, got {size!r}.")

