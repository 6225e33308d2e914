"""The spec's own renders under `hf-textimg evaluate`'s exactness and variety: the ceiling a model is compared with.

    python benchmarks/variety_reference.py --prompts 40 --images-per-prompt 8

1. Exactness of one spec render per benchmark prompt (every category): should be 1.0 (the scorer reads renders).
2. The variety reference (`hf_textimg.shapes.reference_distinct`: mean distinct cell layouts of K spec renders per
   open-layout prompt) beside the exact expectation for L equally likely layouts, L * (1 - (1 - 1/L)^K), with L = 9
   cells for a single object, C(9, n) cell sets for n objects, 36 for a pair, 9 per relation.
3. The variety ratio of another, independent set of spec renders measured as if it were a model: 1.0 up to the
   sampling noise of --prompts prompts per category.
Prints tables and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from hf_textimg.shapes import (
    OPEN_LAYOUT_CATEGORIES,
    ShapesScorer,
    measure_variety,
    parse_prompt,
    reference_distinct,
    render_scene,
    scene_from_query,
    variety_prompts,
)


def layouts_allowed(query) -> int:
    """How many cell layouts the spec's sampler draws from, uniformly, for a query naming no position."""
    return {"single": 9, "count": math.comb(9, query.count or 0), "pair": math.comb(9, 2), "relation": 9}[query.kind]


def expected_distinct(layouts: int, k: int) -> float:
    return layouts * (1 - (1 - 1 / layouts) ** k)


def spec_pipeline(seed: int):
    rng = np.random.default_rng(seed)
    return lambda prompts: [render_scene(scene_from_query(parse_prompt(p), rng)) for p in prompts]


def reference_table(prompts: int, k: int, repeats: int) -> dict:
    rows = {}
    for category in OPEN_LAYOUT_CATEGORIES:
        queries = [p.query for p in variety_prompts(prompts) if p.category == category]
        rows[category] = {
            "reference": float(np.mean([reference_distinct(q, k, repeats) for q in queries])),
            "expected": float(np.mean([expected_distinct(layouts_allowed(q), k) for q in queries])),
        }
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40, help="prompts per category (default: 40)")
    parser.add_argument("--images-per-prompt", type=int, default=8, help="K (default: 8, as evaluate's --diversity)")
    parser.add_argument("--repeats", type=int, default=16, help="draws of K renders per prompt for the reference (default: 16, as evaluate)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the renders measured as a model (default: 0)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    exact = ShapesScorer().evaluate_pipeline(spec_pipeline(args.seed), n_per_category=args.prompts)
    reference = reference_table(args.prompts, args.images_per_prompt, args.repeats)
    variety = measure_variety(spec_pipeline(args.seed + 1), args.images_per_prompt, args.prompts, reference_repeats=args.repeats)
    print(f"spec renders, {args.prompts} benchmark prompts per category\n{exact.format_table()}\n")
    print(f"{'category':<10} {'reference':>9} {'expected':>9}   (mean distinct layouts of {args.images_per_prompt}, {args.repeats} draws per prompt)")
    for category, row in reference.items():
        print(f"{category:<10} {row['reference']:>9.2f} {row['expected']:>9.2f}")
    print(f"\nspec renders measured as a model\n{variety.format_table()}")
    result = {"args": vars(args), "exact": exact.to_dict(), "reference": reference, "variety": variety.to_dict(),
              "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
