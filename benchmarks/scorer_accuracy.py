"""How well the Shapes scorer reads real renders, and how reliably it rejects wrong captions.

    python benchmarks/scorer_accuracy.py --num 500

For each size (32, 64) and category: render N scenes, score them against a random
paraphrase of their own caption (accuracy, should be ~1.0), then against a caption made
wrong in one way (colour swapped, shape swapped, position moved, count off by one,
relation flipped) and report the rejection rate. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import numpy as np
import torch

from hf_textimg import shapes as S
from hf_textimg.shapes import ShapesScorer

CATEGORIES = ("single", "color", "position", "count", "pair", "relation", "heldout")
FLIP = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# (corruption, category scored, scene kind)
CORRUPTIONS = [
    ("color swap", "single", "single"),
    ("color swap", "color", "single"),
    ("shape swap", "single", "single"),
    ("position moved", "position", "single"),
    ("count off by one", "count", "count"),
    ("relation flipped", "relation", "relation"),
    ("color swap", "pair", "pair"),
    ("shape swap", "relation", "relation"),
]


def _other(rng, options, current):
    options = [o for o in options if o != current]
    return options[int(rng.integers(len(options)))]


def sample_scenes(category: str, n: int, rng, size: int) -> list:
    scenes = []
    while len(scenes) < n:
        if category in ("single", "color", "position"):
            scene = S.sample_scene(rng, "single", "train", size)
            if category == "position" and not scene.name_position:
                continue
        elif category == "heldout":
            scene = S.sample_scene(rng, "single", "heldout", size)
        else:
            scene = S.sample_scene(rng, category, "train", size)
        scenes.append(scene)
    return scenes


def corrupt(query, name: str, kind: str, rng):
    first = query.objects[0]
    while True:
        if name == "color swap":
            wrong = dataclasses.replace(query, objects=(dataclasses.replace(first, color=_other(rng, list(S.PALETTE), first.color)),) + query.objects[1:])
        elif name == "shape swap":
            wrong = dataclasses.replace(query, objects=(dataclasses.replace(first, shape=_other(rng, S.SHAPES, first.shape)),) + query.objects[1:])
        elif name == "position moved":
            return dataclasses.replace(query, position=_other(rng, list(S.POSITIONS), query.position))
        elif name == "count off by one":
            return dataclasses.replace(query, count={2: 3, 4: 3, 3: int(rng.choice([2, 4]))}[query.count])
        else:
            return dataclasses.replace(query, relation=FLIP[query.relation])
        if not (kind == "single" and wrong.uses_heldout):  # a held-out pair is scored under `heldout` only
            return wrong


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=500, help="scenes per category and size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    args = parser.parse_args(argv)
    scorer = ShapesScorer()
    results = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__, "num": args.num}
    for size in args.sizes:
        rng = np.random.default_rng(size)
        start = time.perf_counter()
        accuracy = {
            cat: float(np.mean([scorer.score(S.render_scene(s), S.caption_scene(s, rng))[cat] for s in sample_scenes(cat, args.num, rng, size)]))
            for cat in CATEGORIES
        }
        rejection = {}
        for name, cat, kind in CORRUPTIONS:
            scenes = sample_scenes(cat if cat == "position" else kind, args.num, rng, size)
            rejected = [not scorer.score(S.render_scene(s), S.caption_query(corrupt(S.scene_query(s), name, kind, rng), rng))[cat] for s in scenes]
            rejection[f"{name} -> {cat}"] = float(np.mean(rejected))
        results[f"{size}px"] = {"accuracy": accuracy, "rejection": rejection, "seconds": time.perf_counter() - start}
        print(f"\n{size} px, {args.num} renders per row")
        print(f"{'category':<28}{'accuracy':>10}")
        for cat, value in accuracy.items():
            print(f"{cat:<28}{value:>10.3f}")
        print(f"{'wrong caption':<28}{'rejected':>10}")
        for name, value in rejection.items():
            print(f"{name:<28}{value:>10.3f}")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
