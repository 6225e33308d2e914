"""Training throughput (images/s) of each training script's step, and of the upstream baseline's at the same U-Net size.

    python -m benchmarks.train_throughput                       # every route, every core
    python -m benchmarks.train_throughput --threads 2 --warmup 5 --steps 30 --routes diffusion baseline

Each route runs its training script's own `main()` at the real size of the runs docs/performance.md measures (benchmarks/routes.py) for
`--warmup` + `--steps` optimizer steps; a step is the interval between two optimizer steps of the shared
training loop (data loading, forward, backward, clipping, optimizer, LR schedule and EMA included; no
checkpoints or evaluation). images/s = batch size / median step time over the `--steps` timed steps.
`÷ baseline` = a route's images/s / the baseline's, `÷ ourattention` the same against the baseline with
cross-attention only where our U-Net has it (the same-size comparison is diffusion vs baseline; the other
routes train other models and are listed for scale). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/train_throughput.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    TimedLoop, add_common_args, emit, format_table, machine_info, median, print_machine, ratio, setup, trainable_parameter_count,
)
from benchmarks.routes import ROUTES, baseline_argv, make_concept_model, run_route  # noqa: E402

DEFAULT_ROUTES = ["concept", "autoencoder", "decoder", "diffusion", "diffusion+text", "baseline", "baseline+tensordata", "baseline+ourattention"]


def measure(name: str, quick: bool, workdir: Path, concept_path: str | None, warmup: int, steps: int) -> dict:
    out = str(workdir / name.replace("+", "_"))
    if name.startswith("baseline"):
        argv = baseline_argv(name, quick, out)
    else:
        argv = ROUTES[name].argv(quick, concept_path, extra=["--output_dir", out])
    loop = TimedLoop(max_steps=warmup + steps)
    run_route(name, argv, loop)
    timed = loop.step_seconds[warmup:]
    gc.collect()
    return {
        "batch_size": loop.batch_size,
        "mixed_precision": loop.mixed_precision,
        "trained_parameters": trainable_parameter_count(loop.models),
        "median_step_seconds": median(timed),
        "min_step_seconds": min(timed),
        "max_step_seconds": max(timed),
        "images_per_s": loop.images_per_second(skip=warmup),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--routes", nargs="+", default=DEFAULT_ROUTES, choices=list(ROUTES))
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median taken)")
    args = parser.parse_args(argv)
    threads = setup(args)
    if args.quick:
        args.warmup, args.steps = min(args.warmup, 1), min(args.steps, 2)
    info = machine_info()

    results = {}
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        workdir = Path(tmp)
        concept_path = None
        if any(ROUTES[r].needs_concept_model for r in args.routes):
            concept_path = make_concept_model(str(workdir / "concept-model"), args.quick)
        for name in args.routes:
            results[name] = measure(name, args.quick, workdir, concept_path, args.warmup, args.steps)
    base = results.get("baseline", {}).get("images_per_s")
    base_ours = results.get("baseline+ourattention", {}).get("images_per_s")
    for r in results.values():
        r["ratio_to_baseline"] = ratio(r["images_per_s"], base)
        r["ratio_to_baseline_ourattention"] = ratio(r["images_per_s"], base_ours)

    print_machine(info)
    print(f"{args.warmup} warm-up + {args.steps} timed steps per route; images/s = batch / median step time")
    headers = ["route", "batch", "precision", "trained params", "median step s", "images/s", "÷ baseline", "÷ ourattention"]
    rows = [[n, r["batch_size"], r["mixed_precision"], f"{r['trained_parameters']:,}", r["median_step_seconds"], r["images_per_s"],
             r["ratio_to_baseline"], r["ratio_to_baseline_ourattention"]] for n, r in results.items()]
    print(format_table(headers, rows))
    return emit({
        "benchmark": "train_throughput", "quick": args.quick, "threads": threads, "warmup": args.warmup, "steps": args.steps,
        "routes": results, "machine": info, "load_1min_after": machine_info()["load_1min"],
    })


if __name__ == "__main__":
    main()
