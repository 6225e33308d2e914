"""Sampling throughput (images/s) at each `--batch_sizes` (default 1 and 64): one-shot pipeline, unCLIP pipeline
(prior + one-shot decoder), diffusion pipeline at 20 and 50 steps, and the upstream baseline at the same steps.

    python -m benchmarks.sampling_throughput                                  # random weights, real sizes
    python -m benchmarks.sampling_throughput --model outputs/diffusion-shapes --oneshot_model outputs/decoder-shapes \
        --baseline_model outputs/baseline-shapes --unclip_model outputs/prior-shapes/unclip --threads 2
    # the unCLIP prior's speed target (>= 300x the 20-step diffusion pipeline, at batch 64 and 256, same run):
    python -m benchmarks.sampling_throughput --pipelines unclip oneshot diffusion --steps 20 --batch_sizes 64 256 --threads 2

Without a `--*model` folder each pipeline is built with random weights at its training route's real size
(benchmarks/routes.py; throughput does not depend on the weights): `DecoderPipeline` (128-wide 2-layer text
tower + the documented decoder recipe), `ConceptDiffusionPipeline` (same text tower + our default U-Net + the DPM-Solver++
scheduler train_diffusion.py ships), `ConceptUnCLIPPipeline` (that text tower + train_prior.py's default
`PriorTransformer` + the default auto-encoder's decoder on its 512-d codes: the documented prior run, `routes.PRIOR_ROUTE`)
and `BaselinePipeline` (CLIPTextModel + the SD-layout U-Net of matched
size + upstream DPMSolverMultistep; `baseline+ourattention` has cross-attention only at the lowest resolution,
as our U-Net). The diffusion pipelines use classifier-free guidance 4 (two U-Net rows per image); the unCLIP pipeline
samples its prior for `--prior_steps` (default 25, train_prior.py's evaluation setting and the pipeline's default) at
guidance 4, then decodes in one pass. A call = prompts -> numpy images (`output_type="np"`), tokenisation and
post-processing included. images/s = batch / median call time over `--repeats` calls after `--warmup`.

Besides images/s: each diffusion ÷ baseline ratio at the same steps (`ratios["diffusion/baseline@20"]`); one-shot and
unCLIP ÷ the diffusion pipeline at each of `--steps` (`ratios["unclip/diffusion@20"]`); and the unCLIP prior's share of
the call time (`prior_share`, per batch size: the prior pipeline alone, `pipe.prior_pipe` on the same prompts and
settings, timed the same way right after the combined calls, ÷ the combined call; 1 - share is the decoder's and the
glue's). Prints the tables, then one JSON line. The default batch sizes stay 1 and 64: at 256 the 50-step diffusion
and baseline rows take minutes per call on 2 cores, so ask for 256 with the pipelines it is for (the command above).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/sampling_throughput.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import add_common_args, emit, format_table, machine_info, median, parameter_count, print_machine, ratio, setup, time_calls  # noqa: E402
from benchmarks.routes import PRIOR_ROUTE, ROUTES, baseline_argv  # noqa: E402


PIPELINES = ["oneshot", "unclip", "diffusion", "baseline", "baseline+ourattention"]
RATED_AGAINST_DIFFUSION = ["oneshot", "unclip"]  # rated ÷ the diffusion pipeline at each of --steps


def shapes_tokenizer(max_length: int, n: int = 2000):
    """Our caption tokenizer trained on `n` Shapes captions (scenes sampled, not rendered)."""
    from hf_textimg.shapes import caption_scene, sample_scene
    from hf_textimg.tokenization import train_tokenizer

    rng = np.random.default_rng(0)
    return train_tokenizer([caption_scene(sample_scene(rng, size=32), rng) for _ in range(n)], model_max_length=max_length)


def random_pipeline(name: str, quick: bool, workdir: str):
    """Pipeline `name` (one of PIPELINES) with random weights at its training route's size."""
    from hf_textimg.concept import ConceptTextConfig, ConceptTextModel
    from hf_textimg.shapes import ShapesDataArguments
    from hf_textimg.training import parse_args
    from training import train_autoencoder, train_decoder, train_diffusion, train_prior

    from benchmarks import baseline

    out = ["--output_dir", workdir]
    # The diffusion+text route's text tower is the size of the concept model's (the documented recipe's 128 x 2 layers).
    text_cfg = parse_args(train_diffusion.DiffusionTrainConfig, ROUTES["diffusion+text"].argv(quick, extra=out), ShapesDataArguments)
    tokenizer = shapes_tokenizer(text_cfg.max_length)
    if name.startswith("baseline"):
        cfg = parse_args(baseline.BaselineTrainConfig, baseline_argv(name, quick, workdir), ShapesDataArguments)
        scheduler = baseline.sampling_scheduler(baseline.build_noise_scheduler())
        return baseline.BaselinePipeline(tokenizer, baseline.build_text_encoder(cfg, tokenizer), baseline.build_unet(cfg), scheduler)
    text_encoder = ConceptTextModel(ConceptTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_cfg.text_hidden_size, num_layers=text_cfg.text_num_layers,
        num_heads=text_cfg.text_num_heads, intermediate_size=4 * text_cfg.text_hidden_size,
        max_position_embeddings=text_cfg.max_length, projection_dim=text_cfg.projection_dim,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    ))
    if name == "oneshot":
        from hf_textimg.pipelines.pipeline_decoder import DecoderPipeline

        cfg = parse_args(train_decoder.DecoderTrainConfig, ROUTES["decoder"].argv(quick, "unused", extra=out), ShapesDataArguments)
        return DecoderPipeline(tokenizer=tokenizer, text_encoder=text_encoder, decoder=train_decoder.build_decoder(cfg, text_cfg.projection_dim))
    if name == "unclip":
        from hf_textimg.pipelines.pipeline_unclip import ConceptUnCLIPPipeline
        from hf_textimg.prior import prior_noise_scheduler

        ae_cfg = parse_args(train_autoencoder.AutoencoderTrainConfig, ROUTES["autoencoder"].argv(quick, extra=out), ShapesDataArguments)
        decoder = train_autoencoder.build_model(ae_cfg).decoder
        cfg = parse_args(train_prior.PriorTrainConfig, PRIOR_ROUTE.argv(quick, "unused", extra=out), ShapesDataArguments)
        prior = train_prior.build_model(cfg, decoder.config.code_dim, text_encoder)
        return ConceptUnCLIPPipeline(tokenizer, text_encoder, prior, prior_noise_scheduler(cfg.num_train_timesteps), decoder)
    from hf_textimg.pipelines.pipeline_diffusion import ConceptDiffusionPipeline

    scheduler = train_diffusion.inference_scheduler(train_diffusion.build_noise_scheduler(text_cfg))
    return ConceptDiffusionPipeline(tokenizer, text_encoder, train_diffusion.build_model(text_cfg, text_encoder), scheduler)


