"""Streaming vs in-memory training data (issue 26): peak RSS and images/s of real training steps, by set size.

    python -m benchmarks.streaming                 # the full run (see docs/performance.md for its time)
    python -m benchmarks.streaming --quick         # tiny sizes, seconds: a smoke test, not a measurement

Every case is a fresh process running `training/train_diffusion.py` (32 px, the default U-Net, a new 2-layer text
tower trained with it, batch `--batch_size`) for `--steps` optimizer steps:

- `shapes stream <N>`: the Shapes world streamed (`--streaming`, rendered on the fly) from sets of N = 10k, 100k and
  1M images, `--workers` DataLoader workers: memory should stay flat as N grows 100x;
- `parquet <N> in memory` / `parquet <N> stream`: an on-disk parquet set of `--parquet_size` Shapes PNGs in 64
  shards, written by this benchmark, read by the in-memory path (decoded whole before the first step) and streamed.

Reported per case: images/s of the training loop (`train_minutes`, evaluation excluded), set-up seconds (data
built or decoded, models built), and peak RSS (VmHWM of the process; DataLoader workers are separate processes and
their own RSS is not included, so the workers' peak is sampled and given apart). Then the decode share of a step
(decoding a batch of the parquet PNGs on one core / (that + one in-memory training step)), and a 2-process
`accelerate launch` over the streamed parquet set that reads one epoch per process and checks by row id that no
row is seen twice and none is missed. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/streaming.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_common_args, emit, format_table, machine_info, print_machine, setup  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL_ARGS = ["--train_text_encoder", "--resolution", "32", "--lr_scheduler", "constant", "--lr_warmup_steps", "0",
              "--eval_prompts_per_category", "0", "--eval_num_inference_steps", "1", "--validation_images_per_prompt", "1",
              "--validation_prompts", "a red circle", "--num_shapes_eval", "16", "--max_eval_samples", "16"]


# ---- one case, in its own process --------------------------------------------------------------------------------
def run_case(case: dict) -> dict:
    """Train in this process (called with --_case); returns images/s, set-up seconds and peak RSS."""
    import threading

    from benchmarks.memory import peak_rss_process
    from training.train_diffusion import main as train

    worker_peak = [0]

    def watch_workers():  # the DataLoader workers' RSS, summed, every 0.5 s (psutil when installed)
        try:
            import psutil
        except ImportError:
            return
        me = psutil.Process()
        while True:
            worker_peak[0] = max(worker_peak[0], sum(c.memory_info().rss for c in me.children(recursive=True)))
            time.sleep(0.5)

    threading.Thread(target=watch_workers, daemon=True).start()
    start = time.perf_counter()
    result = train(case["args"])
    wall = time.perf_counter() - start
    seconds = result["train_minutes"] * 60
    return {"images_per_s": case["images"] / seconds, "train_seconds": seconds, "setup_seconds": wall - seconds,
            "peak_rss_mib": peak_rss_process() / 2**20, "workers_peak_rss_mib": worker_peak[0] / 2**20 or None}


def case_in_subprocess(name: str, args: list[str], images: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    payload = json.dumps({"args": args, "images": images})
    out = subprocess.run([sys.executable, "-m", "benchmarks.streaming", "--_case", payload, "--threads", str(threads)], cwd=REPO, env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"case {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the on-disk set, the decode share, the 2-process id check ---------------------------------------------------
def write_parquet_set(folder: Path, num: int, shards: int = 64) -> Path:
    """`num` Shapes PNGs (32 px) with captions and ids as parquet shards, plus a small validation file."""
    from hf_textimg.shapes import build_shapes_dataset

    data = build_shapes_dataset(size=32, num_train=num, num_validation=16, num_heldout=0)
    train = data["train"].select_columns(["image", "text"]).add_column("id", list(range(num)))
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(min(shards, num)):
        train.shard(min(shards, num), s, contiguous=True).to_parquet(str(folder / f"train-{s:05d}-of-{shards:05d}.parquet"))
    data["validation"].select_columns(["image", "text"]).add_column("id", list(range(16))).to_parquet(str(folder / "validation-00000-of-00001.parquet"))
    return folder


def decode_seconds_per_image(folder: Path, rows: int = 2000) -> float:
    """One core decoding + resizing the set's PNGs, as a streaming worker does."""
    import datasets

    from hf_textimg.data.loading import decode_image_value

    data = datasets.load_dataset("parquet", data_dir=str(folder), split="train").cast_column("image", datasets.Image(decode=False))
    raw = data.select(range(min(rows, len(data))))["image"]
    start = time.perf_counter()
    for value in raw:
        decode_image_value(value, 32, datasets.Image().decode_example)
    return (time.perf_counter() - start) / len(raw)


