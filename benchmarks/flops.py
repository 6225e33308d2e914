"""Compute efficiency: achieved FLOP/s of our diffusion training step, as a percentage of this machine's matmul peak.

    python -m benchmarks.flops                                   # the documented diffusion recipe's step, all cores
    python -m benchmarks.flops --routes diffusion baseline --threads 2 --steps 20

FLOPs of one training step (forward + backward; the optimizer and EMA are elementwise and not counted) are
counted with `torch.utils.flop_counter.FlopCounterMode` on one step run after the timed ones (torch has no
formula for CPU flash attention, `aten._scaled_dot_product_flash_attention_for_cpu` and its backward; they are
given torch's own SDPA formulas here). Achieved FLOP/s = FLOPs per step / median step time (the timed steps
run without the counter; see train_throughput.py for what a step includes). The peak is a short probe: the
best of `--probe_repeats` square `torch.mm` calls at sizes 256..2048, in fp32 and in bf16, at the same thread
count. `% of peak` compares against the peak of the step's compute dtype (bf16 under bf16 autocast, else fp32).
Prints a table, then one JSON line with the FLOPs per operator.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/flops.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import TimedLoop, add_common_args, emit, format_table, machine_info, median, print_machine, setup  # noqa: E402
from benchmarks.routes import ROUTES, baseline_argv, make_concept_model, run_route  # noqa: E402


def matmul_peak(dtype: torch.dtype, sizes=(256, 512, 1024, 2048), repeats: int = 5) -> dict:
    """Best FLOP/s of `torch.mm` on square matrices, and the size that gave it."""
    best = (0.0, None)
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)  # warm-up
        seconds = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
        best = max(best, (2 * n**3 / seconds, n))
    return {"flops_per_s": best[0], "size": best[1]}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flop_counter() -> torch.utils.flop_counter.FlopCounterMode:
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten
    custom = {
        aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda grad_out, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(grad_out, q, k, v),
    }
    return FlopCounterMode(display=False, custom_mapping=custom)


def measure(route: str, quick: bool, workdir: Path, concept_path: str | None, warmup: int, steps: int) -> dict:
    out = str(workdir / route.replace("+", "_"))
    argv = baseline_argv(route, quick, out) if route.startswith("baseline") else ROUTES[route].argv(quick, concept_path, extra=["--output_dir", out])
    counted = warmup + steps + 1  # the step run under the counter
    counter = flop_counter()

    def between_steps(state):
        if state.global_step == counted - 1:
            counter.__enter__()
        elif state.global_step == counted:
            counter.__exit__(None, None, None)

    loop = TimedLoop(max_steps=counted, between_steps=between_steps)
    run_route(route, argv, loop)
    flops = counter.get_total_flops()
    step_seconds = median(loop.step_seconds[warmup : warmup + steps])
    by_op = {str(op): n for op, n in sorted(counter.get_flop_counts()["Global"].items(), key=lambda kv: -kv[1])}
    return {
        "mixed_precision": loop.mixed_precision,
        "batch_size": loop.batch_size,
        "flops_per_step": flops,
        "median_step_seconds": step_seconds,
        "achieved_flops_per_s": flops / step_seconds,
        "flops_by_op": by_op,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--routes", nargs="+", default=["diffusion"], choices=list(ROUTES))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--probe_repeats", type=int, default=5)
    args = parser.parse_args(argv)
    threads = setup(args)
    sizes = (256, 512, 1024, 2048)
    if args.quick:
        args.warmup, args.steps, args.probe_repeats, sizes = 1, 2, 2, (128, 256)
    info = machine_info()

    peaks = {"fp32": matmul_peak(torch.float32, sizes, args.probe_repeats), "bf16": matmul_peak(torch.bfloat16, sizes, args.probe_repeats)}
    results = {}
    with tempfile.TemporaryDirectory(prefix="flops-") as tmp:
        concept_path = make_concept_model(str(Path(tmp) / "concept"), args.quick) if any(ROUTES[r].needs_concept_model for r in args.routes) else None
        for route in args.routes:
            r = measure(route, args.quick, Path(tmp), concept_path, args.warmup, args.steps)
            dtype = "bf16" if r["mixed_precision"] == "bf16" else "fp32"
            r["peak_dtype"] = dtype
            r["percent_of_peak"] = 100 * r["achieved_flops_per_s"] / peaks[dtype]["flops_per_s"]
            r["percent_of_fp32_peak"] = 100 * r["achieved_flops_per_s"] / peaks["fp32"]["flops_per_s"]
            results[route] = r

    print_machine(info)
    print(f"matmul peak: fp32 {peaks['fp32']['flops_per_s'] / 1e9:.1f} GFLOP/s (n={peaks['fp32']['size']}), "
          f"bf16 {peaks['bf16']['flops_per_s'] / 1e9:.1f} GFLOP/s (n={peaks['bf16']['size']})")
    headers = ["route", "precision", "batch", "GFLOP/step", "median step s", "achieved GFLOP/s", "% of peak", "% of fp32 peak"]
    rows = [[name, r["mixed_precision"], r["batch_size"], r["flops_per_step"] / 1e9, r["median_step_seconds"], r["achieved_flops_per_s"] / 1e9,
             r["percent_of_peak"], r["percent_of_fp32_peak"]] for name, r in results.items()]
    print(format_table(headers, rows))
    return emit({"benchmark": "flops", "quick": args.quick, "threads": threads, "warmup": args.warmup, "steps": args.steps,
                 "matmul_peak": peaks, "routes": results, "machine": info, "load_1min_after": machine_info()["load_1min"]})


if __name__ == "__main__":
    main()
