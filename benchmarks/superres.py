"""Super-resolution stages and cascades: does the content survive, are the edges sharp, how close to the truth, how fast.

    python benchmarks/superres.py --cascade outputs/shapes-cascade-128 --threads 2
    python benchmarks/superres.py --base shapes-diffusion-32 --stages outputs/superres-shapes-128 --threads 2 \
        --emoji_stages outputs/superres-emoji-128 --emoji_base emoji-oneshot-32 --grid_dir outputs/superres-grids
    python benchmarks/superres.py --quick     # a tiny stage trained for a few steps: a smoke test, not a measurement

(a) Shapes content: the base model's images of the Shapes benchmark prompts (`--prompts_per_category` per category,
    never seen in training), scored by the Shapes scorer at the base size, then the same images through the cascade's
    stages, scored at the final size (target: every category within 0.02 of the base).
(b) Sharpness: of the "ink" pixels (not background), the share that is no palette colour either (each channel within
    `hf_textimg.evaluation.image_metrics.INK_TOLERANCE` levels), on the cascade's images of (a), on true renders of the
    same prompts at the final size, and on the true base-size renders upscaled bicubically (target: <= 0.2).
(c) Fidelity: each stage alone, on `--num_images` Shapes validation scenes: input the true render at its input size,
    PSNR / SSIM against the true render at its output size, beside bicubic upsampling; and the same stage with the
    other U-Net window: a stage trained on crops runs on crop-sized tiles as saved, and is also run on whole images;
    a stage trained on whole images is also run on `--tile` px tiles.
(d) Emoji (`--emoji_stages`, optional): the same on the emoji validation artwork (unseen emoji) of each of
    `--emoji_styles` at each stage's output size (input: its box-filtered copy); with `--emoji_base` and `--grid_dir`,
    a grid of the emoji cascade on `hf-textimg demo`'s emoji prompts (emoji the base model was trained on), each
    base image beside the cascade's.
(e) Speed: seconds per final image of the whole cascade at batch `--batch_size` (one image per prompt), split between
    the stages; and each stage's training images/s (its own U-Net, `--crop_size` crops, train_superres.py's loop).

`--parts` runs some of them (e.g. `--parts d` for an emoji stage alone). Prints a table, then one JSON line; `--save_card` also writes the figures to the cascade folder's eval_results.json
and renders its model card.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/superres.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import TimedLoop, add_common_args, emit, fresh_accelerate, format_table, machine_info, print_machine, setup  # noqa: E402

CONTENT_TOLERANCE = 0.02  # (a): every category within this of the base model's score
INK_TARGET = 0.2  # (b)


# ---- the cascade under test -------------------------------------------------------------------------------------
def quick_stage(base: str, workdir: Path) -> str:
    """A tiny 4x stage on `base`'s text tower after a few training steps (seconds): enough to run every part."""
    from training import train_superres

    out = str(workdir / "quick-stage")
    fresh_accelerate()
    with contextlib.redirect_stdout(sys.stderr):
        train_superres.main([
            "--concept_model_path", base, "--output_dir", out, "--resolution", "128", "--upscale_factor", "4", "--crop_size", "32",
            "--unet_block_out_channels", "16", "32", "--unet_norm_num_groups", "8", "--num_shapes_train", "32", "--num_shapes_eval", "8",
            "--train_batch_size", "8", "--max_train_steps", "3", "--eval_num_images", "0", "--checkpointing_steps", "1000",
        ])
    return out


def load_cascade(args, workdir: Path):
    """--cascade, or --base + --stages, or (--quick without them) the shipped base + a tiny trained stage."""
    from hf_textimg.cli import load_pipeline, model_arg  # model_arg: a folder, a shipped model's name or a Hub id
    from hf_textimg.pretrained import pretrained_path

    if args.cascade:
        cascade = load_pipeline(model_arg(args.cascade), "cpu")
    else:
        base = model_arg(args.base) if args.base else str(pretrained_path())
        stages = [model_arg(stage) for stage in args.stages or []] or ([quick_stage(base, workdir)] if args.quick else None)
        if not stages:
            raise SystemExit("Pass --cascade FOLDER, or --base and --stages, or --quick.")
        cascade = load_pipeline(base, "cpu", upscale=stages)
    cascade.set_progress_bar_config(disable=True)
    return cascade


