"""Few-step sampling: the consistency-distilled student against its 20-step guided teacher, in one run.

    python -m benchmarks.distilled_sampling --teacher hf_textimg/pretrained/shapes-diffusion-32 \
        --student outputs/distill-shapes --threads 2 [--compile]

Rows, each at batch 64 and 1, in fp32 and under CPU bf16 autocast: the teacher (`ConceptDiffusionPipeline`, 20
DPM-Solver++ steps, classifier-free guidance: two U-Net rows per image), the student (`training/train_distill.py`:
guidance is an input, one row per image) at 1, 2 and 4 `LCMScheduler` steps, the one-shot `DecoderPipeline` and the
upstream baseline (SD-layout U-Net + CLIP text tower, 20 steps; both with random weights at their routes' real
sizes, as in `benchmarks/sampling_throughput.py`). `--compile` adds the student at 4 steps with its U-Net under
`torch.compile` (compilation happens in at least two warm-up calls per batch size and precision, not timed). Without `--teacher` / `--student` they are
built with random weights at the shipped size (throughput does not depend on the weights). A call = prompts ->
numpy images, tokenisation included; images/s = batch / median call time (a row whose first call takes over
`--slow_call_s` is that one call). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import add_common_args, emit, format_table, machine_info, print_machine, ratio, setup  # noqa: E402
from benchmarks.sampling_throughput import load_pipeline, measure  # noqa: E402

STUDENT_STEPS = (1, 2, 4)
TEACHER_STEPS = 20


def random_student(teacher):
    """A student pipeline of the teacher's size with the teacher's weights and a zero guidance input."""
    from training.train_distill import DistillTrainConfig, build_student, student_pipeline

    cfg = DistillTrainConfig(teacher_model_name_or_path="unused")
    pipe = student_pipeline(teacher, build_student(teacher.unet, cfg.time_cond_proj_dim).eval(), cfg)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_rows(args, tmp: str) -> list[tuple[str, object, int | None]]:
    """(row name, pipeline, steps) in table order."""
    teacher = load_pipeline("diffusion", args.quick, tmp, args.teacher)
    student = load_pipeline("diffusion", args.quick, tmp, args.student) if args.student else random_student(teacher)
    if not student.guidance_embedded:
        raise ValueError(f"--student {args.student} is not a distilled model (its U-Net has no time_cond_proj_dim); train it with training/train_distill.py.")
    rows = [("teacher (CFG)", teacher, args.teacher_steps)]
    rows += [("student", student, s) for s in args.student_steps]
    if args.compile:
        compiled = load_pipeline("diffusion", args.quick, tmp, args.student) if args.student else random_student(teacher)
        compiled.unet = torch.compile(compiled.unet)
        rows.append(("student compiled", compiled, max(args.student_steps)))
    rows += [("one-shot decoder", load_pipeline("oneshot", args.quick, tmp), None)]
    rows += [("upstream baseline", load_pipeline("baseline", args.quick, tmp), args.teacher_steps)]
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--teacher", help="the teacher ConceptDiffusionPipeline folder (default: random weights, shipped size)")
    parser.add_argument("--student", help="the distilled pipeline folder (default: the teacher plus a zero guidance input)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--student_steps", type=int, nargs="+", default=list(STUDENT_STEPS))
    parser.add_argument("--teacher_steps", type=int, default=TEACHER_STEPS)
    parser.add_argument("--compile", action="store_true", help="also the student under torch.compile (at its most steps)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow_call_s", type=float, default=10.0, help="a first call slower than this is the row's only call")
    args = parser.parse_args(argv)
    threads = setup(args)
    if args.quick:
        args.batch_sizes, args.teacher_steps, args.warmup, args.repeats = [4, 1], 2, 0, 1
    info = machine_info()

    from hf_textimg.shapes import benchmark_prompts

    pool = [p.prompt for p in benchmark_prompts(10)]  # 70 prompts, all categories
    results = {}
    with tempfile.TemporaryDirectory(prefix="distilled-sampling-") as tmp, torch.inference_mode():
        rows = build_rows(args, tmp)
        for precision in ("fp32", "bf16"):
            for name, pipe, steps in rows:
                key, compiled_row = f"{name}@{steps or 'one pass'}", name.endswith("compiled")
                results.setdefault(precision, {})[key] = {
                    # the compiled row's first calls compile: it always warms up (twice), never counts as a slow row
                    str(b): measure(pipe, [pool[i % len(pool)] for i in range(b)], steps,
                                    max(args.warmup, 2) if compiled_row else args.warmup, args.repeats, precision == "bf16",
                                    None if compiled_row else args.slow_call_s)
                    for b in args.batch_sizes
                }
    teacher_key = f"teacher (CFG)@{args.teacher_steps}"
    speedups = {p: {key: {b: ratio(v, rows_[teacher_key][b]) for b, v in by_batch.items()} for key, by_batch in rows_.items()}
                for p, rows_ in results.items()}

    print_machine(info)
    print(f"images/s = batch / median of {args.repeats} calls; guidance 4 (teacher and baseline: two U-Net rows per image; "
          "student: one row, the scale is an input); x teacher = this row / the teacher's, same precision and batch")
    headers = ["pipeline", "steps", "precision", *(f"b{b} img/s" for b in args.batch_sizes), *(f"x teacher b{b}" for b in args.batch_sizes)]
    table = [[key.split("@")[0], key.split("@")[1], p, *(by_batch[str(b)] for b in args.batch_sizes),
              *(speedups[p][key][str(b)] for b in args.batch_sizes)]
             for p, rows_ in results.items() for key, by_batch in rows_.items()]
    print(format_table(headers, table))
    return emit({
        "benchmark": "distilled_sampling", "quick": args.quick, "threads": threads, "images_per_s": results, "x_teacher": speedups,
        "models": {"teacher": args.teacher, "student": args.student}, "compile": args.compile, "repeats": args.repeats,
        "machine": info, "load_1min_after": machine_info()["load_1min"],
    })


if __name__ == "__main__":
    main()
