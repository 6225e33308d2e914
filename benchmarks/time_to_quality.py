"""Time to quality: training minutes until the Shapes scorer's overall score reaches 0.8 and 0.9, and the score
after a fixed budget, for our diffusion route, our one-shot route and the upstream baseline.

    python -m benchmarks.time_to_quality --route diffusion oneshot baseline --minutes 30 --eval_every_minutes 5 --threads 2
    python -m benchmarks.time_to_quality --route diffusion --concept_model_path outputs/concept-shapes --concept_minutes 8.7
    python -m benchmarks.time_to_quality --route baseline --minutes 40 -- --learning_rate 2e-3   # after --: the script's flags

`baseline+ourattention` is the baseline with cross-attention only at the lowest resolution, as in our U-Net
(benchmarks/routes.py). Flags after `--` go to every route's script, so give them with one `--route`.

Each route runs its training script's `main()` at the documented recipes' settings (benchmarks/routes.py) under a
`TimedLoop`: the clock counts the training loop only (data loading and every step, EMA included). Every
`--eval_every_minutes` of that clock, and when the budget is reached, the script's own evaluator scores the
Shapes benchmark (`--eval_prompts_per_category` prompts per category, `benchmark_prompts` seed 1234 for every
route, prompts excluded from training; 20 DPM-Solver++ steps and guidance 4 for the diffusion routes). The
evaluation itself is off the clock, as are data-set generation, model construction and saving; the JSON line
gives their total (`off_clock_seconds`). The 0.8 / 0.9 times are those of the first evaluation at or above the
threshold, so they are upper bounds with the resolution of `--eval_every_minutes`.

Routes that read a concept model (the one-shot decoder always, diffusion unless `--concept_minutes 0`) first
train one with training/train_concept.py for `--concept_minutes` (the documented 10), and those minutes count:
the route's curve starts there and the budget `--minutes` is concept + route. With `--concept_model_path`, that
model is used and `--concept_minutes` is what it cost (stated by you). `--concept_minutes 0` makes diffusion
train its own text tower from scratch with the U-Net (no concept model). Prints the curve per route, a summary
table, then one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/time_to_quality.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import TimedLoop, add_common_args, emit, format_table, machine_info, print_machine, setup  # noqa: E402
from benchmarks.routes import ROUTES, baseline_argv, run_route  # noqa: E402

CATEGORIES = ("single", "color", "position", "count", "pair", "relation", "heldout")
THRESHOLDS = (0.8, 0.9)
# Every route scores the same prompts, benchmark_prompts(n) (prompt seed 1234), through hf_textimg.shapes.evaluate_shapes;
# --seed (the same for every route) seeds each run and its sampling noise.
PROMPT_SEED = 1234


def route_argv(route: str, quick: bool, out: str, concept_path: str | None, prompts: int, extra: list[str]) -> tuple[str, list[str]]:
    """(routes.ROUTES name, argv) of a time-to-quality route."""
    common = ["--output_dir", out, "--seed", str(PROMPT_SEED)]
    if route == "oneshot":
        return "decoder", ROUTES["decoder"].argv(quick, concept_path, extra=[*common, "--eval_prompts_per_category", str(prompts), *extra])
    scoring = ["--eval_prompts_per_category", str(prompts)]
    if route.startswith("baseline"):
        return route, baseline_argv(route, quick, out, extra=[*common, *scoring, *extra])
    name = "diffusion" if concept_path else "diffusion+text"
    return name, ROUTES[name].argv(quick, concept_path, extra=[*common, *scoring, *extra])


def train_concept(out: str, quick: bool, minutes: float) -> float:
    """Train the concept model for `minutes` of training clock; returns the minutes it actually trained."""
    loop = TimedLoop(budget_seconds=60 * minutes)
    run_route("concept", ROUTES["concept"].argv(quick, extra=["--output_dir", out, "--seed", str(PROMPT_SEED)]), loop)
    return loop.train_seconds / 60


def first_reaching(curve: list[dict], threshold: float) -> float | None:
    return next((c["minutes"] for c in curve if (c["metrics"].get("shapes_overall") or 0.0) >= threshold), None)


def run(route: str, args, workdir: Path, concept: tuple[str | None, float], extra: list[str]) -> dict:
    concept_path, offset = concept
    budget = args.minutes - offset
    if budget <= 0:
        raise ValueError(f"--minutes {args.minutes} leaves no time for {route} after {offset:.2f} concept-model minutes.")
    name, argv = route_argv(route, args.quick, str(workdir / route), concept_path, args.eval_prompts_per_category, extra)
    loop = TimedLoop(budget_seconds=60 * budget, eval_every_seconds=60 * args.eval_every_minutes)
    start = time.perf_counter()
    result = run_route(name, argv, loop)
    wall = time.perf_counter() - start
    curve = [{"minutes": offset + e.train_minutes, "step": e.step, "eval_seconds": e.eval_seconds,
              "metrics": {k: v for k, v in e.metrics.items() if k.startswith("shapes_")}} for e in loop.evaluations]
    final = curve[-1]["metrics"] if curve else {}
    return {
        "script_route": name,
        "concept_minutes": offset,
        "route_minutes": loop.train_seconds / 60,
        "steps": result["global_step"],
        "stopped_by": "budget" if loop.train_seconds >= 60 * budget else "max_train_steps",
        "images_per_s": loop.batch_size * len(loop.step_seconds) / max(loop.train_seconds, 1e-9),
        "curve": curve,
        "minutes_to": {str(t): first_reaching(curve, t) for t in THRESHOLDS},
        "overall_at_budget": final.get("shapes_overall"),
        "heldout_at_budget": final.get("shapes_heldout"),
        "eval_seconds_total": sum(e.eval_seconds for e in loop.evaluations),
        "off_clock_seconds": wall - loop.train_seconds,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--route", nargs="+", default=["diffusion", "oneshot", "baseline"], choices=["diffusion", "oneshot", "baseline", "baseline+ourattention"])
    parser.add_argument("--minutes", type=float, default=30.0, help="budget per route, concept-model minutes included")
    parser.add_argument("--eval_every_minutes", type=float, default=5.0)
    parser.add_argument("--eval_prompts_per_category", type=int, default=40)
    parser.add_argument("--concept_minutes", type=float, default=10.0, help="concept-model training minutes (0: diffusion trains its own text tower)")
    parser.add_argument("--concept_model_path", help="use this concept model; --concept_minutes is then what it cost")
    parser.add_argument("--output_dir", help="keep the trained models here (default: a temporary folder)")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    threads = setup(args)
    if args.quick:
        args.minutes, args.eval_every_minutes, args.eval_prompts_per_category = 0.06, 0.03, 1
        args.concept_minutes = args.concept_minutes and 0.02
    if "oneshot" in args.route and not (args.concept_model_path or args.concept_minutes > 0):
        parser.error("the one-shot route needs a concept model: --concept_minutes > 0 or --concept_model_path")
    info = machine_info()

    with tempfile.TemporaryDirectory(prefix="time-to-quality-") as tmp:
        workdir = Path(args.output_dir or tmp)
        concept = (args.concept_model_path, args.concept_minutes)
        if args.concept_model_path is None and args.concept_minutes > 0 and set(args.route) & {"diffusion", "oneshot"}:
            path = str(workdir / "concept")
            concept = (path, train_concept(path, args.quick, args.concept_minutes))
        results = {}
        for route in args.route:
            uses_concept = route == "oneshot" or (route == "diffusion" and concept[0] is not None)
            results[route] = run(route, args, workdir, concept if uses_concept else (None, 0.0), extra)

    print_machine(info)
    print("minutes = training-loop time (concept model included where used); evaluations off the clock")
    for route, r in results.items():
        print(f"\n{route} ({r['script_route']}; concept model {r['concept_minutes']:.2f} min; {r['steps']} steps, "
              f"{r['images_per_s']:.1f} img/s; stopped by {r['stopped_by']})")
        rows = [[c["minutes"], c["step"], *(c["metrics"].get(f"shapes_{k}") for k in CATEGORIES), c["metrics"].get("shapes_overall"), c["eval_seconds"]]
                for c in r["curve"]]
        print(format_table(["minutes", "step", *CATEGORIES, "overall", "eval s (off clock)"], rows))
    print(f"\nbudget {args.minutes} minutes per route")
    summary = [[route, r["minutes_to"]["0.8"] or "not reached", r["minutes_to"]["0.9"] or "not reached", r["overall_at_budget"], r["heldout_at_budget"]]
               for route, r in results.items()]
    print(format_table(["route", "min to 0.8", "min to 0.9", "overall at budget", "heldout at budget"], summary))
    return emit({
        "benchmark": "time_to_quality", "quick": args.quick, "threads": threads, "minutes": args.minutes,
        "eval_every_minutes": args.eval_every_minutes, "eval_prompts_per_category": args.eval_prompts_per_category,
        "prompt_seed": PROMPT_SEED, "script_args": extra, "routes": results, "machine": info, "load_1min_after": machine_info()["load_1min"],
    })


if __name__ == "__main__":
    main()
