"""Which words does a diffusion pipeline read? `prompt_sensitivity` on fixed one-word swaps, for saved pipelines.

    python -m benchmarks.word_probes                                   # the shipped model
    python -m benchmarks.word_probes hf_textimg/pretrained/shapes-diffusion-32 outputs/diffusion-telr

For each pipeline and each swap (the probe table of docs/experiments/2026-11-22-diffusion.md): the max |difference| of the U-Net's clean-image
estimates for the two prompts from the same noise at timestep `--timestep` (where layout is decided), and the
distance between the two prompts' pooled concepts. Near 0 = the word is ignored; a colour swap gives ~1.7.
Then `relation_side_probe`: can a linear read-out of the token states tell which object of a relation caption goes
to the first (left / top) cell (0.5 = chance)? Prints a table, then one JSON line per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/word_probes.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import format_table  # noqa: E402

# (name, prompt, the prompt with one word changed)
SWAPS = (
    ("position", "a red circle at the top left", "a red circle at the bottom right"),
    ("colour", "a red circle at the top left", "a blue circle at the top left"),
    ("relation axis", "a red circle left of a blue square", "a red circle above a blue square"),
    ("relation order", "a red circle left of a blue square", "a red circle right of a blue square"),
    ("relation order (vertical)", "a red circle below a blue square", "a red circle above a blue square"),
    ("count", "two red circles", "three red circles"),
)


def probe(model: str, timestep: int, seed: int) -> tuple[dict, float]:
    from diffusers import DiffusionPipeline

    import hf_textimg  # noqa: F401  (registers the pipeline with diffusers)
    from hf_textimg.evaluation.probes import prompt_sensitivity, relation_side_probe

    pipe = DiffusionPipeline.from_pretrained(model)
    rows = {}
    for name, prompt, other in SWAPS:
        result = prompt_sensitivity(pipe, prompt, other, timesteps=(timestep,), seed=seed)
        rows[name] = {"x0_difference": round(result.x0_difference[timestep], 3), "concept_distance": round(result.concept_distance, 3)}
    return rows, round(relation_side_probe(pipe, seed=seed), 3)


def main(argv: list[str] | None = None) -> list[dict]:
    from hf_textimg import pretrained

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="pipeline folders (default: the shipped model)")
    parser.add_argument("--timestep", type=int, default=800, help="training timestep of the probe (default 800)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    models = args.models or [str(pretrained.pretrained_path())]
    results = []
    for model in models:
        swaps, side = probe(model, args.timestep, args.seed)
        results.append({"model": model, "timestep": args.timestep, "swaps": swaps, "relation_side_probe": side})
    header = ["swap", "prompts"] + [f"{Path(r['model']).name}: x0 / concept" for r in results]
    table = [
        [name, f"{prompt!r} -> {other!r}"] + [f"{r['swaps'][name]['x0_difference']:.2f} / {r['swaps'][name]['concept_distance']:.2f}" for r in results]
        for name, prompt, other in SWAPS
    ]
    table.append(["relation side probe", "token states: which object goes left / up (0.5 = chance)"] + [f"{r['relation_side_probe']:.2f}" for r in results])
    print(format_table(header, table))
    for result in results:
        print(json.dumps(result))
    return results


if __name__ == "__main__":
    main()