def load_pipeline(name: str, quick: bool, workdir: str, path: str | None = None):
    """Pipeline `name` from a saved folder, or with random weights at the real size; progress bar off."""
    if path is None:
        pipe = random_pipeline(name, quick, workdir)
    elif name.startswith("baseline"):
        from benchmarks.baseline import BaselinePipeline

        pipe = BaselinePipeline.from_pretrained(path)
    else:
        import hf_textimg  # noqa: F401  (registers our pipelines with diffusers)
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generator_parameters(name: str, pipe) -> int:
    """Parameters of what makes the image from the text tower's output: the decoder (one-shot), prior + decoder (unCLIP),
    the U-Net (the others)."""
    if name == "unclip":
        return parameter_count(pipe.prior) + parameter_count(pipe.decoder)
    return parameter_count(pipe.decoder if name == "oneshot" else pipe.unet)


def measure(pipe, prompts: list[str], steps: int | None, warmup: int, repeats: int, autocast: bool, slow_call_s: float | None = None,
            guidance_scale: float = 4.0) -> float:
    """images/s of one pipeline call on `prompts` (median of `repeats` after `warmup` calls). With `slow_call_s`, the
    first call is timed, and when it takes longer than that it is the result (one call, set-up included), so rows of
    minute-long calls stay one call while fast rows still get their warm-up and repeats."""
    kwargs = {} if steps is None else {"num_inference_steps": steps, "guidance_scale": guidance_scale}
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()

    def call():
        with precision:
            pipe(prompts, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs)

    if slow_call_s is not None:
        first = time_calls(call, 0, 1)[0]
        if first > slow_call_s:
            return len(prompts) / first
        warmup = max(warmup - 1, 0)  # the timed first call was a warm-up
    return len(prompts) / median(time_calls(call, warmup, repeats))