def ids_epoch() -> None:
    """Under `accelerate launch`: one epoch of this process's part of the stream; writes its row ids."""
    from accelerate import PartialState

    from hf_textimg.data.loading import ImageTextCollator
    from hf_textimg.data.streaming import build_streaming_dataloader, load_streaming_dataset

    folder, out = os.environ["STREAM_IDS_DATA"], Path(os.environ["STREAM_IDS_OUT"])
    import torch

    state = PartialState(cpu=not torch.cuda.is_available())  # plain PartialState() under ACCELERATE_USE_CPU stays one process
    data = load_streaming_dataset(dataset_name=folder)
    loader = build_streaming_dataloader(data, 32, 50, ImageTextCollator(), num_workers=1, rank=state.process_index,
                                        world_size=state.num_processes, id_column="id")
    ids = []
    for batch in loader:
        if loader.epoch > 0:
            break
        ids += batch["id"]
    (out / f"rank{state.process_index}.json").write_text(json.dumps(ids))


def two_process_check(folder: Path, num: int, tmp: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true", "STREAM_IDS_DATA": str(folder),
           "STREAM_IDS_OUT": str(tmp)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "benchmarks.streaming", "--_ids_epoch"]
    start = time.perf_counter()
    out = subprocess.run(launch, cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"2-process launch failed:\n{out.stderr[-3000:]}")
    ranks = [json.loads((tmp / f"rank{r}.json").read_text()) for r in (0, 1)]
    seen = ranks[0] + ranks[1]
    # each process drops its last partial batch (drop_last): those rows are the only ones allowed missing
    return {"rows": num, "rank0": len(ranks[0]), "rank1": len(ranks[1]), "seen_twice": len(seen) - len(set(seen)),
            "missed": num - len(set(seen)), "missed_allowed_by_drop_last": 2 * 49, "seconds": time.perf_counter() - start}


# ---- main ----------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="Shapes stream set sizes")
    parser.add_argument("--parquet_size", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--_case", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_ids_epoch", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    threads = setup(args)
    if args._case:
        return emit(run_case(json.loads(args._case)))
    if args._ids_epoch:
        return ids_epoch()
    if args.quick:
        args.sizes, args.parquet_size, args.steps, args.batch_size = [256, 1024], 512, 4, 16
    info = machine_info()
    print_machine(info)
    common = MODEL_ARGS + ["--max_train_steps", str(args.steps), "--checkpointing_steps", str(args.steps), "--validation_steps",
                           str(args.steps), "--train_batch_size", str(args.batch_size)]
    images = args.steps * args.batch_size
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.sizes:
            run = common + ["--dataset_name", "shapes", "--num_shapes_train", str(n), "--streaming", "--dataloader_num_workers", str(args.workers),
                            "--output_dir", str(tmp / f"shapes-{n}")]
            cases[f"shapes stream {n}"] = case_in_subprocess(f"shapes {n}", run, images, threads)
        folder = write_parquet_set(tmp / "parquet", args.parquet_size)
        for name, flags in ((f"parquet {args.parquet_size} in memory", ["--streaming", "false"]),
                            (f"parquet {args.parquet_size} stream", ["--streaming", "--dataloader_num_workers", str(args.workers)])):
            run = common + ["--dataset_name", str(folder), *flags, "--output_dir", str(tmp / name.replace(" ", "-"))]
            cases[name] = case_in_subprocess(name, run, images, threads)
        decode = decode_seconds_per_image(folder)
        step = 1 / cases[f"parquet {args.parquet_size} in memory"]["images_per_s"] * args.batch_size
        ids = two_process_check(folder, args.parquet_size, tmp)
    in_memory, stream = cases[f"parquet {args.parquet_size} in memory"], cases[f"parquet {args.parquet_size} stream"]
    record = {
        "benchmark": "streaming", "machine": info, "steps": args.steps, "batch_size": args.batch_size, "workers": args.workers, "cases": cases,
        "stream_vs_in_memory_images_per_s": stream["images_per_s"] / in_memory["images_per_s"],
        "shapes_stream_rss_growth": cases[f"shapes stream {args.sizes[-1]}"]["peak_rss_mib"] / cases[f"shapes stream {args.sizes[0]}"]["peak_rss_mib"],
        "decode_ms_per_image": decode * 1000, "decode_share_of_step": decode * args.batch_size / (decode * args.batch_size + step),
        "two_process_ids": ids,
    }
    headers = ["case", "images/s", "set-up s", "peak RSS MiB", "workers' RSS MiB"]
    print(format_table(headers, [[k, v["images_per_s"], v["setup_seconds"], v["peak_rss_mib"], v["workers_peak_rss_mib"]] for k, v in cases.items()]))
    print(f"streaming / in memory (parquet): {record['stream_vs_in_memory_images_per_s']:.2f}; Shapes stream RSS {args.sizes[-1]} vs "
          f"{args.sizes[0]}: x{record['shapes_stream_rss_growth']:.2f}; decode {record['decode_ms_per_image']:.2f} ms/image, "
          f"{100 * record['decode_share_of_step']:.0f}% of a step on one core; 2 processes: {ids}")
    return emit(record)


if __name__ == "__main__":
    main()
