"""Which speed-ups pay on this machine: each one alone, against the route's recipe configuration, side by side.

    python -m benchmarks.speedups --threads 2                      # training: diffusion and decoder; sampling: diffusion
    python -m benchmarks.speedups --threads 2 --train diffusion --sample

Training variants (each is one change to the route's recipe arguments, benchmarks/routes.py):
    as recipe        the route's own arguments (diffusion: bf16 autocast; decoder: fp32)
    fp32 / bf16      `--mixed_precision no` / `--mixed_precision bf16`
    channels_last    `--channels_last` (conv weights, hence activations, in NHWC)
    adam_fused       `--adam_fused` (torch.optim.AdamW(fused=True) instead of foreach=True)
    inductor         torch.compile through accelerate (`accelerate launch --dynamo_backend inductor`, here the
                     ACCELERATE_DYNAMO_BACKEND environment variable); the first step's seconds are reported as
                     the compile cost and excluded with the other warm-up steps
Sampling variants (the diffusion pipeline at the route's size, random weights, batch `--batch`, guidance 4):
    fp32, bf16 autocast, channels_last, channels_last + bf16, and `torch.compile(unet)` (+ bf16).

"as recipe" runs first and again last ("as recipe, again"): the difference between the two is the noise.
Timing as in train_throughput / sampling_throughput (median step or call after warm-up). A speed-up is kept
as a default only where this benchmark shows it (docs/performance.md). Prints tables, then one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

if __package__ in (None, ""):  # run as `python benchmarks/speedups.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import TimedLoop, add_common_args, emit, format_table, machine_info, median, print_machine, ratio, setup  # noqa: E402
from benchmarks.routes import ROUTES, make_concept_model, run_route  # noqa: E402

TRAIN_VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "as recipe": ([], {}),
    "fp32": (["--mixed_precision", "no"], {}),
    "bf16": (["--mixed_precision", "bf16"], {}),
    "channels_last": (["--channels_last"], {}),
    "adam_fused": (["--adam_fused"], {}),
    "inductor": ([], {"ACCELERATE_DYNAMO_BACKEND": "INDUCTOR"}),
}
SAMPLE_VARIANTS = ["fp32", "bf16", "channels_last", "channels_last+bf16", "compile", "compile+bf16"]


def train_variant(route: str, variant: str, quick: bool, workdir: Path, concept_path: str, warmup: int, steps: int) -> dict:
    extra, env = TRAIN_VARIANTS[variant]
    out = str(workdir / f"{route}-{variant}".replace(" ", "_"))
    argv = ROUTES[route].argv(quick, concept_path, extra=[*extra, "--output_dir", out])
    loop = TimedLoop(max_steps=warmup + steps)
    with mock.patch.dict(os.environ, env):
        run_route(route, argv, loop)
    torch._dynamo.reset()  # a compiled graph must not leak into the next variant
    gc.collect()
    timed = loop.step_seconds[warmup:]
    return {
        "batch_size": loop.batch_size, "mixed_precision": loop.mixed_precision, "first_step_seconds": loop.step_seconds[0],
        "median_step_seconds": median(timed), "images_per_s": loop.images_per_second(skip=warmup),
    }


def sample_variant(variant: str, quick: bool, workdir: str, batch: int, steps: int, warmup: int, repeats: int) -> dict:
    from benchmarks.sampling_throughput import measure, random_pipeline
    from hf_textimg.shapes import benchmark_prompts

    pipe = random_pipeline("diffusion", quick, workdir)
    pipe.set_progress_bar_config(disable=True)
    if "channels_last" in variant:
        pipe.unet.to(memory_format=torch.channels_last)
    pool = [p.prompt for p in benchmark_prompts(10)]
    prompts = [pool[i % len(pool)] for i in range(batch)]
    bf16, compile_seconds = "bf16" in variant, None
    with torch.inference_mode():
        if "compile" in variant:
            pipe.unet = torch.compile(pipe.unet)
            start = time.perf_counter()
            measure(pipe, prompts, steps, warmup=0, repeats=1, autocast=bf16)  # the first call compiles
            compile_seconds = time.perf_counter() - start
        images_per_s = measure(pipe, prompts, steps, warmup, repeats, autocast=bf16)
    torch._dynamo.reset()
    return {"images_per_s": images_per_s, "call_seconds": batch / images_per_s, "compile_seconds": compile_seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--train", nargs="*", default=["diffusion", "decoder"], choices=["diffusion", "decoder", "autoencoder"])
    parser.add_argument("--train_variants", nargs="+", default=list(TRAIN_VARIANTS), choices=list(TRAIN_VARIANTS))
    parser.add_argument("--sample", nargs="*", default=SAMPLE_VARIANTS, choices=SAMPLE_VARIANTS)
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps / sampling calls first")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--repeats", type=int, default=3, help="timed sampling calls")
    parser.add_argument("--batch", type=int, default=64, help="sampling batch")
    parser.add_argument("--num_inference_steps", type=int, default=20)
    args = parser.parse_args(argv)
    threads = setup(args)
    if args.quick:
        args.warmup, args.steps, args.repeats, args.batch, args.num_inference_steps = 1, 2, 1, 4, 2
    info = machine_info()

    train, sample = {}, {}
    with tempfile.TemporaryDirectory(prefix="speedups-") as tmp:
        workdir = Path(tmp)
        concept_path = make_concept_model(str(workdir / "concept-model"), args.quick) if args.train else None
        for route in args.train:
            train[route] = {v: train_variant(route, v, args.quick, workdir, concept_path, args.warmup, args.steps) for v in args.train_variants}
            if "as recipe" in args.train_variants:  # once more, last: the run-to-run noise of the comparison
                train[route]["as recipe, again"] = train_variant(route, "as recipe", args.quick, workdir, concept_path, args.warmup, args.steps)
        for variant in args.sample:
            sample[variant] = sample_variant(variant, args.quick, tmp, args.batch, args.num_inference_steps, min(args.warmup, 1), args.repeats)

    print_machine(info)
    if train:
        print(f"Training: {args.warmup} warm-up + {args.steps} timed steps; images/s = batch / median step; ÷ recipe = speed-up")
        rows = []
        for route, variants in train.items():
            base = variants.get("as recipe", {}).get("images_per_s")
            for v, r in variants.items():
                r["ratio_to_recipe"] = ratio(r["images_per_s"], base)
                rows.append([route, v, r["mixed_precision"], r["first_step_seconds"], r["median_step_seconds"], r["images_per_s"], r["ratio_to_recipe"]])
        print(format_table(["route", "variant", "precision", "first step s", "median step s", "images/s", "÷ recipe"], rows))
    if sample:
        print(f"Sampling: diffusion pipeline, batch {args.batch}, {args.num_inference_steps} DPM-Solver++ steps, guidance 4; ÷ fp32 = speed-up")
        base = sample.get("fp32", {}).get("images_per_s")
        for r in sample.values():
            r["ratio_to_fp32"] = ratio(r["images_per_s"], base)
        print(format_table(["variant", "call s", "images/s", "÷ fp32", "compile s"],
                           [[v, r["call_seconds"], r["images_per_s"], r["ratio_to_fp32"], r["compile_seconds"]] for v, r in sample.items()]))
    return emit({
        "benchmark": "speedups", "quick": args.quick, "threads": threads, "train": train, "sample": sample,
        "sample_batch": args.batch, "num_inference_steps": args.num_inference_steps, "machine": info,
        "load_1min_after": machine_info()["load_1min"],
    })


if __name__ == "__main__":
    main()
