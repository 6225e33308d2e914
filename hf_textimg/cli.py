"""The `hf-textimg` command line.

    hf-textimg data shapes --size 32 --out data/shapes32          # datasets.load_from_disk folder
    hf-textimg data emoji --size 64 --out data/emoji64 --imagefolder
    hf-textimg demo --out outputs/demo

Run `hf-textimg <command> --help` for each command's options.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _build_dataset(args):
    if args.dataset == "shapes":
        from .data.shapes import build_shapes_dataset

        return build_shapes_dataset(
            size=args.size,
            num_train=args.num_train,
            num_validation=args.num_validation,
            num_heldout=args.num_heldout,
            seed=args.seed,
        )
    from .data.emoji import build_emoji_dataset

    return build_emoji_dataset(size=args.size, style=args.style, cache_dir=args.cache_dir)


def run_data(args) -> int:
    start = time.perf_counter()
    data = _build_dataset(args)
    out = Path(args.out)
    if args.imagefolder:
        from .data.loading import save_as_imagefolder

        folders = save_as_imagefolder(data, out)
        where = ", ".join(str(f) for f in folders)
        hint = f'load a split with datasets.load_dataset("imagefolder", data_dir="{folders[0]}")'
    else:
        data.save_to_disk(str(out))
        where = str(out)
        hint = f'load it with datasets.load_from_disk("{out}")'
    sizes = ", ".join(f"{split}: {len(split_data)}" for split, split_data in data.items())
    print(f"Built {args.dataset} at {args.size}px ({sizes}) in {time.perf_counter() - start:.1f}s -> {where}")
    print(hint)
    return 0


def run_demo(args) -> int:
    """Until a trained default model ships, the demo previews the Shapes world."""
    from .data.shapes import build_shapes_dataset
    from .utils import make_captioned_grid

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = build_shapes_dataset(size=args.size, num_train=args.num_images, num_validation=0, num_heldout=8, seed=args.seed)
    rows = list(data["train"]) + list(data["heldout"])
    grid = make_captioned_grid([r["image"] for r in rows], [r["text"] for r in rows], cols=8, scale=max(1, 128 // args.size))
    path = out / "shapes_preview.png"
    grid.save(path)
    print(f"Wrote a preview of {len(rows)} Shapes images with their captions (last row: held-out pairs) to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-textimg", description="Train and run small text-to-image models the Hugging Face way.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser(
        "data",
        help="build a built-in data set (shapes or emoji) to a folder",
        description="Build a built-in data set and save it as a datasets folder (load_from_disk) or an imagefolder.",
    )
    data.add_argument("dataset", choices=["shapes", "emoji"], help="which data set to build")
    data.add_argument("--size", type=int, default=32, choices=[32, 64], help="image side in pixels (default: 32)")
    data.add_argument("--out", required=True, help="output folder")
    data.add_argument("--imagefolder", action="store_true", help="write PNGs + metadata.jsonl per split instead of Arrow files")
    data.add_argument("--seed", type=int, default=0, help="shapes: random seed (same seed, same data)")
    data.add_argument("--num-train", type=int, default=20000, help="shapes: train split size")
    data.add_argument("--num-validation", type=int, default=2000, help="shapes: validation split size")
    data.add_argument("--num-heldout", type=int, default=2000, help="shapes: held-out-pairs split size")
    data.add_argument("--style", default="noto", choices=["noto", "twemoji", "both"], help="emoji: artwork style")
    data.add_argument("--cache-dir", default=None, help="emoji: cache folder (default: $HF_TEXTIMG_CACHE or ~/.cache/hf_textimg)")
    data.set_defaults(func=run_data)

    demo = sub.add_parser("demo", help="run the demo (writes a PNG grid)", description="Write a preview grid of the Shapes world.")
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--size", type=int, default=32, choices=[32, 64])
    demo.add_argument("--num-images", type=int, default=24)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=run_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        # User errors get one clear line, not a traceback.
        print(f"hf-textimg {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