def sampling(args) -> dict:
    return {"num_inference_steps": args.steps, "guidance_scale": args.guidance}


def stage_sampling(args) -> dict:
    return {"num_inference_steps": args.superres_steps, "guidance_scale": args.superres_guidance, "noise_level": args.noise_level}


def upscale(stages, prompts: list[str], images: torch.Tensor, args, seed: int, **kwargs) -> torch.Tensor:
    """`images` (N, 3, h, w) in [0, 1] through `stages` in turn, one caption per image."""
    generator = torch.Generator().manual_seed(seed)
    for stage in stages:
        images = stage(prompts, image=images, generator=generator, output_type="pt", **stage_sampling(args), **kwargs).images.cpu()
    return images


# ---- (a) content and (b) sharpness ----------------------------------------------------------------------------
def content_and_sharpness(cascade, args) -> tuple[dict, dict, list]:
    """Base images of the benchmark prompts, the same images upscaled by every stage; both scored."""
    from hf_textimg.shapes import ShapesScorer, benchmark_prompts
    from hf_textimg.evaluation.image_metrics import off_palette_ink_share

    prompts = benchmark_prompts(args.prompts_per_category, prompt_set=args.prompt_set)
    generator = torch.Generator().manual_seed(args.seed)
    small, large = [], []
    for start in range(0, len(prompts), args.batch_size):
        batch = [p.prompt for p in prompts[start : start + args.batch_size]]
        small.append(cascade.base(batch, generator=generator, output_type="pt", **sampling(args)).images.cpu())
        large.append(upscale(cascade.superres_stages, batch, small[-1], args, args.seed + start))
    small, large = torch.cat(small), torch.cat(large)
    scorer = ShapesScorer()
    base, upscaled = scorer.evaluate(list(small), prompts), scorer.evaluate(list(large), prompts)
    deltas = {c: upscaled.accuracy[c] - base.accuracy[c] for c in base.accuracy}
    content = {"base": base.to_dict(), "cascade": upscaled.to_dict(), "delta": deltas,
               "target_met": all(abs(d) <= CONTENT_TOLERANCE for d in deltas.values())}
    truth_small, truth_large = true_renders([p.query for p in prompts], small.shape[-1], large.shape[-1], args.seed)
    from hf_textimg.evaluation.image_metrics import bicubic_upscale

    factor = large.shape[-1] // small.shape[-1]
    ink = {
        "cascade": off_palette_ink_share(large), "true_render": off_palette_ink_share(truth_large),
        "bicubic_of_true_small": off_palette_ink_share(bicubic_upscale(truth_small, factor)),
        "bicubic_of_base": off_palette_ink_share(bicubic_upscale(small, factor)),
    }
    ink["target_met"] = ink["cascade"] <= INK_TARGET
    return content, ink, [(p.prompt, s, l) for p, s, l in zip(prompts, small, large)]


