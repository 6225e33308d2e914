"""Shapes world rendering speed (images/s) at 32 and 64 px.

Columns: `render` = render_batch on pre-sampled scenes; `sample+render` = sample_scene +
caption_scene + render_batch (what build_shapes_dataset does before PNG encoding);
`stream` = ShapesStream samples as (3, H, W) float tensors. Prints a table, then one JSON line.

    python benchmarks/render_speed.py --num_images 20000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from itertools import islice

import numpy as np
import torch

from hf_textimg.shapes import ShapesStream, caption_scene, render_batch, sample_scene


def _rate(fn, num_images: int, repeats: int) -> float:
    """Best-of-`repeats` images/s of fn(), which makes `num_images` images."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return num_images / best


def measure(size: int, num_images: int, repeats: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, size=size) for _ in range(num_images)]
    render_batch(scenes[:1000])  # warm the stamp caches

    def sample_and_render():
        local = np.random.default_rng(seed + 1)
        batch = [sample_scene(local, size=size) for _ in range(num_images)]
        [caption_scene(scene, local) for scene in batch]
        render_batch(batch)

    def stream():
        for _ in islice(ShapesStream(size=size, seed=seed), num_images):
            pass

    return {
        "render": _rate(lambda: render_batch(scenes), num_images, repeats),
        "sample+render": _rate(sample_and_render, num_images, repeats),
        "stream": _rate(stream, num_images, repeats),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    args = parser.parse_args(argv)

    results = {size: measure(size, args.num_images, args.repeats) for size in args.sizes}
    columns = list(next(iter(results.values())))
    print(f"{'size':>5} " + " ".join(f"{c + ' img/s':>20}" for c in columns))
    for size, rates in results.items():
        print(f"{size:>5} " + " ".join(f"{rates[c]:>20,.0f}" for c in columns))
    record = {
        "benchmark": "shapes_render_speed",
        "images_per_s": {str(size): {c: round(v, 1) for c, v in rates.items()} for size, rates in results.items()},
        "num_images": args.num_images,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "single_process": True,
    }
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