def main(argv: list[str] | None = None) -> dict:
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--pipelines", nargs="+", default=PIPELINES, choices=PIPELINES)
    parser.add_argument("--model", help="a trained ConceptDiffusionPipeline folder (default: random weights)")
    parser.add_argument("--oneshot_model", help="a trained DecoderPipeline folder")
    parser.add_argument("--baseline_model", help="a BaselinePipeline folder written by benchmarks/baseline.py (replaces `baseline`)")
    parser.add_argument("--unclip_model", help="a trained ConceptUnCLIPPipeline folder (train_prior.py with --decoder_path: <output_dir>/unclip)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 64], help="prompts per call (the unCLIP speed target is at 64 and 256)")
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50], help="diffusion and baseline sampling steps")
    parser.add_argument("--prior_steps", type=int, default=25, help="the unCLIP prior's sampling steps (guidance 4, as the others)")
    parser.add_argument("--prior_guidance", type=float, default=4.0, help="the unCLIP prior's guidance scale; <= 1: one prior row per image, no guidance")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--autocast_bf16", action="store_true", help="run every pipeline under CPU bf16 autocast")
    args = parser.parse_args(argv)
    threads = setup(args)
    if args.quick:
        args.batch_sizes, args.steps, args.prior_steps, args.warmup, args.repeats = [1, 4], [2], 2, 0, 1
    info = machine_info()

    from hf_textimg.shapes import benchmark_prompts

    pool = [p.prompt for p in benchmark_prompts(10)]  # 70 prompts, all categories
    paths = {"oneshot": args.oneshot_model, "unclip": args.unclip_model, "diffusion": args.model, "baseline": args.baseline_model}
    # (row key, pipeline, steps): the one-shot pipeline has no steps and the unCLIP one its prior's; the others run at each of --steps.
    fixed_steps = {"oneshot": None, "unclip": args.prior_steps}
    rows = [(name, name, fixed_steps[name]) if name in fixed_steps else (f"{name}@{s}", name, s) for s in args.steps for name in args.pipelines]
    rows = list(dict.fromkeys(rows))  # "oneshot" and "unclip" once

    def rate(pipe, steps, batch_size: int, name: str = "") -> float:
        guidance = args.prior_guidance if name == "unclip" else 4.0
        return measure(pipe, [pool[i % len(pool)] for i in range(batch_size)], steps, args.warmup, args.repeats, args.autocast_bf16,
                       guidance_scale=guidance)

    with tempfile.TemporaryDirectory(prefix="sampling-throughput-") as tmp, torch.inference_mode():
        pipes = {name: load_pipeline(name, args.quick, tmp, paths.get(name)) for name in args.pipelines}
        sizes = {name: generator_parameters(name, pipe) for name, pipe in pipes.items()}
        results, prior_alone = {key: {} for key, _, _ in rows}, {}
        for key, name, steps in rows:
            for b in args.batch_sizes:
                results[key][str(b)] = rate(pipes[name], steps, b, name)
                if name == "unclip":  # the prior pipeline alone (a view on the same components), right after the combined calls at this batch
                    prior_alone[str(b)] = rate(pipes[name].prior_pipe, steps, b, name)

    def versus(numerator: dict, denominator: dict) -> dict[str, float | None]:
        return {str(b): ratio(numerator[str(b)], denominator[str(b)]) for b in args.batch_sizes}

    # ours ÷ each baseline at the same steps and batch size; one-shot and unCLIP ÷ the diffusion pipeline at each of --steps
    diffusion = {s: results[f"diffusion@{s}"] for s in args.steps} if "diffusion" in args.pipelines else {}
    ratios = {f"diffusion/{name}@{s}": versus(diffusion[s], results[f"{name}@{s}"])
              for s in diffusion for name in args.pipelines if name.startswith("baseline")}
    ratios |= {f"{name}/diffusion@{s}": versus(results[name], diffusion[s]) for s in diffusion for name in RATED_AGAINST_DIFFUSION if name in results}
    # time of the prior alone ÷ time of the combined call = combined images/s ÷ prior-alone images/s
    prior_share = versus(results["unclip"], prior_alone) if prior_alone else None

    print_machine(info)
    print(f"images/s = batch / median of {args.repeats} calls; guidance 4 for diffusion and baselines, {args.prior_guidance:g} for the "
          f"unCLIP prior ({args.prior_steps} prior steps); "
          + ("bf16 autocast" if args.autocast_bf16 else "fp32") + "; generator parameters: "
          + ", ".join(f"{name} {n:,}" for name, n in sizes.items()))
    headers = ["pipeline", "steps", *(f"batch {b} img/s" for b in args.batch_sizes), *(f"ours ÷ this b{b}" for b in args.batch_sizes)]
    table = []
    for key, name, steps in rows:
        r = ratios.get(f"diffusion/{key}", {})
        label = "one pass" if steps is None else f"{steps} prior + 1 pass" if name == "unclip" else steps
        table.append([name, label, *(results[key][str(b)] for b in args.batch_sizes), *(r.get(str(b)) for b in args.batch_sizes)])
    print(format_table(headers, table))
    against = [(name, s) for s in diffusion for name in RATED_AGAINST_DIFFUSION if name in results]
    if against:
        print("\nagainst the diffusion pipeline (images/s ÷ its images/s; the unCLIP target is >= 300x diffusion@20):")
        print(format_table(["pipeline", "÷", *(f"batch {b}" for b in args.batch_sizes)],
                           [[name, f"diffusion@{s}", *ratios[f"{name}/diffusion@{s}"].values()] for name, s in against]))
    if prior_share:
        print("\nunCLIP: the prior's share of the call time (prior pipeline alone ÷ combined call, same batch):")
        print(format_table(["", *(f"batch {b}" for b in args.batch_sizes)],
                           [["combined img/s", *results["unclip"].values()], ["prior alone img/s", *prior_alone.values()],
                            ["prior share", *prior_share.values()]]))
        if any(share and share > 1 for share in prior_share.values()):
            print("a share above 1 (the prior alone slower than prior + decoder) is timing noise: rerun with more --repeats on an idle machine")
    return emit({
        "benchmark": "sampling_throughput", "quick": args.quick, "threads": threads, "images_per_s": results, "ratios": ratios,
        "prior_images_per_s": prior_alone or None, "prior_share": prior_share, "prior_steps": args.prior_steps if "unclip" in pipes else None,
        "prior_guidance": args.prior_guidance if "unclip" in pipes else None,
        "parameters": sizes, "models": paths, "autocast_bf16": args.autocast_bf16, "repeats": args.repeats,
        "machine": info, "load_1min_after": machine_info()["load_1min"],
    })


if __name__ == "__main__":
    main()
