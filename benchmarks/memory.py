"""Peak memory (RSS) of training and of sampling, each measured in a fresh Python process.

    python -m benchmarks.memory                      # every training route and every pipeline, real sizes
    python -m benchmarks.memory --train diffusion baseline --sample diffusion baseline --steps 10 --threads 2

Training: a fresh process runs the route's training script (benchmarks/routes.py, real sizes) for `--steps`
optimizer steps. Sampling: a fresh process builds the pipeline (random weights at the real size, or
`--model`/`--oneshot_model`/`--baseline_model`) and generates `--batch_size` images at `--num_inference_steps`
(guidance 4). Reported per process, in MiB:

- `at start`: RSS when the work begins (imports, data set and models built; for training, the moment the
  training loop starts; for sampling, after the pipeline is built),
- `peak in work`: the largest RSS seen by a 2 ms poller while the loop or the sampling ran,
- `peak process`: the kernel's high-water mark for the whole process, set-up included (VmHWM on Linux;
  `resource.getrusage` ru_maxrss elsewhere, which on Linux would carry the parent's peak across fork + exec).

RSS is read with psutil when installed, else from /proc/self/statm. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/memory.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_common_args, emit, format_table, machine_info, print_machine, setup  # noqa: E402
from benchmarks.routes import ROUTES  # noqa: E402

TRAIN_ROUTES = ["concept", "autoencoder", "decoder", "diffusion", "diffusion+text", "baseline", "baseline+ourattention"]
PIPELINES = ["oneshot", "diffusion", "baseline", "baseline+ourattention"]  # as in sampling_throughput.py
MIB = 2**20


def current_rss() -> int:
    """Resident set size of this process in bytes."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_process() -> int:
    """This process's RSS high-water mark in bytes. On Linux VmHWM of /proc/self/status: `getrusage`'s ru_maxrss
    survives fork + exec, so a child would report its parent's peak when that was higher."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # KiB on Linux, bytes on macOS


class RSSPoller:
    """Polls RSS on a thread every `interval` seconds between start() and stop(); keeps the maximum."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.start_rss, self.peak = interval, None, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            time.sleep(self.interval)

    def start(self):
        self.start_rss = self.peak = current_rss()
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())


# ---- child processes ----------------------------------------------------------------------------
def child_train(route: str, args) -> dict:
    from benchmarks.common import TimedLoop
    from benchmarks.routes import ROUTES, baseline_argv, run_route

    with tempfile.TemporaryDirectory(prefix="memory-train-") as tmp:
        if route.startswith("baseline"):
            argv = baseline_argv(route, args.quick, tmp)
        else:
            argv = ROUTES[route].argv(args.quick, args.concept_model_path, extra=["--output_dir", tmp])
        poller = RSSPoller()
        loop = TimedLoop(max_steps=args.steps, before_loop=poller.start)
        run_route(route, argv, loop)
        poller.stop()  # after main() returned: the final save is inside the window too
    return {"batch_size": loop.batch_size, "steps": len(loop.step_seconds), "start": poller.start_rss, "peak_in_work": poller.peak}


def child_sample(name: str, args) -> dict:
    import torch

    from benchmarks.sampling_throughput import load_pipeline
    from hf_textimg.shapes import benchmark_prompts

    path = {"oneshot": args.oneshot_model, "diffusion": args.model, "baseline": args.baseline_model}.get(name)
    pool = [p.prompt for p in benchmark_prompts(10)]
    prompts = [pool[i % len(pool)] for i in range(args.batch_size)]
    kwargs = {} if name == "oneshot" else {"num_inference_steps": args.num_inference_steps, "guidance_scale": 4.0}
    with tempfile.TemporaryDirectory(prefix="memory-sample-") as tmp, torch.inference_mode():
        pipe = load_pipeline(name, args.quick, tmp, path)
        poller = RSSPoller()
        poller.start()
        pipe(prompts, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs)
        poller.stop()
    return {"batch_size": args.batch_size, "steps": kwargs.get("num_inference_steps"), "start": poller.start_rss, "peak_in_work": poller.peak}


def run_child(kind: str, name: str, args, concept_path: str | None) -> dict:
    """Run one measurement in a fresh interpreter; its last stdout line is its JSON result."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", kind, name, "--threads", str(args.threads), "--steps", str(args.steps),
           "--batch_size", str(args.batch_size), "--num_inference_steps", str(args.num_inference_steps)]
    cmd += ["--quick"] * args.quick
    for flag, value in (("--concept_model_path", concept_path), ("--model", args.model), ("--oneshot_model", args.oneshot_model),
                        ("--baseline_model", args.baseline_model)):
        if value:
            cmd += [flag, value]
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {kind} {name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--train", nargs="*", default=TRAIN_ROUTES, choices=list(ROUTES))
    parser.add_argument("--sample", nargs="*", default=PIPELINES, choices=PIPELINES)
    parser.add_argument("--steps", type=int, default=10, help="training steps per route")
    parser.add_argument("--batch_size", type=int, default=64, help="images per sampling call")
    parser.add_argument("--num_inference_steps", type=int, default=20)
    parser.add_argument("--model", help="a trained ConceptDiffusionPipeline folder (default: random weights)")
    parser.add_argument("--oneshot_model", help="a trained DecoderPipeline folder")
    parser.add_argument("--baseline_model", help="a BaselinePipeline folder")
    parser.add_argument("--concept_model_path", help="concept model for the decoder / diffusion routes (default: one made here)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.threads = setup(args)

    if args.child:  # inside a fresh process: measure, print one JSON line
        kind, name = args.child
        result = child_train(name, args) if kind == "train" else child_sample(name, args)
        print(json.dumps({**result, "peak_process": peak_rss_process()}))
        return result

    if args.quick:
        args.steps, args.batch_size, args.num_inference_steps = 2, 4, 2
    info = machine_info()
    results = {}
    with tempfile.TemporaryDirectory(prefix="memory-") as tmp:
        concept_path = args.concept_model_path
        if concept_path is None and {"decoder", "diffusion"} & set(args.train):
            from benchmarks.routes import make_concept_model

            concept_path = make_concept_model(str(Path(tmp) / "concept"), args.quick)
        for route in args.train:
            results[f"train {route}"] = run_child("train", route, args, concept_path)
        for name in args.sample:
            results[f"sample {name}"] = run_child("sample", name, args, concept_path)

    print_machine(info)
    print(f"training: {args.steps} steps per route; sampling: batch {args.batch_size}, {args.num_inference_steps} steps, guidance 4; MiB")
    rows = [[what, r["batch_size"], r["start"] / MIB, r["peak_in_work"] / MIB, r["peak_process"] / MIB] for what, r in results.items()]
    print(format_table(["process", "batch", "RSS at start", "peak in work", "peak process"], rows))
    record = {what: {k: (v / MIB if k in ("start", "peak_in_work", "peak_process") else v) for k, v in r.items()} for what, r in results.items()}
    return emit({"benchmark": "memory", "quick": args.quick, "threads": args.threads, "unit": "MiB", "processes": record,
                 "steps": args.steps, "batch_size": args.batch_size, "num_inference_steps": args.num_inference_steps, "machine": info})


if __name__ == "__main__":
    main()