def true_renders(queries, small_size: int, large_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One random scene per query, rendered at both sizes: (N, 3, s, s) and (N, 3, S, S) in [0, 1]."""
    from hf_textimg.shapes import render_batch, scene_from_query

    rng = np.random.default_rng(seed)
    scenes = [scene_from_query(q, rng) for q in queries]
    return tuple(torch.from_numpy(render_batch(scenes, size)).permute(0, 3, 1, 2).float() / 255 for size in (small_size, large_size))


# ---- (c), (d) fidelity ------------------------------------------------------------------------------------------
def fidelity(stage, prompts: list[str], low: torch.Tensor, high: torch.Tensor, args) -> dict:
    """PSNR / SSIM against `high` of the stage as saved, of bicubic upsampling, and of the stage with the other
    window: whole images for a stage that runs on tiles (trained on crops), else `--tile` px tiles."""
    from hf_textimg.evaluation.image_metrics import bicubic_upscale, psnr, ssim

    results = {"stage": upscale([stage], prompts, low, args, args.seed), "bicubic": bicubic_upscale(low, stage.config.upscale_factor)}
    if stage.config.tile_size:
        results["stage_whole_image"] = upscale([stage], prompts, low, args, args.seed, tile_size=0)
    elif args.tile and args.tile < high.shape[-1]:
        results[f"stage_on_{args.tile}px_tiles"] = upscale([stage], prompts, low, args, args.seed, tile_size=args.tile)
    return {name: {"psnr": psnr(images, high), "ssim": ssim(images, high)} for name, images in results.items()}


def shapes_fidelity(cascade, args) -> dict:
    """(c): every stage on true renders of validation scenes at its input size, against those at its output size."""
    from hf_textimg.shapes import caption_scene, render_batch, sample_scene

    rng = np.random.default_rng(args.seed)
    scenes = [sample_scene(rng, split="validation") for _ in range(args.num_images)]
    prompts = [caption_scene(scene, rng) for scene in scenes]
    size, results = cascade.output_sizes()[0], {}
    for i, stage in enumerate(cascade.superres_stages):
        low, high = (torch.from_numpy(render_batch(scenes, s)).permute(0, 3, 1, 2).float() / 255 for s in (size, size * stage.config.upscale_factor))
        results[f"stage{i + 1}_{size}to{high.shape[-1]}"] = fidelity(stage, prompts, low, high, args)
        size = high.shape[-1]
    return results


def emoji_fidelity(args) -> dict:
    """(d): each emoji stage on the box-filtered validation artwork (unseen emoji) of each style at its output size."""
    from hf_textimg.cli import load_pipeline, model_arg
    from hf_textimg.data.emoji import build_emoji_dataset
    from hf_textimg.data.emoji_sources import STYLES
    from hf_textimg.diffusion.superres import downsample

    results = {}
    for path in args.emoji_stages:
        stage = load_pipeline(model_arg(path), "cpu")
        stage.set_progress_bar_config(disable=True)
        size = stage.unet.config.sample_size
        validation = build_emoji_dataset(size=size, styles=STYLES, on_missing="skip")["validation"]  # every style: one cached build
        for style in args.emoji_styles:
            rows = [i for i, s in enumerate(validation["style"]) if s == style]
            if not rows:
                raise SystemExit(f"--emoji_styles {style}: no such images in the Emoji build (installed styles: {sorted(set(validation['style']))})")
            data = validation.select(rows).shuffle(seed=args.seed).select(range(min(args.num_images, len(rows))))  # the set is sorted by name
            high = torch.from_numpy(np.stack([np.asarray(image.convert("RGB")) for image in data["image"]])).permute(0, 3, 1, 2).float() / 255
            low = downsample(high, stage.config.upscale_factor)
            results[f"{Path(path).name}_{style}_{low.shape[-1]}to{size}"] = fidelity(stage, list(data["text"]), low, high, args)
    return results


# ---- (e) speed --------------------------------------------------------------------------------------------------
def cascade_speed(cascade, args) -> dict:
    """Seconds per final image at batch `--batch_size`: base, each stage, all (after one small untimed warm-up call)."""
    from hf_textimg.shapes import benchmark_prompts

    prompts = [p.prompt for p in benchmark_prompts(args.batch_size)][: args.batch_size]
    cascade(prompts[:2], num_inference_steps=1, superres_num_inference_steps=1, output_type="pt")  # warm-up
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    images = cascade.base(prompts, generator=generator, output_type="pt", **sampling(args)).images
    seconds = {"base": time.perf_counter() - start}
    for i, stage in enumerate(cascade.superres_stages):
        start = time.perf_counter()
        images = stage(prompts, image=images, generator=generator, output_type="pt", **stage_sampling(args)).images
        seconds[f"stage{i + 1}"] = time.perf_counter() - start
    per_image = {k: v / len(prompts) for k, v in seconds.items()}
    return {"batch_size": len(prompts), "seconds_per_image": {**per_image, "total": sum(per_image.values())},
            "share": {k: v / sum(seconds.values()) for k, v in seconds.items()}}


def training_speed(cascade, args, workdir: Path) -> dict:
    """Each stage's training images/s: train_superres.py's loop on its U-Net widths, `--crop_size` crops, timed steps."""
    from training import train_superres

    results = {}
    for i, stage in enumerate(cascade.superres_stages):
        config, folder = stage.unet.config, workdir / f"stage{i + 1}"
        cascade.base.save_pretrained(folder / "base")  # the stage's text tower, as train_superres reads it
        crop = min(args.crop_size, config.sample_size)
        argv = [
            "--concept_model_path", str(folder / "base"), "--output_dir", str(folder / "run"), "--resolution", str(config.sample_size),
            "--upscale_factor", str(stage.config.upscale_factor), "--crop_size", str(crop), "--train_batch_size", str(args.train_batch_size),
            "--unet_block_out_channels", *map(str, config.block_out_channels), "--unet_layers_per_block", str(config.layers_per_block),
            "--unet_norm_num_groups", str(config.norm_num_groups), "--mixed_precision", args.train_mixed_precision,
            "--num_shapes_train", str(max(4 * args.train_batch_size, 64)), "--num_shapes_eval", "8", "--eval_num_images", "0",
            "--max_train_steps", str(args.train_steps + 2), "--checkpointing_steps", "100000",
        ]
        loop = TimedLoop(max_steps=args.train_steps + 2)
        fresh_accelerate()
        with loop.patch(train_superres), contextlib.redirect_stdout(sys.stderr):
            train_superres.main(argv)
        results[f"stage{i + 1}"] = {"crop_size": crop, "batch_size": loop.batch_size, "mixed_precision": args.train_mixed_precision,
                                    "images_per_s": loop.images_per_second(skip=2)}
    return results


# ---- output ----------------------------------------------------------------------------------------------------
def save_grids(examples: list, args, emoji_base: str | None) -> list[str]:
    """The first 16 (base, cascade) pairs of (a) as a captioned grid; with `--emoji_base`, an emoji cascade grid."""
    folder = Path(args.grid_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if examples:
        pairs_grid(examples[:16], folder / "shapes-cascade.png")
        written.append(str(folder / "shapes-cascade.png"))
    if emoji_base:
        from hf_textimg.cli import EMOJI_DEMO_PROMPTS, load_pipeline, model_arg
        from hf_textimg.pipelines import DecoderPipeline

        cascade = load_pipeline(model_arg(emoji_base), "cpu", upscale=[model_arg(stage) for stage in args.emoji_stages])
        cascade.set_progress_bar_config(disable=True)
        prompts = [prompt for _, prompt in EMOJI_DEMO_PROMPTS]  # emoji the base model can draw: the grid shows the stage
        base = cascade.base
        base_sampling = {} if isinstance(base, DecoderPipeline) else sampling(args)  # a one-shot base has no steps or guidance
        small = base(prompts, generator=torch.Generator().manual_seed(args.seed), output_type="pt", **base_sampling).images.cpu()
        large = upscale(cascade.superres_stages, prompts, small, args, args.seed)
        pairs_grid(list(zip(prompts, small, large)), folder / "emoji-cascade.png")
        written.append(str(folder / "emoji-cascade.png"))
    return written


def pairs_grid(pairs: list, path: Path) -> None:
    """(prompt, base image, cascade image) triples as a captioned grid, the base image enlarged (nearest) beside."""
    from hf_textimg.data.loading import tensor_to_pil
    from hf_textimg.utils.image_grid import make_captioned_grid

    size = pairs[0][2].shape[-1]
    images = [img for _, s, l in pairs for img in tensor_to_pil(torch.stack([torch.nn.functional.interpolate(s[None], size=size)[0], l]) * 2 - 1)]
    captions = [c for p, _, _ in pairs for c in (f"base: {p}", "cascade")]
    make_captioned_grid(images, captions, cols=4, scale=1).save(path)


def print_tables(record: dict) -> None:
    if "content" in record:
        print_content_tables(record)
    rows = [[f"{part}: {where}", name, r["psnr"], r["ssim"]] for part in ("shapes", "emoji") for where, methods in record.get(part + "_fidelity", {}).items()
            for name, r in methods.items()]
    if rows:
        print("\n(c, d) fidelity against the true high-resolution images")
        print(format_table(["data: stage", "method", "PSNR dB", "SSIM"], rows))
    if "speed" in record:
        print_speed_tables(record)


def print_content_tables(record: dict) -> None:
    content, ink = record["content"], record["ink_share"]
    rows = [[c, content["base"]["accuracy"][c], content["cascade"]["accuracy"][c], content["delta"][c]] for c in content["delta"]]
    print(f"(a) Shapes {record['settings']['prompt_set']} prompts, {record['settings']['prompts_per_category']} per category (target: every |delta| <= {CONTENT_TOLERANCE}): "
          f"{'met' if content['target_met'] else 'NOT met'}")
    print(format_table(["category", f"base {record['sizes'][0]} px", f"cascade {record['sizes'][-1]} px", "delta"], rows))
    print(f"\n(b) off-palette share of ink pixels (target <= {INK_TARGET}): {'met' if ink['target_met'] else 'NOT met'}")
    print(format_table(["images", "share"], [[k, v] for k, v in ink.items() if k != "target_met"]))


def print_speed_tables(record: dict) -> None:
    speed = record["speed"]
    print(f"\n(e) seconds per {record['sizes'][-1]} px image at batch {speed['batch_size']} (share of the time); training images/s per stage")
    print(format_table(["part", "s / image", "share"], [[k, v, speed["share"].get(k)] for k, v in speed["seconds_per_image"].items()]))
    print(format_table(["stage", "crop", "batch", "precision", "train images/s"],
                       [[k, v["crop_size"], v["batch_size"], v["mixed_precision"], v["images_per_s"]] for k, v in record["training"].items()]))


def save_card(folder: str, record: dict, argv: list[str]) -> None:
    """The figures as `eval_results.json` metrics of the cascade folder, and its model card."""
    from hf_textimg.hub import save_model_card
    from hf_textimg.training import write_json

    metrics = {f"shapes_{c}_cascade": v for c, v in record["content"]["cascade"]["accuracy"].items()}
    metrics.update({f"shapes_{c}_base": v for c, v in record["content"]["base"]["accuracy"].items()})
    metrics.update({f"ink_share_{k}": v for k, v in record["ink_share"].items() if k != "target_met"})
    for part in ("shapes", "emoji"):
        for where, methods in record.get(part + "_fidelity", {}).items():
            metrics.update({f"{part}_{where}_{name}_{m}": r[m] for name, r in methods.items() for m in ("psnr", "ssim")})
    metrics.update({f"seconds_per_image_{k}": v for k, v in record["speed"]["seconds_per_image"].items()})
    write_json(Path(folder) / "eval_results.json", {"metrics": {k: round(v, 4) for k, v in metrics.items()}})
    save_model_card(folder, command=shlex.join(["python", "benchmarks/superres.py", *argv]))


def parse_args(argv):
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    add = parser.add_argument
    add("--cascade", default=None, help="a ConceptCascadePipeline folder (or shipped name)")
    add("--base", default=None, help="a base pipeline (with --stages; default: the shipped Shapes model)")
    add("--stages", nargs="+", default=None, help="super-resolution stage folders, in order (with --base)")
    add("--emoji_stages", nargs="+", default=None, help="(d): emoji super-resolution stage folder(s), each scored on the emoji artwork")
    add("--parts", nargs="+", choices=list("abcde"), default=list("abcde"), help="which parts to run (default: all; --save_card needs all)")
    add("--emoji_styles", nargs="+", default=["noto"], help="(d): styles whose validation artwork each emoji stage is scored on")
    add("--emoji_base", default=None, help="(d): the emoji base pipeline, for the emoji cascade's sample grid (needs --grid_dir)")
    add("--prompts_per_category", type=int, default=40, help="(a, b): Shapes benchmark prompts per category")
    add("--prompt_set", choices=["benchmark", "validation"], default="benchmark",
        help="(a, b): the benchmark's prompts, or other prompts of the same categories to choose settings (e.g. --noise_level) on")
    add("--num_images", type=int, default=64, help="(c, d): validation images scored per stage")
    add("--tile", type=int, default=64, help="(c, d): tile side for a stage saved without tiles (0: skip that run)")
    add("--batch_size", type=int, default=16, help="generation batch (and (e)'s batch)")
    add("--steps", type=int, default=20, help="base model's sampler steps")
    add("--guidance", type=float, default=3.0, help="base model's guidance")
    add("--superres_steps", type=int, default=20, help="each stage's sampler steps")
    add("--superres_guidance", type=float, default=1.0, help="each stage's guidance")
    add("--noise_level", type=int, default=100, help="each stage's noise augmentation level")
    add("--crop_size", type=int, default=64, help="(e): training crop side")
    add("--train_batch_size", type=int, default=32, help="(e): training batch")
    add("--train_steps", type=int, default=10, help="(e): timed training steps (after 2 untimed)")
    add("--train_mixed_precision", choices=["no", "bf16"], default="no", help="(e): training precision")
    add("--seed", type=int, default=0)
    add("--grid_dir", default=None, help="write sample grids here")
    add("--save_card", action="store_true", help="write the figures to --cascade's eval_results.json and render its card")
    args = parser.parse_args(argv)
    if args.quick:
        args.prompts_per_category, args.num_images, args.batch_size = min(args.prompts_per_category, 2), min(args.num_images, 4), min(args.batch_size, 4)
        args.steps, args.superres_steps, args.train_steps, args.train_batch_size = 2, 2, 1, 8
        args.tile, args.crop_size = (32, 32) if args.tile else (0, 32)
    if args.save_card and set(args.parts) != set("abcde"):
        parser.error("--save_card needs every part (leave --parts out)")
    if args.save_card and not args.cascade:
        parser.error("--save_card needs --cascade (the folder the card is written to)")
    return args


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    threads = setup(args)
    info = machine_info()
    parts = set(args.parts)
    with tempfile.TemporaryDirectory(prefix="superres-bench-") as tmp:
        record = {"benchmark": "superres", "quick": args.quick, "threads": threads, "parts": sorted(parts),
                  "settings": {k: v for k, v in vars(args).items() if k not in ("quick", "threads")}}
        examples = []
        if parts & {"a", "b", "c", "e"}:
            cascade = load_cascade(args, Path(tmp))
            record["sizes"] = cascade.output_sizes()
        if parts & {"a", "b"}:
            record["content"], record["ink_share"], examples = content_and_sharpness(cascade, args)
        if "c" in parts:
            record["shapes_fidelity"] = shapes_fidelity(cascade, args)
        if "d" in parts and args.emoji_stages:
            record["emoji_fidelity"] = emoji_fidelity(args)
        if "e" in parts:
            record["speed"], record["training"] = cascade_speed(cascade, args), training_speed(cascade, args, Path(tmp))
        if args.grid_dir:
            record["grids"] = save_grids(examples, args, args.emoji_base)
    print_machine(info)
    print_tables(record)
    if args.save_card:
        save_card(args.cascade, record, argv)
    return emit({**record, "machine": info, "load_1min_after": machine_info()["load_1min"]})


if __name__ == "__main__":
    main()
